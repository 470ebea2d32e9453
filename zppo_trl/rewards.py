"""Reward functions, TRL-shaped: `f(completions, <dataset columns>, **kwargs) -> list[float | None]`.

`None` means "cannot score this row" (TRL then ignores the function for that row; ZPPO counts a question whose
rollouts are all unscorable as neither hard nor solved).

A correctness reward also says how it reads a final answer: its `extract_answer` attribute (text -> answer string or
None). `answer_extractor(reward_func)` returns it (the last `\\boxed{}` for a function without one), and ZPPO uses
that same extractor for the answers an NCQ prompt lists as wrong and for the answer a sampled teacher solution must
match, so a hint prompt never calls an answer wrong that the reward scores correct.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence

from .text import AnswerExtractor, completion_text, extract_boxed

try:  # math-verify is a core dependency; keep the import guarded so a broken install names the package
    from math_verify import parse, verify

    _MATH_VERIFY_ERROR = None
except ImportError as err:  # pragma: no cover - exercised only on broken installs
    _MATH_VERIFY_ERROR = err

_MARKERS = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\%|%|\\text\{\s*(?:degrees?|percent)\s*\}|\\!")


def strip_markers(answer: str) -> str:
    """Remove degree and percent markers (`^\\circ`, `°`, `\\%`, `%`), for the paper's second grading attempt."""
    return _MARKERS.sub("", answer).strip()


def _timeouts() -> tuple[int | None, int | None]:
    # math_verify's timeouts use signal.alarm, which only works in the main thread (TRL runs async rewards elsewhere)
    if threading.current_thread() is threading.main_thread():
        return 10, 5
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return None, None


def _parse(text: str, timeout: int | None):
    return parse(f"${text}$", parsing_timeout=timeout)


def is_equivalent(predicted: str, gold: str) -> bool | None:
    """LaTeX/numeric equivalence of two final answers (`1/2 == 0.5`); None when the gold answer cannot be parsed.

    On a mismatch, degree and percent markers are stripped from both and they are compared once more (paper §4).
    """
    if _MATH_VERIFY_ERROR is not None:
        raise ImportError("zppo_trl.rewards needs `math-verify`: pip install 'math-verify[antlr4_13_2]'.")
    parse_timeout, verify_timeout = _timeouts()
    gold_parsed = _parse(gold, parse_timeout)
    if not gold_parsed:
        return None
    if verify(gold_parsed, _parse(predicted, parse_timeout), timeout_seconds=verify_timeout):
        return True
    if predicted.strip() == gold.strip():
        return True
    stripped_gold, stripped_pred = strip_markers(gold), strip_markers(predicted)
    if (stripped_gold, stripped_pred) == (gold, predicted):
        return False
    gold_parsed = _parse(stripped_gold, parse_timeout)
    return bool(gold_parsed) and bool(
        verify(gold_parsed, _parse(stripped_pred, parse_timeout), timeout_seconds=verify_timeout)
    )


def answer_accuracy(
    completions: Sequence, answer: Sequence[str], extract_answer: AnswerExtractor
) -> list[float | None]:
    """1.0 when `extract_answer(completion)` is equivalent to the gold answer, 0.0 when it is not or there is no
    answer, None when the gold answer cannot be parsed (unscorable). The body of every correctness reward here."""
    rewards: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        predicted = extract_answer(completion_text(completion))
        if predicted is None:
            rewards.append(0.0 if is_equivalent(str(gold), str(gold)) is not None else None)
            continue
        same = is_equivalent(predicted, str(gold))
        rewards.append(None if same is None else float(same))
    return rewards


def boxed_accuracy_reward(completions: Sequence, answer: Sequence[str], **kwargs) -> list[float | None]:
    r"""1.0 when the completion's last `\boxed{...}` is equivalent to the gold `answer`, else 0.0 (paper §4).

    A completion without a (complete) `\boxed{}` scores 0.0; a gold answer math-verify cannot parse gives `None`
    (unscorable). `**kwargs` takes the other dataset columns and TRL's extras (`trainer_state`, `log_metric`, ...).

    Example:
    ```python
    >>> boxed_accuracy_reward(["so \\boxed{\\frac{1}{2}}", "\\boxed{3}", "no box"], ["0.5", "4", "1"])
    [1.0, 0.0, 0.0]
    ```
    """
    return answer_accuracy(completions, answer, extract_boxed)


boxed_accuracy_reward.extract_answer = extract_boxed

# a number: digits with optional thousands separators and decimals, and an optional minus sign before it
_NUMBER = re.compile(r"(-?)(\d+(?:,\d{3}(?!\d))*(?:\.\d+)?)")


def extract_last_number(text: str) -> str | None:
    """The last number written in `text` (`-3`, `1,024` -> `1024`, `2.5`), or None when it has none.

    A minus sign counts only when it does not follow a word character or a closing bracket ("7-3" ends in 3)."""
    last = None
    for match in _NUMBER.finditer(text):
        last = match
    if last is None:
        return None
    sign, digits = last.groups()
    before = text[last.start() - 1] if last.start() > 0 else " "
    if sign and (before.isalnum() or before in ")]}_"):
        sign = ""
    return sign + digits.replace(",", "")


def extract_final_answer(text: str) -> str | None:
    r"""The last complete, non-empty `\boxed{...}` of `text`; when there is none, the last number in it; else None.

    Ours: a regex, not math-verify's expression extraction, reads the number: the latter evaluates a trailing
    expression, so a completion that only restates the question ("23 + 45") would be read as its value (68).
    """
    boxed = extract_boxed(text)
    return boxed if boxed else extract_last_number(text)  # an empty `\boxed{}` holds no answer


def final_answer_reward(completions: Sequence, answer: Sequence[str], **kwargs) -> list[float | None]:
    r"""1.0 when the completion's final answer is equivalent to the gold `answer`, else 0.0.

    The final answer is the last non-empty `\boxed{...}`, or the last number when the completion has no such box
    (`extract_final_answer`): a small model that answers "8 * 4 = 32 books" without a box is right, and a reward it
    cannot earn gives GRPO and ZPPO nothing to learn from. Equivalence and unscorable gold answers as in
    `boxed_accuracy_reward` (math-verify).

    Example:
    ```python
    >>> final_answer_reward(["8 boxes * 4 books = 32 books", "\\boxed{31}, not 32", "no number"], ["32"] * 3)
    [1.0, 0.0, 0.0]
    ```
    """
    return answer_accuracy(completions, answer, extract_final_answer)


final_answer_reward.extract_answer = extract_final_answer


def answer_extractor(reward_func: Callable | None) -> AnswerExtractor:
    r"""How `reward_func` reads a final answer: its `extract_answer` attribute, or the last `\boxed{}` (the
    convention of `boxed_accuracy_reward` and of the paper) for a reward function or reward model without one.

    Give your own correctness reward the attribute (`my_reward.extract_answer = my_extractor`) so that NCQ prompts
    list, and sampled teacher solutions are checked against, the answers it actually scores.
    """
    extract = getattr(reward_func, "extract_answer", None)
    return extract if callable(extract) else extract_boxed
