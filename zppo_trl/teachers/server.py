"""`OpenAITeacher`: an OpenAI-compatible chat server (`vllm serve`, `trl vllm-serve`, any provider) as a sampling
teacher, with what keeps it safe and bounded: the API key goes only to the configured origin (a redirect elsewhere
is refused), every request has one wall-clock deadline (a slow-drip server is cut there), and a broken connection
fails only its own question, retried."""

from __future__ import annotations

import contextlib
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
from urllib.parse import parse_qsl, urlsplit

from .sources import SamplingTeacher, gold_answer_verifier


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


_SECRET_QUERY_KEYS = {"key", "api_key", "apikey", "api-key", "token", "access_token", "password", "secret"}


def url_has_credentials(url: str) -> bool:
    """Whether `url` carries a secret: a user or password before the host, or a key/token/password query field."""
    parts = urlsplit(url)
    return (
        parts.username is not None
        or parts.password is not None
        or any(name.lower() in _SECRET_QUERY_KEYS for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    )
