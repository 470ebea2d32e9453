"""ZPPOTrainer's resumable state: the buffers, the rows of their questions, the round counter and ExGRPO's latch, as
written into checkpoints (`checkpoint.write_state_file`) and read back on resume (`checkpoint.read_checkpoint_state`)."""

from __future__ import annotations

import os

from .buffer import HardQuestionBuffer
from .checkpoint import STATE_FILE_NAME, read_checkpoint_state
from .experience import ExperienceBuffer
from .retrospective import RetrospectiveBuffer


class ZPPOStateMixin:
    """State methods of `ZPPOTrainer`."""

    def zppo_state(self) -> dict:
        """Everything ZPPO needs to resume: the buffer, the rows of the buffered questions, the round counter, and
        ExGRPO's experience buffer and delayed-start latch."""
        return {"buffer": self.replay_buffer.state_dict(), "rows": [[pid, row] for pid, row in self._replay_rows.items()],
                "round": self._zppo_round, "global_step": self.state.global_step,
                "experience": self.experience_buffer.state_dict(), "experience_on": self._experience_on,
                "retrospective": self.retrospective_buffer.state_dict(),
                "retrospective_rows": [[pid, row] for pid, row in self._retrospective_rows.items()]}  # fmt: skip

    def load_zppo_state(self, checkpoint: str) -> None:
        """Restore the buffer, its rows and the round counter from `checkpoint/zppo_buffer_state.json`; raise a
        `BufferStateError` that names the file and the fix (and change nothing) when it is missing, corrupted or does
        not belong to the checkpoint."""
        payload = read_checkpoint_state(checkpoint)
        buffer = HardQuestionBuffer(capacity=self.args.replay_capacity, hard_threshold=self.args.hard_threshold)
        buffer.load_state_dict(payload.get("buffer", {}))
        rows = {pid: row for pid, row in payload.get("rows", [])}
        missing = [pid for pid in buffer.ids() if pid not in rows]
        if missing:
            from .buffer import BufferStateError

            raise BufferStateError(
                f"{os.path.join(checkpoint, STATE_FILE_NAME)} lacks the rows of buffered question(s) {missing[:5]}: "
                "it was written by an older zppo_trl. Resume with that version, or from a fresh run."
            )
        experience = ExperienceBuffer(capacity=self.args.experience_capacity)
        if "experience" in payload:  # absent in states written before ExGRPO was added: an empty buffer
            experience.load_state_dict(payload["experience"])
        states = RetrospectiveBuffer(self.args.retrospective_capacity, self.args.hard_threshold, self.num_generations)
        if "retrospective" in payload:  # absent in states written before Retrospective Replay was added
            states.load_state_dict(payload["retrospective"])
        self.replay_buffer, self._replay_rows, self._zppo_round = buffer, rows, payload["round"]
        self.experience_buffer, self._experience_on = experience, bool(payload.get("experience_on", False))
        self.retrospective_buffer = states
        self._retrospective_rows = {pid: row for pid, row in payload.get("retrospective_rows", [])}
