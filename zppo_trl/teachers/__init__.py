"""Teacher sources: where the correct candidate of a BCQ prompt comes from (`sources.py`, `server.py`).

A teacher is anything callable as `teacher(rows) -> list[list[str]]`: for each hard question's dataset row, a list
of correct solutions (possibly empty). The teacher is only ever *context* for the student's prompt, never a
gradient target. Sources here:

- `ColumnTeacher`: a dataset column of reference solutions (trusted, not re-scored);
- `ModelTeacher`: a local HF model sampled `num_samples` times per question, correct samples kept;
- `OpenAITeacher`: an OpenAI-compatible chat server (e.g. vLLM), same, over HTTP with timeouts and retries;
- any Python callable (wrapped as is; its solutions are trusted, ours: the caller filters them).

Per-question failures never stop training: `solutions_for` turns an exception, a wrong return shape, non-string
items or an empty answer into "no solution" for the questions concerned (NCQ only) and counts them.

Sampling teachers are asked the question *with* an answer-format instruction (the configured
`answer_format_instruction`, else `TEACHER_ANSWER_INSTRUCTION`, the form the correctness reward reads), since their
samples are kept only when that reward's extractor reads the gold answer in them; each call records how many samples
it drew and kept (`zppo/teacher_acceptance_rate`).

Placement and time: the trainer calls the teacher on the main process only and broadcasts the result;
the other processes wait in `broadcast_object_list`, which fails after the process group's timeout (`ddp_timeout`
of `TrainingArguments`, 1800 s by default, handed to `torch.distributed.init_process_group` by accelerate). So a
`ModelTeacher` named by id loads on its first call, on the main process only, on that process's device; and a
sampling teacher built from a config ends each call (`teacher(rows)`, `compress_texts`) once `TEACHER_TIME_SHARE` of
`ddp_timeout` has passed in it (the questions left get no solution, NCQ only), so the other ranks never reach the
timeout. The bound is wall-clock: generation stops at it (`max_time`), and a server request in flight is cut there,
however slowly the server sends. It does not cut short loading a model named by id (on its first call) or checking
the samples (`verify`).
"""

from __future__ import annotations

from .server import OpenAITeacher
from .sources import (
    TEACHER_ANSWER_INSTRUCTION,
    TEACHER_TIME_SHARE,
    ColumnTeacher,
    ModelTeacher,
    SamplingTeacher,
    Teacher,
    TeacherCall,
    extract_summary,
    gold_answer_verifier,
    solutions_for,
    use_answer_extractor,
)

__all__ = [
    "TEACHER_ANSWER_INSTRUCTION",
    "TEACHER_TIME_SHARE",
    "ColumnTeacher",
    "ModelTeacher",
    "OpenAITeacher",
    "SamplingTeacher",
    "Teacher",
    "TeacherCall",
    "extract_summary",
    "gold_answer_verifier",
    "resolve_teacher",
    "solutions_for",
    "use_answer_extractor",
]


def resolve_teacher(teacher: Teacher | None, args=None) -> Teacher | None:
    """The teacher the trainer uses: an explicit `teacher=` callable wins, else the source the config names
    (`teacher_column`, `teacher_model` with or without `teacher_base_url`), else none (NCQ prompts only)."""
    if teacher is not None:
        if not callable(teacher):
            raise TypeError(
                f"`teacher` must be callable as teacher(rows) -> list[list[str]], got {type(teacher).__name__}. "
                "Pass a function, or set `teacher_column` / `teacher_model` in ZPPOConfig."
            )
        return teacher
    if args is None:
        return None
    if args.teacher_column is not None:
        return ColumnTeacher(args.teacher_column)
    sampling = dict(
        num_samples=args.teacher_num_samples,
        compress=args.teacher_compress,
        instruction=args.answer_format_instruction,
        time_budget=TEACHER_TIME_SHARE * args.ddp_timeout,
    )
    if args.teacher_base_url is not None:
        return OpenAITeacher(
            args.teacher_base_url,
            args.teacher_model,
            max_tokens=args.teacher_max_new_tokens,
            timeout=args.teacher_timeout,
            max_concurrency=args.teacher_max_concurrency,
            **sampling,
        )
    if args.teacher_model is not None:
        return ModelTeacher(args.teacher_model, max_new_tokens=args.teacher_max_new_tokens, **sampling)
    return None
