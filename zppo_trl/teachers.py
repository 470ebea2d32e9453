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
sampling teacher built from a config ends each call (`teacher(rows)`, `compress_texts`) once `TEACHER_TIME_SHARE` of
`ddp_timeout` has passed in it (the questions left get no solution, NCQ only), so the other ranks never reach the
timeout. The bound is wall-clock: generation stops at it (`max_time`), and a server request in flight is cut there,
however slowly the server sends. It does not cut short loading a model named by id (on its first call) or checking
the samples (`verify`).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .templates import COMPRESSION_TEMPLATE
from .text import AnswerExtractor, append_to_prompt, extract_boxed

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
            from .evaluation import generation_pad_id

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


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, with the scheme's default port: where a request, and its API key, goes."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedirectRefused(Exception):
    """A teacher server redirected to another origin (scheme, host or port): the request is not followed, since it
    carries the API key, and not retried, since the server would redirect again."""


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    # urllib copies every header but the content ones, `Authorization` included, onto a redirect to any URL
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if _origin(newurl) != _origin(req.full_url):
            fp.close()
            scheme, host, port = _origin(newurl)
            raise RedirectRefused(
                f"the server answered {code} to {scheme}://{host}:{port}, another origin than the configured "
                f"`base_url`; not followed, so the API key goes nowhere else. Configure the final URL as `base_url`."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Deadline:
    """A wall-clock end for one request: its sockets are shut down at `seconds` from now. A socket timeout bounds
    each read only, so without this a server sending a byte at a time holds a request for as long as it likes."""

    def __init__(self, seconds: float):
        self.seconds, self.passed = seconds, False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._pass)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            passed = self.passed
        if passed:
            _shut(sock)
        return sock

    def _pass(self) -> None:
        with self._lock:
            self.passed, sockets = True, list(self._sockets)
        for sock in sockets:  # a blocked read in the request's thread then returns at once
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """An HTTP(S) connection whose sockets, the plain one and a TLS one wrapped around it, are shut at `deadline`."""

    def __init__(self, *args, deadline: _Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self._deadline = deadline
        self._create_connection = lambda *a, **k: deadline.watch(socket.create_connection(*a, **k))

    def connect(self):
        super().connect()
        self._deadline.watch(self.sock)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_WatchedHTTP, req, deadline=self.deadline)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(_WatchedHTTPS, req, context=self._context, deadline=self.deadline)


# what one failed request raises: the network (refused, reset, remote disconnect, a short body: `IncompleteRead`, a
# deadline), the HTTP status, and an answer that is not the expected JSON
_REQUEST_FAULTS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError, KeyError, TypeError)


