"""The paper's other ways of giving a hard question's teacher solution to the student (§4.1, App. D.2), built so that
they differ from ZPPO only in how the teacher's solution reaches the student: same buffer, same hardest-first choice
of questions, same `hint_ratio` cap (in groups), one config switch (`ZPPOConfig.hint_type`).

- `"hint"` (Alg. 5): an answer-free hint from a correct teacher solution, appended to the question in
  `<hint>...</hint>`; G fresh rollouts as their own group, scored against the original answer.
- `"prefix"` (Alg. 6): the first `prefix_fraction` of a correct teacher solution's tokens start the assistant's
  turn; G student continuations as their own group. The prefix is part of the prompt the student continues, so its
  tokens carry no loss and no importance ratio; reward functions see prefix + continuation (`full_completion`).

Pure functions over text; the trainer calls them from its hint planning.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .prompts import append_to_prompt

HINT_TYPES = ("bcq_ncq", "hint", "prefix")
# ours: the paper's hint prompt is not published
HINT_TEMPLATE = "Here is a hint for the question above. It does not give the answer.\n<hint>\n{hint}\n</hint>"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def mentions_answer(text: str, answer: str) -> bool:
    """Whether `text` states `answer`: as a whole number (`8` is not found in `18` or `8.5`), else as a substring,
    in both cases also inside `\\boxed{}`."""
    answer = str(answer).strip()
    if not answer:
        return False
    if re.fullmatch(r"-?\d+(?:\.\d+)?", answer):
        return re.search(rf"(?<![\d.]){re.escape(answer)}(?![\d]|\.\d)", text) is not None
    return answer in text


def answer_free_hint(solution: str, answer: str) -> str | None:
    """The teacher's solution without every sentence that states the gold answer (worked solutions often end in the
    computation that gives it: "7 + 1 = 8."); None when nothing is left. Ours: the paper has the teacher write the
    hint; with a reference-solution column or callable teacher there is no model to ask, and the same rule applies
    to a sampled teacher's solutions."""
    kept = [s.strip() for s in _SENTENCE_END.split(solution) if s.strip() and not mentions_answer(s, answer)]
    return " ".join(kept) or None


def build_answer_hint_prompt(prompt: Any, solution: str, answer: str, instruction: str | None) -> Any | None:
    """The question with an answer-free hint appended (then the answer-format instruction), or None when the
    solution has no sentence without the answer."""
    hint = answer_free_hint(solution, answer)
    if hint is None:
        return None
    return append_to_prompt(append_to_prompt(prompt, HINT_TEMPLATE.format(hint=hint)), instruction)


def solution_prefix(solution: str, fraction: float, tokenize, detokenize) -> str:
    """The first `ceil(fraction * n)` of the solution's `n` tokens, as text (at least one token, never all)."""
    ids = tokenize(solution)
    if len(ids) < 2:
        return ""
    keep = min(len(ids) - 1, max(1, math.ceil(fraction * len(ids))))
    return detokenize(ids[:keep])


def build_prefix_prompt(prompt: Any, prefix: str, instruction: str | None, render_chat) -> str:
    """A text prompt that ends inside the assistant's turn, with `prefix` already written: a chat prompt is rendered
    by `render_chat(messages)` with the prefix as the final, open assistant message (`continue_final_message`); a
    plain text prompt gets the prefix appended after a newline."""
    prompt = append_to_prompt(prompt, instruction)
    if isinstance(prompt, str):
        return f"{prompt}\n{prefix}"
    return render_chat([*prompt, {"role": "assistant", "content": prefix}])


def full_completion(completion: Any, prefix: str, conversational: bool) -> Any:
    """What a reward function sees for a Prefix rollout: prefix + continuation, shaped like a plain rollout's
    completion (a one-message assistant list for chat datasets, a string otherwise)."""
    text = completion if isinstance(completion, str) else completion[0]["content"]
    text = prefix + text
    return [{"role": "assistant", "content": text}] if conversational else text
