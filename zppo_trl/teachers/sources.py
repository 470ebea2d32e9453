"""The teacher sources a run can use, and the rule that keeps a teacher's faults per question: `ColumnTeacher` (a
dataset column), `SamplingTeacher` (what the model and server teachers share: sample, verify, count, compress) and
`ModelTeacher` (a local HF model); `solutions_for` calls any teacher defensively. The server teacher is in
`server.py`; `zppo_trl.teachers` has the overview."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..templates import COMPRESSION_TEMPLATE
from ..text import AnswerExtractor, append_to_prompt, extract_boxed

Teacher = Callable[[list[dict]], list[list[str]]]
# ours: asked of a sampling teacher when no `answer_format_instruction` is configured, in the form the default
# correctness rewards read (`boxed_accuracy_reward`; `final_answer_reward` reads a box first)
TEACHER_ANSWER_INSTRUCTION = "Put the final answer in \\boxed{}."
TEACHER_TIME_SHARE = 0.8  # of `ddp_timeout`: a teacher call's budget, leaving the rest for loading and skew


class ColumnTeacher:
    """Reference solutions read from a dataset column: a string, or a list of strings, per row.

    Args:
        column (`str`): name of the column, e.g. `"solution"`.
    """

    def __init__(self, column: str):
        self.column = column

    def __call__(self, rows: list[dict]) -> list[list[str]]:
        out = []
        for row in rows:
            value = row.get(self.column)
            values = value if isinstance(value, (list, tuple)) else [value]
            out.append([v for v in values if isinstance(v, str) and v.strip()])
        return out

    def __repr__(self) -> str:
        return f"ColumnTeacher(column={self.column!r})"


class TeacherCall(NamedTuple):
    """What `solutions_for` returns: one list of solutions per row, the rows left without one, the first fault (for
    a one-time warning) or None, and a sampling teacher's accepted / sampled share this call (None for others)."""

    solutions: list[list[str]]
    failures: int
    error: str | None
    acceptance_rate: float | None = None


def solutions_for(teacher: Teacher | None, rows: Sequence[dict]) -> TeacherCall:
    """Call `teacher` on `rows` defensively.

    Returns a `TeacherCall`: one list of non-empty strings per row, the number of rows left without a solution, a
    description of the first fault or None, and the acceptance rate of a sampling teacher (`SamplingTeacher`).
    """
    rows = list(rows)
    if teacher is None or not rows:
        return TeacherCall([[] for _ in rows], 0, None)
    error = None
    try:
        result: Any = teacher(rows)
    except Exception as err:  # a teacher fault degrades these questions to NCQ only
        return TeacherCall([[] for _ in rows], len(rows), f"teacher raised {type(err).__name__}: {err}")
    if not isinstance(result, (list, tuple)) or len(result) != len(rows):
        got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
        return TeacherCall([[] for _ in rows], len(rows), f"teacher returned {got} items for {len(rows)} rows")
    solutions = []
    for item in result:
        items = [item] if isinstance(item, str) else item if isinstance(item, (list, tuple)) else []
        good = [s for s in items if isinstance(s, str) and s.strip()]
        if len(good) != len(items) and error is None:
            error = "teacher returned non-string or empty solutions"
        solutions.append(good)
    sampled = getattr(teacher, "last_sampled", 0) if isinstance(teacher, SamplingTeacher) else 0
    rate = teacher.last_accepted / sampled if sampled else None
    return TeacherCall(solutions, sum(1 for s in solutions if not s), error, rate)


# --------------------------------------------------------------------------------------------------------------------
# sampling teachers: a local HF model, an OpenAI-compatible server. Both keep only the samples that `verify` accepts.


def gold_answer_verifier(
    row: dict, candidates: list[str], extract_answer: AnswerExtractor = extract_boxed
) -> list[str]:
    """Keep candidates whose final answer, read by `extract_answer` (default: the last `\\boxed{}`), matches the
    row's `answer` (the paper keeps the correct teacher samples). Rows without an `answer` column keep every
    candidate."""
    if "answer" not in row:
        return candidates
    from ..rewards import answer_accuracy

    scores = answer_accuracy(candidates, [row["answer"]] * len(candidates), extract_answer)
    return [c for c, s in zip(candidates, scores) if s == 1.0]


