"""Teacher sources: where the correct candidate of a BCQ prompt comes from.

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

Placement and time (issue 11.7): the trainer calls the teacher on the main process only and broadcasts the result;
the other processes wait in `broadcast_object_list`, which fails after the process group's timeout (`ddp_timeout`
of `TrainingArguments`, 1800 s by default, handed to `torch.distributed.init_process_group` by accelerate). So a
`ModelTeacher` named by id loads on its first call, on the main process only, on that process's device; and a
sampling teacher built from a config stops starting work once `TEACHER_TIME_SHARE` of `ddp_timeout` has passed in a
call (the questions left get no solution, NCQ only), so the other ranks never reach the timeout.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .prompts import COMPRESSION_TEMPLATE, AnswerExtractor, append_to_prompt, extract_boxed

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
        return OpenAITeacher(args.teacher_base_url, args.teacher_model, max_tokens=args.teacher_max_new_tokens,
                             timeout=args.teacher_timeout, max_concurrency=args.teacher_max_concurrency,
                             **sampling)  # fmt: skip
    if args.teacher_model is not None:
        return ModelTeacher(args.teacher_model, max_new_tokens=args.teacher_max_new_tokens, **sampling)
    return None


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
    from .rewards import answer_accuracy

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
        self.num_samples, self.verify, self.compress = num_samples, verify, compress
        self.instruction, self.time_budget = instruction, time_budget
        self.last_sampled = self.last_accepted = 0
        self.last_errors: list[str] = []  # requests that failed in the latest call (server teacher)
        self._deadline: float | None = None

    def generate(self, conversations: list[list[dict]], num_samples: int) -> list[list[str]]:
        raise NotImplementedError

    def _remaining(self) -> float | None:
        """Seconds left of this call's time budget (None: unbounded)."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def __call__(self, rows: list[dict]) -> list[list[str]]:
        self._deadline = None if self.time_budget is None else time.monotonic() + self.time_budget
        self.last_errors = []
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
        """Each text rewritten with the paper's compression prompt (`prompts.COMPRESSION_TEMPLATE`) to its
        `<summary>`; a text whose answer has none (or that ran out of time) stays as it is."""
        if not texts:
            return []
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
    """

    def __init__(self, model, tokenizer=None, num_samples: int = 4, max_new_tokens: int = 512,
                 temperature: float = 1.0, verify=gold_answer_verifier, compress: bool = False, batch_size: int = 8,
                 instruction: str | None = None, device: str | None = None,
                 time_budget: float | None = None):  # fmt: skip
        super().__init__(num_samples, verify, compress, instruction, time_budget)
        if isinstance(model, str):
            from transformers import AutoConfig

            AutoConfig.from_pretrained(model)  # a wrong id or path fails here, at construction, on every process
        elif tokenizer is None:
            raise ValueError("ModelTeacher needs the teacher's `tokenizer` when `model` is not a model id or path.")
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
        from .evaluation import sample_completions

        self._load()
        tok, out = self.tokenizer, []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:  # out of time: the rest get no sample
                out += [[] for _ in chunk]
                continue
            texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chunk]
            ids = sample_completions(self.model, tok, texts, num_samples, temperature=self.temperature,
                                     max_new_tokens=self.max_new_tokens, max_time=remaining)  # fmt: skip
            decoded = tok.batch_decode(ids, skip_special_tokens=True)
            out += [decoded[i * num_samples : (i + 1) * num_samples] for i in range(len(chunk))]
        return out


class OpenAITeacher(SamplingTeacher):
    """An OpenAI-compatible chat endpoint (`vllm serve`, `trl vllm-serve`, any provider) sampled `num_samples` times
    per hard question, with a bounded pool of concurrent requests, a timeout and retries per request. A question
    whose calls all fail, or that is not reached within `time_budget` seconds of the call, gets no solution (NCQ
    only; counted in `zppo/teacher_failures`) and never stops training. `compress` rewrites kept samples with the
    paper's compression prompt through the same endpoint.

    The API key is read from the environment variable named by `api_key_env` at call time; it is never stored,
    logged, or put in an error message.
    """

    def __init__(self, base_url: str, model: str, num_samples: int = 4, max_tokens: int = 1024,
                 temperature: float = 1.0, timeout: float = 60.0, max_retries: int = 2, max_concurrency: int = 8,
                 api_key_env: str = "OPENAI_API_KEY", verify=gold_answer_verifier, compress: bool = False,
                 instruction: str | None = None, time_budget: float | None = None):  # fmt: skip
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"`base_url` must start with http:// or https://, got {base_url!r}.")
        super().__init__(num_samples, verify, compress, instruction, time_budget)
        self.url = base_url.rstrip("/") + ("/chat/completions" if base_url.rstrip("/").endswith("/v1") else
                                           "/v1/chat/completions")  # fmt: skip
        self.model, self.max_tokens, self.temperature = model, max_tokens, temperature
        self.timeout, self.max_retries, self.max_concurrency = timeout, max_retries, max_concurrency
        self.api_key_env = api_key_env

    def __repr__(self) -> str:
        return f"OpenAITeacher(url={self.url!r}, model={self.model!r}, num_samples={self.num_samples})"

    def _request(self, messages: list[dict], n: int) -> list[str]:
        import json
        import urllib.error
        import urllib.request

        body = json.dumps({"model": self.model, "messages": messages, "n": n,
                           "max_tokens": self.max_tokens, "temperature": self.temperature}).encode()  # fmt: skip
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                raise RuntimeError(f"the teacher's time budget ({self.time_budget:.0f} s) is spent; last: {error}")
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                timeout = self.timeout if remaining is None else min(self.timeout, remaining)
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                return [
                    c["message"]["content"] for c in payload["choices"] if isinstance(c["message"]["content"], str)
                ]
            except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, TypeError) as err:
                error = f"{type(err).__name__}: {str(err)[:200]}"  # the key is in no error text: it is only a header
                if attempt < self.max_retries:
                    time.sleep(min(2.0**attempt * 0.2, 5.0))
        raise RuntimeError(error)

    def generate(self, conversations: list[list[dict]], num_samples: int) -> list[list[str]]:
        from concurrent.futures import ThreadPoolExecutor

        def one(messages):
            try:
                return self._request(messages, num_samples)
            except RuntimeError as err:
                self.last_errors.append(str(err))
                return []

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(conversations)))) as pool:
            return list(pool.map(one, conversations))
