"""ZPPO's resumable state (`RunState`: the buffers, the rows of their questions, the round counter, ExGRPO's latch),
as one object to save, load and check, and the checkpoint files that hold it: which checkpoint a resume may trust.

ZPPO saves one file, `zppo_buffer_state.json` (`RunState.to_dict`: the buffers, their questions' rows, the round
counter, the hint groups planned for the next round, and the global step), written atomically with a checksum.
transformers' `_save_checkpoint` writes, in this order: the model (`save_model`, where ZPPOTrainer writes its state,
so that it is in the folder before a Hub upload of the checkpoint starts), the optimizer and scheduler, the RNG
states, `trainer_state.json`, then starts the upload when `push_to_hub` is set. A checkpoint is therefore *complete*
when `trainer_state.json` and ZPPO's state both read back intact and name the same global step: a folder cut short
anywhere before the end fails that test.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..buffers.experience import ExperienceBuffer
from ..buffers.hard import SCHEMA_VERSION, BufferStateError, HardQuestionBuffer
from ..buffers.states import RetrospectiveBuffer

STATE_FILE_NAME = "zppo_buffer_state.json"
TRAINER_STATE_NAME = "trainer_state.json"  # transformers' name, written after everything else of a checkpoint


@dataclass
class RunState:
    """Everything a run learns across rounds, identical on every process: the hard-question buffer and the rows of
    its questions, ExGRPO's experience buffer and delayed-start latch, Retrospective Replay's states and the rows of
    their questions, the round counter (it seeds every random choice), and with `hint_schedule="next_round"` the
    extra groups planned for the next round."""

    buffer: HardQuestionBuffer
    experience: ExperienceBuffer
    retrospective: RetrospectiveBuffer
    rows: dict = field(default_factory=dict)  # question id -> dataset row, for exactly the buffered questions
    retrospective_rows: dict = field(default_factory=dict)  # the same for the questions with a stored state
    round: int = 0
    experience_on: bool = False
    pending: list = field(default_factory=list)  # next_round: [(kind, row)] planned, rolled out next round

    @classmethod
    def new(cls, args, num_generations: int) -> RunState:
        """An empty state sized by the config."""
        return cls(
            HardQuestionBuffer(capacity=args.replay_capacity, hard_threshold=args.hard_threshold),
            ExperienceBuffer(capacity=args.experience_capacity),
            RetrospectiveBuffer(args.retrospective_capacity, args.hard_threshold, num_generations),
        )

    def to_dict(self, global_step: int, include_rows: bool = True) -> dict:
        """What a checkpoint saves. `include_rows=False` leaves every dataset row out (what a Hub push uploads, see
        `ZPPOConfig.push_dataset_rows`): ids and statistics only. A resume from it finds the buffered questions' rows
        again in the training set by question id (`missing_rows`, `fill_rows`), but not the hint groups planned for
        the next round (their prompts hold the question and the student's wrong answers): its first round has none,
        and a resume says so (`pending_left_out`)."""
        experience = self.experience.state_dict()
        if not include_rows:
            experience["entries"] = [[pid, k, n, None, t] for pid, k, n, _, t in experience["entries"]]
        return {
            "buffer": self.buffer.state_dict(),
            "rows": [[pid, row] for pid, row in self.rows.items()] if include_rows else [],
            "round": self.round,
            "global_step": global_step,
            "experience": experience,
            "experience_on": self.experience_on,
            "retrospective": self.retrospective.state_dict(),
            "retrospective_rows": [[pid, row] for pid, row in self.retrospective_rows.items()] if include_rows else [],
            "pending": [[kind, row] for kind, row in self.pending] if include_rows else [],
            "pending_left_out": 0 if include_rows else len(self.pending),
        }

    @classmethod
    def from_dict(cls, payload: dict, args, num_generations: int) -> RunState:
        """The state a checkpoint saved (`read_checkpoint_state`), each buffer validated against this run's config;
        raises `BufferStateError` naming the field. Rows left out are found with `missing_rows` / `fill_rows`. Hint
        groups planned under `hint_schedule="next_round"` are dropped, with a warning, when this run rolls hints
        out in their own round: nothing would ever roll them out."""
        state = cls.new(args, num_generations)
        state.buffer.load_state_dict(payload.get("buffer", {}))
        if "experience" in payload:  # optional: an empty experience buffer
            state.experience.load_state_dict(payload["experience"])
        if "retrospective" in payload:  # optional: no stored states
            state.retrospective.load_state_dict(payload["retrospective"])
        state.rows = {pid: row for pid, row in payload.get("rows", [])}
        state.retrospective_rows = {pid: row for pid, row in payload.get("retrospective_rows", [])}
        state.round, state.experience_on = payload["round"], bool(payload.get("experience_on", False))
        state.pending = _read_pending(payload.get("pending", []))
        left_out = payload.get("pending_left_out", 0)
        if left_out and args.hint_schedule == "next_round":
            warnings.warn(
                f"the checkpoint was saved without dataset rows, so the {left_out} hint group(s) planned for its next "
                "round were left out: the first resumed round rolls out none (push_dataset_rows=True keeps them).",
                stacklevel=3,
            )
        if state.pending and args.hint_schedule != "next_round":
            warnings.warn(
                f"the checkpoint holds {len(state.pending)} hint group(s) planned for the next round "
                "(hint_schedule='next_round'); this run rolls hints out in their own round, so they are dropped.",
                stacklevel=3,
            )
            state.pending = []
        return state

    def missing_rows(self) -> set:
        """Ids of held questions whose dataset row the state lacks (saved without rows)."""
        missing = {pid for pid in self.buffer.ids() if pid not in self.rows} | set(self.experience.missing_rows())
        return missing | {pid for pid in self.retrospective.ids() if pid not in self.retrospective_rows}

    def fill_rows(self, found: dict) -> None:
        """Give held questions without a row theirs, from `found` (question id -> dataset row)."""
        self.rows.update({pid: found[pid] for pid in self.buffer.ids() if pid not in self.rows and pid in found})
        self.experience.fill_rows(found)
        held = self.retrospective.ids()
        self.retrospective_rows.update({p: found[p] for p in held if p not in self.retrospective_rows and p in found})


def _read_pending(raw) -> list:
    """The saved next-round hint groups: `[[kind, model-input row], ...]`."""
    if not isinstance(raw, list) or not all(
        isinstance(g, list) and len(g) == 2 and isinstance(g[0], str) and isinstance(g[1], dict) and "prompt" in g[1]
        for g in raw
    ):
        raise BufferStateError(
            "ZPPO state field `pending` must be a list of [kind, row] pairs (the hint groups planned for the next "
            "round). Resume from another checkpoint, or with the zppo_trl version that wrote it."
        )
    return [(kind, row) for kind, row in raw]


def state_digest(payload: dict) -> str:
    """The sha256 of a ZPPO state's canonical JSON: the file's checksum, and equal on two processes exactly when
    their states are."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_state_file(path: str, payload: dict) -> None:
    """Write `payload` as JSON with a sha256 checksum, atomically (temp file in the same folder + rename).

    transformers writes checkpoints in place, so a crash mid-write must never leave a half-written state that a
    resume would read as valid: the rename is atomic on POSIX file systems.
    """
    document = {"schema_version": SCHEMA_VERSION, "checksum": state_digest(payload), "payload": payload}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".zppo_state.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_state_file(path: str) -> dict:
    """Read a file written by `write_state_file`; raise `BufferStateError` naming the path if it is not intact."""
    try:
        with open(path) as f:
            document = json.load(f)
    except json.JSONDecodeError as err:
        raise BufferStateError(
            f"ZPPO buffer state {path} is corrupted or truncated ({err}). Resume from an earlier checkpoint, "
            "or delete the file to restart the buffer empty."
        ) from err
    if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
        version = document.get("schema_version") if isinstance(document, dict) else None
        raise BufferStateError(
            f"ZPPO buffer state {path} has schema_version={version!r}; this zppo_trl reads {SCHEMA_VERSION}. "
            "Resume with the zppo_trl version that wrote it."
        )
    payload = document.get("payload")
    if not isinstance(payload, dict) or document.get("checksum") != state_digest(payload):
        raise BufferStateError(
            f"ZPPO buffer state {path} fails its checksum: the file was modified or partially written. Resume from "
            "an earlier checkpoint, or delete the file to restart the buffer empty."
        )
    return payload


def checkpoint_rows(args) -> bool:
    """Whether ZPPO's state in checkpoints keeps the buffered questions' dataset rows. Yes, unless a Hub push uploads
    the checkpoints (`hub_strategy` "checkpoint" or "all_checkpoints") and `push_dataset_rows` is off: then the
    rows are left out (said once here), and a resume finds them again in the training set by question id."""
    strategy = str(getattr(args.hub_strategy, "value", args.hub_strategy))
    uploaded = args.push_to_hub and strategy in ("checkpoint", "all_checkpoints")
    if uploaded and not args.push_dataset_rows:
        warnings.warn(
            f"hub_strategy={strategy!r} uploads checkpoints: ZPPO leaves the buffered questions' dataset rows out of "
            "them (a resume finds them again in the training set by "
            "question id). Set push_dataset_rows=True to upload the rows too.",
            stacklevel=3,
        )
    return not uploaded or args.push_dataset_rows


def checkpoint_step(folder: str) -> int | None:
    """The global step in a `checkpoint-N` folder's name, or None for any other folder."""
    name = os.path.basename(os.path.normpath(folder))
    step = name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
    return int(step) if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and step.isdigit() else None


def read_checkpoint_state(checkpoint: str) -> dict:
    """ZPPO's state saved in `checkpoint`, checked to belong to it; raise a `BufferStateError` that names the file and
    the fix when it is missing, corrupted or from another step."""
    path = os.path.join(checkpoint, STATE_FILE_NAME)
    if not os.path.exists(path):
        raise BufferStateError(
            f"{path} is missing: the checkpoint was not written by ZPPOTrainer, or its write was interrupted. "
            "Resume from an earlier checkpoint, or delete this one."
        )
    payload = read_state_file(path)
    step = checkpoint_step(checkpoint)
    if step is not None and payload.get("global_step") != step:
        raise BufferStateError(
            f"{path} was saved at step {payload.get('global_step')} but sits in the checkpoint of step {step}. "
            "Resume from a checkpoint whose files belong together."
        )
    if not isinstance(payload.get("round"), int) or payload["round"] < 0:
        raise BufferStateError(f"{path} holds round={payload.get('round')!r}, expected a non-negative integer.")
    return payload


def _trainer_state_step(checkpoint: str) -> int:
    path = os.path.join(checkpoint, TRAINER_STATE_NAME)
    try:
        with open(path) as f:
            return int(json.load(f)["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BufferStateError(
            f"{path} is missing or unreadable ({err}): the checkpoint's write was cut short."
        ) from err


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` that is complete: its `trainer_state.json` (written last by
    transformers) and ZPPO's state read back intact and name step N. Partial ones are skipped with a warning and left
    in place: nothing is deleted."""
    if not os.path.isdir(output_dir):
        return None
    folders = [os.path.join(output_dir, name) for name in os.listdir(output_dir)]
    for folder in sorted((f for f in folders if checkpoint_step(f) is not None), key=checkpoint_step, reverse=True):
        try:
            read_checkpoint_state(folder)
            if _trainer_state_step(folder) != checkpoint_step(folder):
                raise BufferStateError(f"{folder}/{TRAINER_STATE_NAME} names another step.")
            return folder
        except (OSError, BufferStateError) as err:
            warnings.warn(f"skipping incomplete checkpoint {folder}: {err}", stacklevel=2)
    return None
