"""One generation round of ZPPO, top to bottom (paper Alg. 1, App. C), and every method's place in it.

    1. plan      the new prompts (TRL's sampler) + replayed hard questions + ExGRPO's experience questions
    2. plain     one TRL pass over them (with `hint_schedule="next_round"`, also the extra groups planned last
                 round); the buffer learns from the plain rollouts only
    3. observe   visits per question; ExGRPO reads its successes; the buffer admits, refreshes, graduates
    4. edit      GRPO† + teacher response / ExGRPO replace rollouts of the plain pass (off-policy methods)
    5. extra     hint groups for the hardest questions (BCQ/NCQ or a baseline's), Retrospective Replay's states,
                 each rolled out fresh as groups of their own: now, in a pass per prompt form (`same_round`, the
                 paper's order), or in the next round's plain pass (`next_round`)
    6. train     advantages over the whole round (the paper's Norm w/o Zero, or TRL's), which groups teach anything
    7. record    metrics and the round's record

`run_round` takes the state (`RunState`, identical on every process) and the seams to TRL and the model
(`rollout.TRLSeams`, or a fake): it reads no trainer attribute, so a round can be run and tested without a model.
Every process makes the same choices: the state is updated only from gathered rewards, every random choice is drawn
from `round_rng(seed, round, ...)`, and the teacher is called on the main process and broadcast.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from ..buffers.replay import group_unit, question_id, replay_count, sample_replay
from ..methods import baselines, exgrpo, retrospective, zppo
from ..text import append_to_prompt
from .advantages import group_has_variance, zppo_advantages
from .batching import HINT_FLAG, INFORMATIVE_FLAG, concat_rollout_batches, informative_token_count, process_share
from .metrics import round_metrics, zero_variance_metrics
from .state import RunState
from .visits import merge_visits, round_visits


@dataclass
class RoundResult:
    """What a round hands to TRL (`output`: this process's rows, TRL's tensors plus ZPPO's row flags) and what it
    did (`record`: ids, hint prompts as the student saw them, counts and tokens, identical on every process)."""

    output: dict
    record: dict


def as_model_input(row: dict, kind: str, instruction: str | None) -> dict:
    """A copy of a dataset row as the student sees it: the answer-format instruction appended, `prompt_id` and
    `zppo_kind` set (reward functions may read both)."""
    row = dict(row)
    row["prompt_id"] = question_id(row)
    row["prompt"] = append_to_prompt(row["prompt"], instruction)
    row["zppo_kind"] = kind
    return row


def run_round(new_rows: list[dict], state: RunState, seams) -> RoundResult:
    """One round: `new_rows` are the round's new prompts (one row per group, all processes', in TRL's sampler
    order); updates `state` and returns this process's rows and the round's record. Every process runs the same
    collectives."""
    args, G = seams.args, seams.num_generations
    unit = group_unit(seams.num_processes, args.steps_per_generation, G)
    num_new = len(new_rows)

    # 1. plan: new prompts + replays drawn now from the latest buffer + ExGRPO's stored questions (never one the
    # round already rolls out)
    new_ids = [question_id(row) for row in new_rows]
    count = replay_count(args.replay_ratio, num_new, len(state.buffer), unit)
    replay_ids = sample_replay(state.buffer.ids(), count, args.seed, state.round, exclude=set(new_ids))
    experience_ids = exgrpo.draw(state, num_new, unit, {*new_ids, *replay_ids}, seams)
    rows = new_rows + [state.rows[pid] for pid in replay_ids] + [state.experience.row(pid) for pid in experience_ids]
    kinds = ["plain"] * num_new + ["replay"] * len(replay_ids) + ["experience"] * len(experience_ids)
    plain_groups = [as_model_input(r, kind, args.answer_format_instruction) for r, kind in zip(rows, kinds)]

    # 2. the plain pass; with `hint_schedule="next_round"` the extra groups planned last round ride in it (those of
    # the plain rows' prompt form: TRL tokenizes a pass either as chat or as text) and are rolled out fresh now
    riding, apart = [], []
    if args.hint_schedule == "next_round":
        chat = not isinstance(plain_groups[0]["prompt"], str)
        riding = [g for g in state.pending if (not isinstance(g[1]["prompt"], str)) == chat]
        apart = [g for g in state.pending if (not isinstance(g[1]["prompt"], str)) != chat]
        state.pending = []
    plain = seams.rollout(plain_groups + [row for _, row in riding], gather=True)
    n_plain = len(plain_groups) * G  # the pass's first rows are the plain groups' (global order)
    rewards, riding_rewards, completions = (
        plain.rewards[:n_plain],
        plain.rewards[n_plain:],
        plain.completions[:n_plain],
    )
    correct, scored = correct_and_scored(rewards, seams)
    all_visits = round_visits(rows, new_ids + replay_ids + experience_ids, correct, scored, completions)
    visits = all_visits[: num_new + len(replay_ids)]  # ZPPO's: new and replayed questions

    # 3. observe: ExGRPO reads its successes before any row is replaced; the buffer sees one visit per question
    # (copies merged) and keeps the rows of exactly the questions it holds
    harvested = exgrpo.harvest(state, plain, all_visits, correct, scored, num_new, seams)
    questions = merge_visits(visits)
    before, held = state.buffer.counters(), state.buffer.ids()  # FIFO order: the same on every process
    outcome = {v.prompt_id: state.buffer.visit(v.prompt_id, v.correct, v.scored, state.round) for v in questions}
    row_of = {**state.rows, **{v.prompt_id: v.row for v in questions}}
    state.rows = {pid: row_of[pid] for pid in state.buffer.ids()}

    # 4 and 5. hint groups for the hardest questions, or (GRPO† + teacher response) teacher responses injected into
    # their plain groups after the buffer saw them as sampled; Retrospective Replay's states, chosen before this
    # round's are harvested and never for a question that has a hint group this round; ExGRPO's replacement
    injected, unbuilt = 0, Counter()
    if args.hint_type == "teacher_response":
        hints = []
        rewards, injected, teacher_failures = baselines.inject_teacher_responses(
            plain, plain_groups, visits, scored & ~correct, rewards, num_new, state.round, seams
        )
    else:
        hints, teacher_failures, unbuilt = zppo.hint_groups(questions, num_new, unit, state.round, seams)
    states = retrospective.plan_states(state, num_new, unit, {row["prompt_id"] for _, row in hints}, seams)
    if args.retrospective_ratio > 0:
        retrospective.harvest_states(state, visits, correct, scored, completions, seams)
    experience_rows = []
    if experience_ids:  # the last rollout of each experience group becomes a stored success
        rewards, experience_rows = exgrpo.replay(
            state, plain, plain_groups, len(visits), experience_ids, rewards, seams
        )
    exgrpo.store(state, harvested)

    # the extra groups: rolled out now in passes of their own (`same_round`: this round's; `next_round`: last round's
    # of the other prompt form), or kept for the next round's plain pass (`next_round`). A state row is a rendered
    # text prompt (it ends inside the assistant turn) and takes its own pass
    if args.hint_schedule == "next_round":
        state.pending, passes = hints + states, [apart]
    else:
        passes = [hints, states]
    output, pass_rewards, extra_rewards = plain.output, [rewards], []
    if riding:
        pass_rewards[0] = torch.cat([rewards, riding_rewards])
        extra_rewards.append(riding_rewards)
    for groups in passes:
        if groups:
            extra = seams.rollout([row for _, row in groups], metrics_prefix="zppo/hint/")
            pass_rewards.append(extra.rewards)
            extra_rewards.append(extra.rewards)
            output = concat_rollout_batches(output, extra.output, seams.text.pad_token_id)
    extra_groups = riding + [g for groups in passes for g in groups]  # rolled out this round, in row order
    extra_correct = extra_scored = None
    if extra_rewards:
        extra_correct, extra_scored = correct_and_scored(torch.cat(extra_rewards), seams)
    replays = (0, 0)
    continued = torch.tensor([kind == "retrospective" for kind, _ in extra_groups], dtype=torch.bool)
    if continued.any():
        continued_groups = [g for g, on in zip(extra_groups, continued.tolist()) if on]
        replays = retrospective.record_replays(
            state, continued_groups, extra_correct[continued], extra_scored[continued]
        )
    hint_rows = torch.cat(
        [torch.zeros(n_plain, dtype=torch.bool), torch.ones(len(extra_groups) * G, dtype=torch.bool)]
    )
    output[HINT_FLAG] = local_part(hint_rows, pass_rewards, seams).to(output["advantages"].device)
    if args.experience_ratio > 0:
        output.update(exgrpo.experience_columns(output["completion_ids"], experience_rows))

    # 6. advantages over the whole round (plain and extra groups together); which groups teach anything
    round_rewards = [total_rewards(r, seams) for r in (rewards, *extra_rewards)]  # plain, then each extra part
    flat_rewards = torch.cat(round_rewards)
    if args.advantage_estimator == "zppo":
        advantages = zppo_advantages(flat_rewards, G)
        output["advantages"] = local_part(advantages, pass_rewards, seams)
        seams.show_advantages(advantages.tolist())
    elif injected or experience_ids:  # TRL's advantages of the first pass predate the replaced rows: its formula on
        # the new rewards (plain, and riding groups if any; `scale_rewards="batch"` then scales over both)
        first_pass = total_rewards(pass_rewards[0], seams)
        advantages = baselines.grpo_advantages(first_pass, G, seams.scale_rewards)
        mine = process_share(advantages, seams.num_processes, seams.process_index)
        output["advantages"][: len(mine)] = mine.to(output["advantages"].dtype)
        seams.show_advantages(advantages.tolist(), before_last=sum(len(r) for r in pass_rewards[1:]))
    has_variance = [group_has_variance(r, G) for r in round_rewards]
    flags = torch.cat([f.repeat_interleave(G) for f in has_variance])
    output[INFORMATIVE_FLAG] = local_part(flags, pass_rewards, seams)
    all_tokens = output["num_items_in_batch"]
    informative_tokens = informative_token_count(output, seams.gather)
    if args.exclude_zero_variance_groups:
        output["num_items_in_batch"] = informative_tokens

    # 7. metrics and the round's record
    after = state.buffer.counters()
    counts = {key: after[key] - before[key] for key in after}  # admitted / graduated / evicted this round
    extra_kinds = [kind for kind, _ in extra_groups]
    seams.log(
        {
            **round_metrics(state.buffer, counts, len(replay_ids), extra_kinds, extra_correct, extra_scored, G),
            **zero_variance_metrics(kinds + extra_kinds, torch.cat(has_variance).tolist()),
            "zppo/teacher_failures": float(teacher_failures),
            "zppo/nonfinite_rewards": float(seams.nonfinite_rewards()),
            "zppo/hints_not_built": float(sum(unbuilt.values())),
            **{f"zppo/hints_not_built/{reason}": float(n) for reason, n in unbuilt.items()},
            **({"zppo/injected_responses": float(injected)} if args.hint_type == "teacher_response" else {}),
            **(exgrpo.metrics(state, len(experience_ids)) if args.experience_ratio > 0 else {}),
            **(retrospective.metrics(state, replays) if args.retrospective_ratio > 0 else {}),
            "zppo/informative_token_share": float(informative_tokens / all_tokens.clamp(min=1)),
            "zppo/loss_normalizer_tokens": float(output["num_items_in_batch"]),
        }
    )
    loss_rows = output["completion_mask"].sum(dim=1)
    tokens = torch.stack(
        [loss_rows[~output[HINT_FLAG]].sum(), loss_rows[output[HINT_FLAG]].sum(), output["prompt_mask"].sum()]
    )
    plain_tokens, hint_tokens, prompt_tokens = seams.gather(tokens).view(-1, 3).sum(dim=0).tolist()
    record = {
        "round": state.round,
        **counts,
        "admitted_ids": [pid for pid, what in outcome.items() if what == "admitted"],
        "graduated_ids": [pid for pid, what in outcome.items() if what == "graduated"],
        "evicted_ids": [pid for pid in held if pid not in state.buffer and outcome.get(pid) != "graduated"],
        # what this round generated, over all processes: completions, their tokens (plain and hint rows) and the
        # prompt tokens of every row (a round's processed tokens = prompt + completion tokens)
        "completions": sum(len(r) for r in round_rewards),
        "tokens": {
            "plain_completion": int(plain_tokens),
            "hint_completion": int(hint_tokens),
            "prompt": int(prompt_tokens),
        },
        "buffer_size": len(state.buffer),
        "teacher_failures": teacher_failures,
        "new": new_ids,
        "replayed": replay_ids,
        "experience": experience_ids,
        "hints": [
            {"kind": kind, "prompt_id": row["prompt_id"], "prompt": row["prompt"]} for kind, row in extra_groups
        ],
        # next_round: the extra groups this round planned, rolled out with the next round's plain prompts
        **({"pending": [{"kind": k, "prompt_id": r["prompt_id"]} for k, r in state.pending]} if state.pending else {}),
    }
    state.round += 1
    return RoundResult(output, record)


def correct_and_scored(rewards_per_func: torch.Tensor, seams) -> tuple[torch.Tensor, torch.Tensor]:
    """Per rollout, as `(groups, G)` bool tensors: is it correct, and could it be scored at all (the correctness
    reward was not None/NaN)."""
    values = rewards_per_func[:, seams.correctness_index]
    scored = ~torch.isnan(values)
    correct = (values >= seams.args.correct_threshold) & scored
    return correct.view(-1, seams.num_generations).cpu(), scored.view(-1, seams.num_generations).cpu()


def total_rewards(rewards_per_func: torch.Tensor, seams) -> torch.Tensor:
    """Weighted sum over reward functions per rollout, as TRL sums them; NaN where no function could score."""
    weights = seams.reward_weights.to(rewards_per_func.device)
    rewards = (rewards_per_func * weights).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable rows stay out of statistics
    return rewards


def local_part(values: torch.Tensor, passes: list[torch.Tensor], seams) -> torch.Tensor:
    """This process's rows of per-rollout `values` laid out pass after pass (all processes' plain rows, then all
    extra rows), in the order of the joined output (its plain rows, then its extra rows)."""
    start, local = 0, []
    for part in passes:
        local.append(process_share(values[start : start + len(part)], seams.num_processes, seams.process_index))
        start += len(part)
    return torch.cat(local)
