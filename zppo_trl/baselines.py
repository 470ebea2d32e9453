"""The paper's other ways of giving a hard question's teacher solution to the student (§4.1, App. D.2), built so that
they differ from ZPPO only in how the teacher's solution reaches the student: same buffer, same hardest-first choice
of questions, same `hint_ratio` cap (in groups), one config switch (`ZPPOConfig.hint_type`).

- `"hint"` (Alg. 5): an answer-free hint from a correct teacher solution, appended to the question in
  `<hint>...</hint>`; G fresh rollouts as their own group, scored against the original answer.
- `"prefix"` (Alg. 6): the first `prefix_fraction` of a correct teacher solution's tokens start the assistant's
  turn; G student continuations as their own group. The prefix is part of the prompt the student continues, so its
  tokens carry no loss and no importance ratio; reward functions see prefix + continuation (`full_completion`).
- `"teacher_response"` (GRPO† + teacher response): no extra group. After a round's plain groups are scored and the
  buffer has learned from them, one wrong rollout of each chosen hard group is replaced by a correct teacher
  response, scored 1 by the correctness reward, and the round's advantages are recomputed. **This breaks the
  on-policy assumption**: the injected sequence was not sampled from the student, yet it is trained on with the
  student's own log-probs as its old policy (importance ratio 1) and a large positive advantage. It is the baseline
  the paper argues against ("teacher in prompts, not gradients"), kept to check that comparison.

Pure functions over text and rollout tensors; the trainer calls them from its hint planning and its round.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from trl.trainer.utils import nanstd

from .batching import _PADDED, _pad_to
from .hints import HardVisit
from .prompts import append_to_prompt

HINT_TYPES = ("bcq_ncq", "hint", "prefix", "teacher_response")
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


# ----------------------------------------------------------------------------------------------------------------------
# GRPO† + teacher response


def plan_injections(
    ranked: Sequence[HardVisit],
    solutions: Sequence[list[str]],
    wrong: torch.Tensor,
    pick: Callable[[HardVisit, list[str]], str],
) -> list[tuple[int, str]]:
    """`(global row, teacher solution)` per injection: for each ranked (hardest first, already cut to the round's
    `hint_ratio` slots) question with a teacher solution, its group's first wrong rollout (`wrong`: `(groups, G)`
    bool, scored and not correct, from the plain rollouts before any injection) and the solution `pick` chooses.
    Rollouts of a group are i.i.d. samples, so the first wrong one is as good as a random one."""
    G, plan = wrong.shape[1], []
    for visit, solved in zip(ranked, solutions, strict=True):
        rollouts = wrong[visit.position].nonzero()
        if solved and rollouts.numel():
            plan.append((visit.position * G + int(rollouts[0]), pick(visit, list(solved))))
    return plan


def teacher_completion_ids(solution: str, tokenize, eos_token_id: int, max_length: int) -> list[int]:
    """The teacher's solution as a completion: its tokens, then EOS (as a rollout that stopped), cut to
    `max_completion_length` (then without EOS: truncated, as a rollout that ran out of room)."""
    return (list(tokenize(solution)) + [eos_token_id])[:max_length]


def replace_completions(
    batch: dict, rows: Sequence[int], completions: Sequence[list[int]], pad_token_id: int, stop_ids, mask_truncated
) -> dict:
    """`batch` (one process's TRL rollout output) with the completions of `rows` replaced by `completions`.

    The completion tensors are widened (right padding, as TRL pads) when a new completion is longer than the batch's
    width. Each replaced row gets its completion mask (zero when it ends without a stop token and
    `mask_truncated` holds, TRL's `mask_truncated_completions` rule), a tool mask of ones, and a vLLM importance
    sampling ratio of 1 (token- or sequence-level, as TRL built it): the sequence was not sampled by vLLM, so there
    is nothing to correct. `old_per_token_logps` and `sampling_per_token_logps` of the rows are left for the caller
    (they need the model)."""
    batch = dict(batch)
    width = max([batch["completion_ids"].shape[1], *map(len, completions)])
    for key, (side, value) in _PADDED.items():
        tensor = batch.get(key)
        if side != "right" or tensor is None or tensor.ndim != 2:
            continue
        if key == "importance_sampling_ratio" and tensor.shape[1] == 1:
            continue  # sequence-level ratio: one per row
        batch[key] = _pad_to(tensor, width, side, pad_token_id if value is None else value).clone()
    for row, ids in zip(rows, completions, strict=True):
        ids_tensor = torch.tensor(ids, dtype=batch["completion_ids"].dtype, device=batch["completion_ids"].device)
        batch["completion_ids"][row] = pad_token_id
        batch["completion_ids"][row, : len(ids)] = ids_tensor
        batch["completion_mask"][row] = 0
        if not (mask_truncated and ids[-1] not in stop_ids):
            batch["completion_mask"][row, : len(ids)] = 1
        if batch.get("tool_mask") is not None:
            batch["tool_mask"][row] = 1
        if batch.get("importance_sampling_ratio") is not None:
            batch["importance_sampling_ratio"][row] = 1.0
    return batch


def grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str) -> torch.Tensor:
    """TRL's advantages for flat total `rewards` (`(groups * G,)`, NaN = unscorable), `sum_then_normalize`: minus the
    group mean, divided by the group's (`"group"`) or the batch's (`"batch"`) std + 1e-4, or not (`"none"`);
    unscorable rows get 0. Used to recompute the advantages after teacher responses were injected: the formula of
    `GRPOTrainer._generate_and_score_completions`, which offers no hook to rerun it on new rewards.

    Example:
    ```python
    >>> grpo_advantages(torch.tensor([0.0, 0.0, 1.0, 0.0]), 4, "group")
    tensor([-0.4999, -0.4999,  1.4997, -0.4999])
    ```
    """
    grouped = rewards.view(-1, num_generations)
    centred = (grouped - torch.nanmean(grouped, dim=1, keepdim=True)).view(-1)
    if scale_rewards == "group":
        std = nanstd(grouped, dim=1).repeat_interleave(num_generations)
    elif scale_rewards == "batch":
        std = nanstd(rewards).expand_as(rewards)
    elif scale_rewards == "none":
        return torch.nan_to_num(centred, nan=0.0)
    else:
        raise ValueError(f"`scale_rewards` must be 'group', 'batch' or 'none', got {scale_rewards!r}.")
    return torch.nan_to_num(centred / (std + 1e-4), nan=0.0)
