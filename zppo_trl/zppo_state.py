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

    def zppo_state(self, include_rows: bool = True) -> dict:
        """Everything ZPPO needs to resume: the buffer, the rows of the buffered questions, the round counter, and
        ExGRPO's experience buffer and delayed-start latch. `include_rows=False` leaves every dataset row out (what
        a Hub push uploads, see `ZPPOConfig.push_dataset_rows`): ids and statistics only; a resume from such a state
        finds the rows again in the training set by question id."""
        state = {"buffer": self.replay_buffer.state_dict(), "rows": [[pid, row] for pid, row in self._replay_rows.items()],
                 "round": self._zppo_round, "global_step": self.state.global_step,
                 "experience": self.experience_buffer.state_dict(), "experience_on": self._experience_on,
                 "retrospective": self.retrospective_buffer.state_dict(),
                 "retrospective_rows": [[pid, row] for pid, row in self._retrospective_rows.items()]}  # fmt: skip
        if not include_rows:
            state["rows"], state["retrospective_rows"] = [], []
            state["experience"]["entries"] = [
                [pid, k, n, None, t] for pid, k, n, _, t in state["experience"]["entries"]
            ]
        return state

    def load_zppo_state(self, checkpoint: str) -> None:
        """Restore the buffer, its rows and the round counter from `checkpoint/zppo_buffer_state.json`; raise a
        `BufferStateError` that names the file and the fix (and change nothing) when it is missing, corrupted or does
        not belong to the checkpoint."""
        payload = read_checkpoint_state(checkpoint)
        buffer = HardQuestionBuffer(capacity=self.args.replay_capacity, hard_threshold=self.args.hard_threshold)
        buffer.load_state_dict(payload.get("buffer", {}))
        rows = {pid: row for pid, row in payload.get("rows", [])}
        experience = ExperienceBuffer(capacity=self.args.experience_capacity)
        if "experience" in payload:  # absent in states written before ExGRPO was added: an empty buffer
            experience.load_state_dict(payload["experience"])
        states = RetrospectiveBuffer(self.args.retrospective_capacity, self.args.hard_threshold, self.num_generations)
        if "retrospective" in payload:  # absent in states written before Retrospective Replay was added
            states.load_state_dict(payload["retrospective"])
        retrospective_rows = {pid: row for pid, row in payload.get("retrospective_rows", [])}
        # a state saved without rows (what a Hub push uploads): every row found again in the training set by id
        missing = {pid for pid in buffer.ids() if pid not in rows} | set(experience.missing_rows())
        missing |= {pid for pid in states.ids() if pid not in retrospective_rows}
        found = self._rows_by_id(missing) if missing else {}
        if len(found) < len(missing):
            from .buffer import BufferStateError

            raise BufferStateError(
                f"{os.path.join(checkpoint, STATE_FILE_NAME)} holds no dataset rows for buffered question(s) "
                f"{sorted(map(str, missing - set(found)))[:5]}, and the training set has no question with those ids. "
                "Resume with the training set the run used (or from a checkpoint saved with push_dataset_rows=True)."
            )
        rows.update({pid: found[pid] for pid in buffer.ids() if pid not in rows})
        experience.fill_rows(found)
        retrospective_rows.update({pid: found[pid] for pid in states.ids() if pid not in retrospective_rows})
        self.replay_buffer, self._replay_rows, self._zppo_round = buffer, rows, payload["round"]
        self.experience_buffer, self._experience_on = experience, bool(payload.get("experience_on", False))
        self.retrospective_buffer = states
        self._retrospective_rows = retrospective_rows

    def _check_processes_agree_on_state(self, checkpoint: str) -> None:
        """Every process must resume the same buffer (they make the same replay and hint choices from it): compare
        a digest of the state each one loaded. A collective: every process calls it."""
        if self.accelerator.num_processes == 1:
            return
        from accelerate.utils import gather_object

        from .checkpoint import state_digest

        digests = gather_object([state_digest(self.zppo_state())])
        if len(set(digests)) > 1:
            from .buffer import BufferStateError

            raise BufferStateError(
                f"the processes loaded different ZPPO states from {checkpoint} (digests {digests}): each reads the "
                "checkpoint from its own file system. Give every process the same checkpoint folder (a shared file "
                "system, or copy it to each node)."
            )

    def _rows_by_id(self, wanted: set) -> dict:
        """The training set's rows of the questions `wanted` (by `replay.question_id`), read once in order; stops as
        soon as all are found (a stream is read only as far as needed)."""
        from .replay import question_id

        found = {}
        for row in self.train_dataset:
            pid = question_id(row)
            if pid in wanted and pid not in found:
                found[pid] = dict(row)
                if len(found) == len(wanted):
                    break
        return found