class OpenAITeacher(SamplingTeacher):
    """An OpenAI-compatible chat endpoint (`vllm serve`, `trl vllm-serve`, any provider) sampled `num_samples` times
    per hard question, with a bounded pool of concurrent requests, a deadline and retries per request. A question
    whose calls all fail, or that is not reached within `time_budget` seconds of the call, gets no solution (NCQ
    only; counted in `zppo/teacher_failures`) and never stops training. `compress` rewrites kept samples with the
    paper's compression prompt through the same endpoint.

    Faults stay per question: a refused or reset connection, a server that disconnects or sends a short body
    (`IncompleteRead`), an HTTP error or an answer that is not the expected JSON fail that request, which is retried
    up to `max_retries` times. `timeout` is a wall-clock deadline for the whole request (connecting, headers, body),
    not per socket read, so a server that sends a byte at a time cannot hold it longer; `time_budget` bounds the
    whole call the same way, and must be at least `timeout`.

    The API key is read from the environment variable named by `api_key_env` at call time; it is never stored,
    logged, or put in an error message. It is sent only to the origin (scheme, host, port) of `base_url`: a redirect
    to any other origin is refused and counts as a failed request (not retried). Over plain `http://` to a host that
    is not loopback the key crosses the network unencrypted: construction warns when the key is set; use
    `https://`, or an SSH tunnel to `localhost`.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        num_samples: int = 4,
        max_tokens: int = 1024,
        temperature: float = 1.0,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_concurrency: int = 8,
        api_key_env: str = "OPENAI_API_KEY",
        verify=gold_answer_verifier,
        compress: bool = False,
        instruction: str | None = None,
        time_budget: float | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"`base_url` must start with http:// or https://, got {base_url!r}.")
        if time_budget is not None and timeout > time_budget:
            raise ValueError(
                f"The teacher's request timeout ({timeout:g} s, `teacher_timeout`) is longer than its time budget "
                f"per call ({time_budget:g} s, `TEACHER_TIME_SHARE` x `ddp_timeout`): no request could run its "
                "course, and the other processes wait for the call up to `ddp_timeout`. Lower `teacher_timeout` or "
                "raise `ddp_timeout`."
            )
        super().__init__(num_samples, verify, compress, instruction, time_budget)
        self.url = base_url.rstrip("/") + (
            "/chat/completions" if base_url.rstrip("/").endswith("/v1") else "/v1/chat/completions"
        )
        self.model, self.max_tokens, self.temperature = model, max_tokens, temperature
        self.timeout, self.max_retries, self.max_concurrency = timeout, max_retries, max_concurrency
        self.api_key_env = api_key_env
        self._warned_plain_http = False
        self._warn_if_key_goes_unencrypted()

    def __repr__(self) -> str:
        return f"OpenAITeacher(url={self.url!r}, model={self.model!r}, num_samples={self.num_samples})"

    def _warn_if_key_goes_unencrypted(self) -> None:
        scheme, host, _ = _origin(self.url)
        if self._warned_plain_http or scheme != "http" or _is_loopback(host) or not os.environ.get(self.api_key_env):
            return
        self._warned_plain_http = True
        warnings.warn(
            f"OpenAITeacher sends the API key in `{self.api_key_env}` to {host} over plain http://, unencrypted. "
            f"Use an https:// `teacher_base_url` or an SSH tunnel to localhost, or unset `{self.api_key_env}` if the "
            "server needs no key.",
            stacklevel=3,
        )

    def _attempt(self, body: bytes, headers: dict, seconds: float) -> list[str]:
        """One request within `seconds` of wall-clock time, redirects to other origins refused."""
        deadline = _Deadline(seconds)
        try:
            opener = urllib.request.build_opener(
                _SameOriginRedirects(), _HTTPHandler(deadline), _HTTPSHandler(deadline)
            )
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with opener.open(request, timeout=seconds) as response:
                    payload = json.loads(response.read().decode("utf-8"))
            except _REQUEST_FAULTS:
                if deadline.passed:  # what the shut socket raised is not the cause
                    raise TimeoutError(f"no complete answer within {seconds:.3g} s") from None
                raise
        finally:
            deadline.cancel()
        return [c["message"]["content"] for c in payload["choices"] if isinstance(c["message"]["content"], str)]

    def _request(self, messages: list[dict], n: int) -> list[str]:
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "n": n,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        error = "no attempt"
        for attempt in range(self.max_retries + 1):
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                raise RuntimeError(f"the teacher's time budget ({self.time_budget:g} s) is spent; last: {error}")
            try:
                return self._attempt(
                    body, headers, self.timeout if remaining is None else min(self.timeout, remaining)
                )
            except RedirectRefused as err:
                raise RuntimeError(_without(str(err), key)) from None
            except _REQUEST_FAULTS as err:
                # the key is only a header, but a server may echo it, e.g. in a status reason
                error = _without(f"{type(err).__name__}: {str(err)[:200]}", key)
            if attempt < self.max_retries:
                remaining = self._remaining()
                pause = min(2.0**attempt * 0.2, 5.0)
                time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))
        raise RuntimeError(error)

    def generate(self, conversations: list[list[dict]], num_samples: int) -> list[list[str]]:
        from concurrent.futures import ThreadPoolExecutor

        self._warn_if_key_goes_unencrypted()  # the key may have been set after construction
        key = os.environ.get(self.api_key_env)

        def one(messages):
            try:
                return self._request(messages, num_samples)
            except Exception as err:  # whatever one request raises fails its question only
                self.last_errors.append(
                    _without(str(err) if isinstance(err, RuntimeError) else f"{type(err).__name__}: {err}", key)
                )
                return []

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(conversations)))) as pool:
            return list(pool.map(one, conversations))


def _without(text: str, secret: str | None) -> str:
    return text.replace(secret, "<api key>") if secret else text
