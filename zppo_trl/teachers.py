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
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from .prompts import AnswerExtractor, extract_boxed

logger = logging.getLogger(__name__)

Teacher = Callable[[list[dict]], list[list[str]]]


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
    if args.teacher_base_url is not None:
        return OpenAITeacher(args.teacher_base_url, args.teacher_model, num_samples=args.teacher_num_samples,
                             max_tokens=args.teacher_max_new_tokens, timeout=args.teacher_timeout,
                             max_concurrency=args.teacher_max_concurrency)  # fmt: skip
    if args.teacher_model is not None:
        return ModelTeacher(args.teacher_model, num_samples=args.teacher_num_samples,
                            max_new_tokens=args.teacher_max_new_tokens, compress=args.teacher_compress)  # fmt: skip
    return None


def solutions_for(teacher: Teacher | None, rows: Sequence[dict]) -> tuple[list[list[str]], int, str | None]:
    """Call `teacher` on `rows` defensively.

    Returns `(solutions, failures, error)`: one list of non-empty strings per row, the number of rows left without
    a solution, and a description of the first fault (for a one-time warning), or None.
    """
    rows = list(rows)
    if teacher is None or not rows:
        return [[] for _ in rows], 0, None
    error = None
    try:
        result: Any = teacher(rows)
    except Exception as err:  # a teacher fault degrades these questions to NCQ only
        return [[] for _ in rows], len(rows), f"teacher raised {type(err).__name__}: {err}"
    if not isinstance(result, (list, tuple)) or len(result) != len(rows):
        got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
        return [[] for _ in rows], len(rows), f"teacher returned {got} items for {len(rows)} rows"
    solutions = []
    for item in result:
        items = [item] if isinstance(item, str) else item if isinstance(item, (list, tuple)) else []
        good = [s for s in items if isinstance(s, str) and s.strip()]
        if len(good) != len(items) and error is None:
            error = "teacher returned non-string or empty solutions"
        solutions.append(good)
    return solutions, sum(1 for s in solutions if not s), error


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
    reward's extractor, so a kept teacher sample is one that reward scores correct. A custom `verify`, a column and a
    callable teacher are left as they are (trusted). Returns `teacher`."""
    if getattr(teacher, "verify", None) is gold_answer_verifier:
        teacher.verify = functools.partial(gold_answer_verifier, extract_answer=extract_answer)
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


class ModelTeacher:
    """A local HF causal LM sampled `num_samples` times per hard question; correct samples kept (`verify`).

    Args:
        model: a `PreTrainedModel` (any device, any dtype or 8/4-bit load), or a model id/path to load.
        tokenizer: its tokenizer (loaded from `model` when it is a string).
        num_samples (`int`, defaults to `4`): G_T, samples per question (paper §2 step 3).
        compress (`bool`, defaults to `False`): rewrite each kept sample with the spec's compression prompt,
            keeping the `<summary>`; samples without one stay as they are.
    """

    def __init__(self, model, tokenizer=None, num_samples: int = 4, max_new_tokens: int = 512,
                 temperature: float = 1.0, verify=gold_answer_verifier, compress: bool = False, batch_size: int = 8):  # fmt: skip
        if isinstance(model, str):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model, dtype="auto")
        if tokenizer is None:
            raise ValueError("ModelTeacher needs the teacher's `tokenizer` when `model` is not a model id or path.")
        self.model, self.tokenizer = model, tokenizer
        self.num_samples, self.max_new_tokens, self.temperature = num_samples, max_new_tokens, temperature
        self.verify, self.compress, self.batch_size = verify, compress, batch_size

    def generate(self, conversations: list[list[dict]], num_samples: int) -> list[list[str]]:
        import torch

        tok, out = self.tokenizer, []
        side, tok.padding_side = tok.padding_side, "left"
        try:
            for start in range(0, len(conversations), self.batch_size):
                chunk = conversations[start : start + self.batch_size]
                texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chunk]
                batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
                with torch.no_grad():
                    ids = self.model.generate(
                        **batch, do_sample=True, temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                        num_return_sequences=num_samples, pad_token_id=tok.pad_token_id,
                    )  # fmt: skip
                decoded = tok.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
                out += [decoded[i * num_samples : (i + 1) * num_samples] for i in range(len(chunk))]
        finally:
            tok.padding_side = side
        return out

    def __call__(self, rows: list[dict]) -> list[list[str]]:
        samples = self.generate([_chat(r["prompt"]) for r in rows], self.num_samples)
        kept = [self.verify(row, s) if self.verify else s for row, s in zip(rows, samples)]
        if not self.compress:
            return kept
        from .prompts import COMPRESSION_TEMPLATE

        flat = [c for cs in kept for c in cs]
        summaries = self.generate(
            [[{"role": "user", "content": COMPRESSION_TEMPLATE.format(candidate=c)}] for c in flat], 1
        )
        compressed = iter(extract_summary(s[0]) or c for c, s in zip(flat, summaries))
        return [[next(compressed) for _ in cs] for cs in kept]


class OpenAITeacher:
    """An OpenAI-compatible chat endpoint (`vllm serve`, `trl vllm-serve`, any provider) sampled `num_samples` times
    per hard question, with a bounded pool of concurrent requests, a timeout and retries per request. A question
    whose calls all fail gets no solution (NCQ only; counted in `zppo/teacher_failures`) and never stops training.

    The API key is read from the environment variable named by `api_key_env` at call time; it is never stored,
    logged, or put in an error message.
    """

    def __init__(self, base_url: str, model: str, num_samples: int = 4, max_tokens: int = 1024,
                 temperature: float = 1.0, timeout: float = 60.0, max_retries: int = 2, max_concurrency: int = 8,
                 api_key_env: str = "OPENAI_API_KEY", verify=gold_answer_verifier):  # fmt: skip
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"`base_url` must start with http:// or https://, got {base_url!r}.")
        self.url = base_url.rstrip("/") + ("/chat/completions" if base_url.rstrip("/").endswith("/v1") else
                                           "/v1/chat/completions")  # fmt: skip
        self.model, self.num_samples, self.max_tokens, self.temperature = model, num_samples, max_tokens, temperature
        self.timeout, self.max_retries, self.max_concurrency = timeout, max_retries, max_concurrency
        self.api_key_env, self.verify = api_key_env, verify
        self.last_errors: list[str] = []

    def __repr__(self) -> str:
        return f"OpenAITeacher(url={self.url!r}, model={self.model!r}, num_samples={self.num_samples})"

    def _request(self, messages: list[dict]) -> list[str]:
        import json
        import time
        import urllib.error
        import urllib.request

        body = json.dumps({"model": self.model, "messages": messages, "n": self.num_samples,
                           "max_tokens": self.max_tokens, "temperature": self.temperature}).encode()  # fmt: skip
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                return [
                    c["message"]["content"] for c in payload["choices"] if isinstance(c["message"]["content"], str)
                ]
            except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, TypeError) as err:
                error = f"{type(err).__name__}: {str(err)[:200]}"  # the key is in no error text: it is only a header
                if attempt < self.max_retries:
                    time.sleep(min(2.0**attempt * 0.2, 5.0))
        raise RuntimeError(error)

    def __call__(self, rows: list[dict]) -> list[list[str]]:
        from concurrent.futures import ThreadPoolExecutor

        self.last_errors = []

        def one(row):
            try:
                samples = self._request(_chat(row["prompt"]))
            except RuntimeError as err:
                self.last_errors.append(str(err))
                return []
            return self.verify(row, samples) if self.verify else samples

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(rows)))) as pool:
            return list(pool.map(one, rows))