def use_answer_extractor(teacher: Teacher | None, extract_answer: AnswerExtractor) -> Teacher | None:
    """Make a sampling teacher (`ModelTeacher`, `OpenAITeacher`) that checks its samples with the default
    `gold_answer_verifier` read their final answers with `extract_answer`: the trainer passes its correctness
    reward's extractor, so a kept teacher sample is one that reward scores correct. Without a configured
    instruction, the teacher is asked for its answer in the form that extractor reads: its `format_instruction`
    attribute, else `TEACHER_ANSWER_INSTRUCTION` (a box, which every extractor shipped here reads). A custom
    `verify`, a column and a callable teacher are left as they are (trusted). Returns `teacher`."""
    if getattr(teacher, "verify", None) is gold_answer_verifier:
        teacher.verify = functools.partial(gold_answer_verifier, extract_answer=extract_answer)
    if isinstance(teacher, SamplingTeacher) and teacher.instruction is None:
        teacher.instruction = getattr(extract_answer, "format_instruction", TEACHER_ANSWER_INSTRUCTION)
    return teacher


def extract_summary(text: str) -> str | None:
    """The `<summary>...</summary>` of a compression answer (spec §3), or None when there is none (ours: then the
    uncompressed candidate is used and cut to the token budget instead)."""
    start, end = text.rfind("<summary>"), text.rfind("</summary>")
    if start == -1 or end < start:
        return None
    summary = text[start + len("<summary>") : end].strip()
    return summary or None


def _chat(row_prompt) -> list[dict]:
    return list(row_prompt) if not isinstance(row_prompt, str) else [{"role": "user", "content": row_prompt}]


class SamplingTeacher:
    """What the model and server teachers share: sample `num_samples` answers per question (asked with
    `instruction`), keep those `verify` accepts, count both (`last_sampled`, `last_accepted`), and optionally rewrite
    each kept one with the paper's compression prompt (`compress`). Subclasses implement `generate`."""

    def __init__(self, num_samples: int, verify, compress: bool, instruction: str | None, time_budget: float | None):
        if time_budget is not None and not time_budget > 0:
            raise ValueError(
                f"`time_budget` must be > 0 seconds, got {time_budget}. It is `TEACHER_TIME_SHARE` x `ddp_timeout` "
                "when built from a config: raise `ddp_timeout`."
            )
        self.num_samples, self.verify, self.compress = num_samples, verify, compress
        self.instruction, self.time_budget = instruction, time_budget
        self.last_sampled = self.last_accepted = 0
        self.last_errors: list[str] = []  # requests that failed in the latest call (server teacher)
        self._deadline: float | None = None
        self._in_call = False

    def generate(self, conversations: list[list[dict]], num_samples: int) -> list[list[str]]:
        raise NotImplementedError

    def _remaining(self) -> float | None:
        """Seconds left of this call's time budget (None: unbounded)."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    @contextlib.contextmanager
    def _call(self):
        """One deadline per public call (`__call__`, `compress_texts`), `time_budget` from its start: the trainer
        makes each call on the main process while the other ranks wait, so each must end within `ddp_timeout`.
        Compression inside `__call__` shares that call's deadline."""
        if self._in_call:
            yield
            return
        self._in_call, self.last_errors = True, []
        self._deadline = None if self.time_budget is None else time.monotonic() + self.time_budget
        try:
            yield
        finally:
            self._in_call, self._deadline = False, None

    def __call__(self, rows: list[dict]) -> list[list[str]]:
        with self._call():
            return self._solutions(rows)

    def _solutions(self, rows: list[dict]) -> list[list[str]]:
        question = TEACHER_ANSWER_INSTRUCTION if self.instruction is None else self.instruction
        samples = self.generate([_chat(append_to_prompt(r["prompt"], question)) for r in rows], self.num_samples)
        kept = [self.verify(row, s) if self.verify else s for row, s in zip(rows, samples)]
        self.last_sampled, self.last_accepted = sum(map(len, samples)), sum(map(len, kept))
        if not self.compress:
            return kept
        flat = self.compress_texts([c for cs in kept for c in cs])
        compressed = iter(flat)
        return [[next(compressed) for _ in cs] for cs in kept]

    def compress_texts(self, texts: list[str]) -> list[str]:
        """Each text rewritten with the paper's compression prompt (`templates.COMPRESSION_TEMPLATE`) to its
        `<summary>`; a text whose answer has none (or that ran out of time) stays as it is."""
        if not texts:
            return []
        with self._call():
            summaries = self.generate(
                [[{"role": "user", "content": COMPRESSION_TEMPLATE.format(candidate=t)}] for t in texts], 1
            )
        return [next((s for s in map(extract_summary, out) if s), text) for text, out in zip(texts, summaries)]


