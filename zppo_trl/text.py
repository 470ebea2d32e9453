"""Text helpers every part of ZPPO uses: a prompt's text (a string or chat messages) and appending to it, a
completion's text, a completion's final answer (the last `\\boxed{}`, else the last number) and cutting a text to a
token budget while keeping its head and that answer. Pure strings in, strings out."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# A token counter: text -> number of tokens. The trainer passes one built from its tokenizer.
TokenCounter = Callable[[str], int]
# An answer extractor: completion text -> its final answer, or None. The trainer passes the correctness reward's
# (`rewards.answer_extractor`), so the answers NCQ lists as wrong are read the way the reward reads them.
AnswerExtractor = Callable[[str], "str | None"]


def _default_counter(text: str) -> int:
    # Without a tokenizer, assume ~4 characters per token (a common rule of thumb for English/LaTeX).
    return (len(text) + 3) // 4


TRUNCATION_MARK = "\n[...]\n"


def _last_boxed(text: str) -> tuple[int, int] | None:
    """`(start, end)` of the last complete `\\boxed{...}` in `text`, nested braces balanced; None if there is none
    (an unterminated last one, as in a truncated completion, falls back to an earlier one)."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i, depth = start + len("\\boxed{"), 1
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return start, i
        start = text.rfind("\\boxed{", 0, start)
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, with nested braces balanced; None if there is none or it is
    unterminated (a truncated completion)."""
    span = _last_boxed(text)
    return text[span[0] + len("\\boxed{") : span[1] - 1].strip() if span else None


_LAST_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def final_answer_span(text: str) -> tuple[int, int] | None:
    """Where a candidate's final answer is: its last complete `\\boxed{...}`, else its last number; None when it has
    neither. The one rule both for keeping the answer in a cut and for reserving room for it."""
    span = _last_boxed(text)
    if span is not None:
        return span
    numbers = list(_LAST_NUMBER.finditer(text))
    return (numbers[-1].start(), numbers[-1].end()) if numbers else None


def answer_tail(text: str) -> str:
    """A candidate's final answer and what follows it (`final_answer_span`); "" when it has no answer."""
    span = final_answer_span(text)
    return text[span[0] :] if span else ""


def truncate_keep_answer(
    text: str,
    max_tokens: int,
    count_tokens: TokenCounter = _default_counter,
    mark: str = TRUNCATION_MARK,
    answer_share: float = 0.5,
) -> str:
    """Cut `text` to at most `max_tokens` tokens, keeping its head and its final answer.

    Ours (the paper compresses with the teacher model instead): the final answer (`final_answer_span`: the last
    `\\boxed{}`, else the last number) and what follows it are kept whole when they fit in `answer_share` of the
    budget (half by default); when what follows is too long, the answer and as much of what follows as fits (the
    answer itself whenever it fits the budget at all); the rest of the budget goes to the head. The middle is
    replaced by `mark` (`TRUNCATION_MARK` by default). Token counts are
    measured with `count_tokens`, so the result fits the real tokenizer.
    """
    if count_tokens(text) <= max_tokens:
        return text
    budget = max_tokens - count_tokens(mark)
    if budget <= 0:
        return ""
    room = int(budget * answer_share)
    span = final_answer_span(text)
    tail_start, tail = len(text), ""
    if span and count_tokens(text[span[0] : span[1]]) <= budget:  # the answer is kept even past its share
        answer = text[span[0] : span[1]]
        room = max(room, count_tokens(answer))
        tail_start, tail = span[0], text[span[0] :]
        if count_tokens(tail) > room:  # the answer, and as much of what follows it as fits
            tail = answer + _take_head(text[span[1] :], room - count_tokens(answer), count_tokens)
    if not tail:  # no answer, or one longer than its share: the end of the text
        tail = _take_tail(text, budget // 2, count_tokens)
        tail_start = len(text) - len(tail)
    head = _take_head(text[:tail_start], budget - count_tokens(tail), count_tokens)
    out = head + mark + tail
    # token counts of concatenations can exceed the sum of the parts by a token or two at the seams
    while count_tokens(out) > max_tokens and head:
        head = head[: max(0, len(head) - max(1, len(head) // 10))]
        out = head + mark + tail
    return out if count_tokens(out) <= max_tokens else _take_tail(text, max_tokens, count_tokens)


def _take_head(text: str, max_tokens: int, count_tokens: TokenCounter) -> str:
    if max_tokens <= 0:
        return ""
    lo, hi = 0, len(text)  # binary search on characters: the longest prefix that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(text[:mid]) <= max_tokens else (lo, mid - 1)
    return text[:lo]


def _take_tail(text: str, max_tokens: int, count_tokens: TokenCounter) -> str:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(text[len(text) - mid :]) <= max_tokens else (lo, mid - 1)
    return text[len(text) - lo :] if lo else ""


THINK_TAG = re.compile(r"<\s*/?\s*think\s*>", re.IGNORECASE)
THINK_END = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)


def strip_think(text: str) -> str:
    """What follows the last `</think>` (the answer part of a reasoning rollout). When nothing follows it, or the
    block is never closed (a rollout cut at `max_completion_length`), only the tags are removed."""
    ends = list(THINK_END.finditer(text))
    after = text[ends[-1].end() :].strip() if ends else ""
    return after or THINK_TAG.sub("", text).strip()


# --------------------------------------------------------------------------------------------------------------------
# attaching text to a prompt (plain string or chat messages)


def append_to_prompt(prompt: Any, text: str | None, separator: str = "\n\n") -> Any:
    """Return a copy of `prompt` with `text` appended to its end: to the string, or to the content of the last user
    message of a chat prompt (a list of `{"role", "content"}` dicts). `None` or empty `text` returns it unchanged."""
    if not text:
        return prompt
    if isinstance(prompt, str):
        return f"{prompt}{separator}{text}"
    messages = [dict(m) for m in prompt]
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                message["content"] = f"{content}{separator}{text}"
            else:  # list of content blocks (multimodal style): add a text block
                message["content"] = [*content, {"type": "text", "text": text}]
            return messages
    raise ValueError("cannot attach a hint: the chat prompt has no message with role 'user'.")


def prompt_text(prompt: Any) -> str:
    """The text of a prompt for token counting: the string, or all message contents joined."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for message in prompt:
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(block.get("text", "") for block in content if isinstance(block, dict))
    return "\n".join(parts)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") or "" for m in completion if isinstance(m, dict))
