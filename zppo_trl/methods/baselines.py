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

Pure functions over text and rollout tensors, then the round's steps that use them: the Hint and Prefix rows of
`zppo.hint_groups`, and the teacher-response injection into the plain pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from trl.trainer.utils import nanstd

from ..buffers.replay import ratio_count, round_rng
from ..prompts import HintNotBuilt
from ..round.batching import _PADDED, _pad_to
from ..round.visits import HardVisit, rank_hard
from ..sanitize import sanitize_candidate
from ..text import append_to_prompt

HINT_TYPES = ("bcq_ncq", "hint", "prefix", "teacher_response")
# ours: the paper's hint prompt is not published
HINT_TEMPLATE = "Here is a hint for the question above. It does not give the answer.\n<hint>\n{hint}\n</hint>"
_HINT_TAG = re.compile(r"<\s*(/?)\s*hint\s*>", re.IGNORECASE)
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


def build_answer_hint_prompt(
    prompt: Any, solution: str, answer: str, instruction: str | None, special_tokens: Sequence[str] = ()
) -> Any | None:
    """The question with an answer-free hint appended (then the answer-format instruction), or None when the
    solution has no sentence without the answer. The hint is sanitised as a BCQ candidate is (`special_tokens`: the
    student tokenizer's), and cannot close or open the `<hint>` block."""
    hint = answer_free_hint(solution, answer)
    if hint is None:
        return None
    hint = _HINT_TAG.sub(lambda m: f"[{m.group(1)}hint]", sanitize_candidate(hint, special_tokens=special_tokens))
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


# --------------------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------------------
# the round's steps

# on Prefix and Retrospective Replay rows until the rewards are computed: [prefix text, chat dataset?]; taken off
# before TRL's reward functions see the row (`rollout.py`), which score prefix + continuation
PREFIX_KEY = "zppo_prefix"


def hint_row(kind: str, visit: HardVisit, solution: str, seams) -> dict:
    """A Hint or Prefix model-input row for a hard question and one of its teacher solutions; raises
    `prompts.HintNotBuilt` when no sentence of the solution is free of the answer (Hint)."""
    row, instruction = visit.row, seams.args.answer_format_instruction
    if kind == "hint":
        answer = str(row.get("answer", ""))
        prompt = build_answer_hint_prompt(row["prompt"], solution, answer, instruction, seams.text.special_tokens)
        if prompt is None:
            raise HintNotBuilt("no_answer_free_hint", "every sentence of the solution states the answer")
        return {**row, "prompt_id": visit.prompt_id, "zppo_kind": kind, "prompt": prompt}
    prefix = solution_prefix(solution, seams.args.prefix_fraction, seams.text.tokenize, seams.text.decode)
    return prefix_row(row, visit.prompt_id, kind, prefix, seams)


def prefix_row(row: dict, prompt_id, kind: str, prefix: str, seams) -> dict:
    """A row whose answer starts with `prefix` (the Prefix baseline's teacher prefix, a Retrospective Replay state):
    the student continues it, the prefix is prompt (no loss), the rewards read prefix + continuation."""
    prompt = build_prefix_prompt(row["prompt"], prefix, seams.args.answer_format_instruction, seams.text.render_prefix)
    extra = {"prompt_id": prompt_id, "zppo_kind": kind, PREFIX_KEY: [prefix, not isinstance(row["prompt"], str)]}
    return {**row, **extra, "prompt": prompt}