class ModelTeacher(SamplingTeacher):
    """A local HF causal LM sampled `num_samples` times per hard question; correct samples kept (`verify`).

    Args:
        model: a `PreTrainedModel` (used where it is: any device, any dtype or 8/4-bit load), or a model id/path.
            An id is checked now (its config is read) but the weights load on the first call, on the process
            that makes it (the trainer's main process only), on `device`.
        tokenizer: its tokenizer (loaded with the model when `model` is a string).
        num_samples (`int`, defaults to `4`): G_T, samples per question (paper §2 step 3).
        compress (`bool`, defaults to `False`): rewrite each kept sample with the spec's compression prompt,
            keeping the `<summary>`; samples without one stay as they are.
        instruction (`str`, *optional*): appended to each question (default: `TEACHER_ANSWER_INSTRUCTION`).
        device (`str`, *optional*): where a model loaded from an id goes; default: the calling process's
            accelerator device (`accelerate.PartialState().device`).
        time_budget (`float`, *optional*): seconds one call may take; generation stops there (`max_time`) and the
            questions not reached get no sample.

    A tokenizer without a pad token (Llama-3, Mistral) pads with its eos token, on the left
    (`evaluation.sample_completions`); one with neither is refused here (or, loaded from an id, on the first call).
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        num_samples: int = 4,
        max_new_tokens: int = 512,
        temperature: float = 1.0,
        verify=gold_answer_verifier,
        compress: bool = False,
        batch_size: int = 8,
        instruction: str | None = None,
        device: str | None = None,
        time_budget: float | None = None,
    ):
        super().__init__(num_samples, verify, compress, instruction, time_budget)
        if isinstance(model, str):
            from transformers import AutoConfig

            AutoConfig.from_pretrained(model)  # a wrong id or path fails here, at construction, on every process
        elif tokenizer is None:
            raise ValueError("ModelTeacher needs the teacher's `tokenizer` when `model` is not a model id or path.")
        if tokenizer is not None:
            from ..evaluation import generation_pad_id

            generation_pad_id(tokenizer)  # a tokenizer that cannot batch fails here, not on every call
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_new_tokens, self.temperature, self.batch_size = max_new_tokens, temperature, batch_size

    def _load(self) -> None:
        if not isinstance(self.model, str):
            return
        from accelerate import PartialState
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name, device = self.model, self.device or PartialState().device
        self.tokenizer = self.tokenizer or AutoTokenizer.from_pretrained(name)
        self.model = AutoModelForCausalLM.from_pretrained(name, dtype="auto").to(device).eval()

    def generate(self, conversations: list[list[dict]], num_samples: int) -> list[list[str]]:
        from ..evaluation import sample_completions

        self._load()
        tok, out = self.tokenizer, []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:  # out of time: the rest get no sample
                out += [[] for _ in chunk]
                continue
            texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chunk]
            ids = sample_completions(
                self.model,
                tok,
                texts,
                num_samples,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
                max_time=remaining,
            )
            decoded = tok.batch_decode(ids, skip_special_tokens=True)
            out += [decoded[i * num_samples : (i + 1) * num_samples] for i in range(len(chunk))]
        return out
