"""Reward functions, TRL-shaped: `f(completions, <dataset columns>, **kwargs) -> list[float | None]`.

`None` means "cannot score this row" (TRL then ignores the function for that row; ZPPO counts a question whose
rollouts are all unscorable as neither hard nor solved).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

from .prompts import completion_text, extract_boxed

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
    rewards: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        predicted = extract_boxed(completion_text(completion))
        if predicted is None:
            rewards.append(0.0 if is_equivalent(str(gold), str(gold)) is not None else None)
            continue
        same = is_equivalent(predicted, str(gold))
        rewards.append(None if same is None else float(same))
    return rewards