def inject_teacher_responses(
    plain,
    plain_groups: list[dict],
    visits: list[HardVisit],
    wrong,
    rewards_per_func,
    num_new: int,
    round_index: int,
    seams,
) -> tuple[torch.Tensor, int, int]:
    """GRPO† + teacher response (off-policy by design): in at most `hint_ratio * N` hard plain groups, hardest
    first, one wrong rollout becomes a correct teacher response. Edits the plain pass's `output` in place; returns
    the round's gathered rewards per function with the injected rows rescored, the number injected and the teacher
    failures. Every process decides the same rows and runs the same collectives.

    The reward functions score the injected completion as they score a rollout (row `zppo_kind`
    `"teacher_response"`), then the correctness reward's score is set to 1: the teacher's solution is trusted, as
    a BCQ candidate is. The other functions keep their own score of it (a format reward judges the teacher's
    format). Its old-policy log-probs (when TRL keeps them) and vLLM sampling log-probs are the student's own
    now; TRL's per-round metrics (lengths, rewards, `frac_reward_zero_std`) describe the sampled rollouts."""
    args, text = seams.args, seams.text
    ranked = rank_hard(visits, args.hard_threshold)[: ratio_count(args.hint_ratio, num_new)]
    if not ranked:
        return rewards_per_func, 0, 0
    solutions, failures = seams.teacher_solutions([v.row for v in ranked])
    rng = lambda visit: round_rng(args.seed, round_index, "teacher_response", visit.prompt_id)
    plan = plan_injections(ranked, solutions, wrong, lambda visit, sols: rng(visit).choice(sols))
    if not plan:
        return rewards_per_func, 0, failures
    ids = [
        teacher_completion_ids(sol, text.tokenize, text.eos_token_id, args.max_completion_length) for _, sol in plan
    ]
    plan = [(row, c) for (row, _), c in zip(plan, ids)]
    rewards_per_func, _ = replace_rows(plain, plain_groups, plan, "teacher_response", rewards_per_func, seams)
    rewards_per_func[[row for row, _ in plan], seams.correctness_index] = 1.0
    return rewards_per_func, len(plan), failures


def replace_rows(
    plain, plain_groups: list[dict], plan: list[tuple[int, list[int]]], kind: str, rewards_per_func, seams
) -> tuple[torch.Tensor, list[int]]:
    """Put completions the student did not sample into its plain groups (GRPO† + teacher response; ExGRPO's
    replayed successes): `plan` = `[(global row, completion ids)]`, identical on every process. Edits this
    process's `plain.output` in place (completions, masks, the vLLM ratio via `replace_completions`; old and sampling
    log-probs, when TRL keeps them, set to the student's own now, so the ratio starts at 1; the global token count)
    and returns the round's gathered rewards per function with the rows rescored by the reward functions (as row
    `zppo_kind=kind`), and this process's local indices of the replaced rows. Every process runs the same
    collectives."""
    G, text, output = seams.num_generations, seams.text, plain.output
    held = plain.held_rows([row for row, _ in plan])
    local = [(held[row], c) for row, c in plan if row in held]
    rows = [row for row, _ in local]
    loss_tokens = lambda b: (b["completion_mask"] * (1 if b.get("tool_mask") is None else b["tool_mask"])).sum()
    before = loss_tokens(output)
    output.update(
        replace_completions(
            output, rows, [c for _, c in local], text.pad_token_id, text.stop_ids, seams.mask_truncated_completions
        )
    )
    if output.get("old_per_token_logps") is not None:
        # one forward on every process (a sharded model gathers its weights in it), on a row of its own if it
        # holds no replaced one
        logps = seams.student_logps(output, rows or [0])
        for key in ("old_per_token_logps", "sampling_per_token_logps"):
            if output.get(key) is not None and rows:
                output[key][rows] = logps.to(output[key].dtype)
    # a global token count: every process adds the change on all of them
    changed = seams.gather(loss_tokens(output) - before).sum()
    output["num_items_in_batch"] = output["num_items_in_batch"] + changed

    # the reward functions see the new completion; every process scores all of them, rank 0's copy is kept
    inputs = [{**plain_groups[row // G], "zppo_kind": kind} for row, _ in plan]
    texts = text.decode_batch([c for _, c in plan])
    completions = [
        t if isinstance(r["prompt"], str) else [{"role": "assistant", "content": t}] for t, r in zip(texts, inputs)
    ]
    scores = seams.score(inputs, [r["prompt"] for r in inputs], completions, [c for _, c in plan])[: len(plan)]
    rewards_per_func = rewards_per_func.clone()
    rewards_per_func[[row for row, _ in plan]] = scores
    return rewards_per_func, rows
