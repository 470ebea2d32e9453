"""ExGRPO experience replay (Zhan et al., arXiv 2510.02245, §4, Alg. 1–2) in a ZPPO round: which stored questions a
round replays, which of its successes are stored, the mixed groups (one fresh rollout replaced by a stored success)
and their metrics. Its buffer is `buffers/experience.py`; the pure pieces are here, first:

- `bucket_probabilities` and `sample_experience`: questions bucketed by latest accuracy, a bucket drawn with
  probability ∝ N(acc; μ, σ), a question uniformly within it, without replacement;
- `lowest_entropy`: which stored trajectory of a question to replay;
- `shaped_weight` and `shaped_surrogate`: the importance weight w = π_θ / π_stored shaped by f(w) = w / (w + β),
  expressed so that TRL's own loss computes ExGRPO's unclipped, shaped objective for a replayed row;
- `delayed_start`: experience replay switches on once a batch's plain pass@1 exceeds a threshold.

Where this differs from ExGRPO's released code (a verl fork), the docstrings say so ("ours").
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import torch

from ..buffers.experience import ExperienceBuffer, Trajectory
from ..buffers.fields import id_order
from ..buffers.replay import ratio_count, round_rng
from ..round.visits import HardVisit, fit_to_unit
from .baselines import replace_rows

# ExGRPO: per-row flag of a replayed stored success, and its stored (generating) per-token log-probs, in the rollout
# output next to TRL's tensors; the loss seam (`round/loss.py`) turns the row's log-probs into the shaped surrogate
EXPERIENCE_FLAG = "zppo_experience"
EXPERIENCE_LOGPS = "zppo_experience_logps"


# --------------------------------------------------------------------------------------------------------------------
# the pure pieces: question sampling (paper §4, "experience sampling")


def bucket_probabilities(accuracies: Iterable[float], mu: float = 0.5, sigma: float = 1.0) -> dict[float, float]:
    """Probability of each accuracy bucket: a bucket holds the questions whose latest accuracy k/K equals its key; its
    weight is the normal density N(acc; μ, σ) at that accuracy, renormalised over the non-empty buckets (those in
    `accuracies`). Keys come in ascending order. The normal's constant cancels in the renormalisation.

    σ is in accuracy units, as the paper writes N(Acc; 0.5, 1). ExGRPO's code (`WeightedBucketSampler`, "normal")
    evaluates N(k; K/2, 1) on the *count* k, i.e. σ = 1/K in accuracy units, much sharper: pass `sigma=1/K` to get it.

    Example:
    ```python
    >>> {acc: round(p, 4) for acc, p in bucket_probabilities([0.25, 0.5, 0.5]).items()}
    {0.25: 0.4922, 0.5: 0.5078}
    ```
    """
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma!r}. Use 1.0 (paper).")
    buckets = sorted(set(accuracies))
    weights = [math.exp(-((acc - mu) ** 2) / (2 * sigma**2)) for acc in buckets]
    total = sum(weights)
    return {acc: w / total for acc, w in zip(buckets, weights)}


def sample_experience(
    buffer: ExperienceBuffer,
    n: int,
    rng: random.Random,
    exclude: Iterable = (),
    mu: float = 0.5,
    sigma: float = 1.0,
) -> list:
    """Draw up to `n` buffered questions for replay, without replacement: each draw picks a bucket by
    `bucket_probabilities` over the buckets that still hold an undrawn question, then a question uniformly within it;
    the drawn question leaves the pool, so an emptied bucket leaves and the others renormalise. Returns fewer than
    `n` ids when fewer are available. Questions in `exclude` are never drawn.

    Deterministic for a given `rng` state and buffer content (buckets and ids are visited in sorted order, not in
    set or insertion order), so processes that share the buffer and the rng seed draw the same questions.

    ExGRPO's code instead draws all bucket counts at once from a multinomial and moves the surplus of over-drawn
    buckets to others; one draw at a time gives the same first draw and renormalises exactly (ours).
    """
    excluded = set(exclude)
    pool: dict[float, list] = {}
    for pid in sorted(buffer.ids(), key=id_order):
        if pid not in excluded:
            pool.setdefault(buffer.accuracy(pid), []).append(pid)
    drawn = []
    while len(drawn) < n and pool:
        probabilities = bucket_probabilities(pool, mu, sigma)
        accuracy = _choose(list(probabilities), list(probabilities.values()), rng)
        bucket = pool[accuracy]
        drawn.append(bucket.pop(rng.randrange(len(bucket))))
        if not bucket:
            del pool[accuracy]
    return drawn


def _choose(keys: list, probabilities: list[float], rng: random.Random):
    u, cumulative = rng.random(), 0.0
    for key, p in zip(keys, probabilities):
        cumulative += p
        if u < cumulative:
            return key
    return keys[-1]  # u within rounding of 1.0


# --------------------------------------------------------------------------------------------------------------------
# trajectory selection, shaped importance weight, delayed start


def lowest_entropy(trajectories: Sequence[Trajectory], mean_entropies: Sequence[float]) -> int:
    """Index of the trajectory to replay: the one with the lowest mean token entropy under the *current* policy
    (paper §4; the trainer computes `mean_entropies[i]` over trajectory i's completion tokens). Ties go to the newest
    (highest index; ours: ExGRPO's code takes `np.argmin`, the oldest).

    Example:
    ```python
    >>> lowest_entropy([None, None, None], [0.7, 0.2, 0.2])
    2
    ```
    """
    if len(trajectories) != len(mean_entropies) or not trajectories:
        raise ValueError(
            f"`lowest_entropy` needs one mean entropy per trajectory and at least one trajectory, got "
            f"{len(trajectories)} trajectories and {len(mean_entropies)} entropies."
        )
    if any(math.isnan(h) for h in mean_entropies):
        raise ValueError(f"`mean_entropies` holds NaN: {list(mean_entropies)!r}.")
    return min(range(len(mean_entropies)), key=lambda i: (mean_entropies[i], -i))


def shaped_weight(w, beta: float = 0.1):
    """ExGRPO's policy shaping f(w) = w / (w + β) of an importance weight `w` (a float or a tensor): it is near 1 for
    w ≫ β and damps the gradient of tokens the current policy already finds likely, f'(w) = β / (w + β)²."""
    if not beta > 0:
        raise ValueError(f"`beta` must be positive, got {beta!r}. Use 0.1 (paper).")
    return w / (w + beta)


def shaped_surrogate(logps: torch.Tensor, stored_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Per-token tensor `X` that makes TRL's GRPO loss compute ExGRPO's shaped, unclipped objective for a replayed
    trajectory, without copying TRL's loss.

    With w = exp(logps - stored_logps) the importance weight of each token against the log-probs stored when the
    trajectory was generated, `X` has the value f(w) = w / (w + β) and the gradient ∂X/∂logps = f'(w)·w (`stored_logps`
    is detached). TRL's `GRPOTrainer._compute_loss` computes, per token, `coef = exp(per_token_logps - old_logps)` and
    the loss `-min(coef · A, clip(coef) · A)`. When the trainer hands it `X` as `per_token_logps` of the replayed row
    and `X.detach()` as its `old_per_token_logps`:

    - coef = exp(X - X.detach()) is exactly 1 in value, inside the clip range, so neither clipping branch cuts it
      (ExGRPO's replayed term is unclipped) and both branches carry the same gradient;
    - ∇coef = exp(0)·∇X = f'(w)·w·∇logπ_θ, so the loss's gradient is -A·f'(w)·w·∇logπ_θ = ∇(-A·f(w)): the gradient
      of ExGRPO's shaped objective -A·f(w) (paper §4, ExGRPO's `off_policy_reshape="p_div_p_0.1"` with
      `loss_remove_clip=True`).

    Caveats for the trainer: this holds for TRL's token-level importance ratio (`importance_sampling_level="token"`);
    the value of `X` is a weight, not a log-prob, so TRL's KL term (`beta > 0`) and anything else that reads
    `per_token_logps`' value must not see `X` for replayed rows; `X.detach()` is the shaped weight itself, ready to
    log. f(w) is computed as sigmoid(log w − log β), finite for any log-probs.
    """
    if not beta > 0:
        raise ValueError(f"`beta` must be positive, got {beta!r}. Use 0.1 (paper).")
    log_w = logps - stored_logps.detach()
    return torch.sigmoid(log_w - math.log(beta))  # = w / (w + β), without overflow of exp(log_w)


def delayed_start(pass_at_1: float, threshold: float = 0.35) -> bool:
    """Whether experience replay may start: the batch's plain pass@1 (correct / scored plain rollouts) exceeds
    `threshold` (paper §4: 35%; strict, as ExGRPO's code compares `batch/solved > experience_start_sratio`). The
    trainer latches it: once on, it stays on. ExGRPO's code also collects no experience before the switch."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold!r}. Use 0.35 (paper).")
    return pass_at_1 > threshold


# TRL losses that are linear in the importance ratio coef (see `shaped_surrogate`)
EXPERIENCE_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")


def check_compatible(config) -> None:
    """ExGRPO's shaped weight reaches TRL's loss as a surrogate log-prob with a ratio of exactly 1; the options below
    read the log-probs in other ways (a KL term, a sequence-level ratio, a mask on the ratio, a non-linear gate)."""
    faults = []
    if config.beta != 0:
        faults.append(f"beta={config.beta} (set beta=0.0)")
    if config.loss_type not in EXPERIENCE_LOSS_TYPES:
        faults.append(f"loss_type={config.loss_type!r} (use one of {EXPERIENCE_LOSS_TYPES})")
    if config.importance_sampling_level != "token":
        faults.append(f"importance_sampling_level={config.importance_sampling_level!r} (use 'token')")
    if getattr(config, "off_policy_mask_threshold", None) is not None:
        faults.append(f"off_policy_mask_threshold={config.off_policy_mask_threshold} (leave it None)")
    if config.multi_objective_aggregation != "sum_then_normalize":
        faults.append(f"multi_objective_aggregation={config.multi_objective_aggregation!r} (use 'sum_then_normalize')")
    if faults:
        raise ValueError(
            f"`experience_ratio={config.experience_ratio}` (ExGRPO) cannot be combined with " + "; ".join(faults) + "."
        )


# --------------------------------------------------------------------------------------------------------------------
# the round's steps (the state is `round.state.RunState`: its `experience` buffer and `experience_on` latch)


def draw(state, num_new: int, unit: int, exclude: set, seams) -> list:
    """The round's experience questions, identical on every process: `experience_ratio * N` drawn by accuracy
    bucket once the delayed start is on, cut to a multiple of `unit` (or repeated up to one unit)."""
    count = ratio_count(seams.args.experience_ratio, num_new)
    if count == 0 or not state.experience_on:
        return []
    rng = round_rng(seams.args.seed, state.round, "experience")
    return fit_to_unit(sample_experience(state.experience, count, rng, exclude=exclude), unit)


def harvest(state, plain, visits: list[HardVisit], correct, scored, num_new: int, seams) -> list:
    """With ExGRPO on: latch the delayed start on the new prompts' plain pass@1, then (once on, as ExGRPO's code)
    the round's visits for the experience buffer, `[(visit, correct marks, trajectories)]`: a correct rollout of a
    partially solved question comes with its token ids and generating log-probs (TRL's old log-probs when it kept
    them, else one no-grad forward over those rows). Read before any row of the plain pass is replaced, and stored
    after this round's replay (`store`): a group never replays one of its own fresh samples."""
    args, G, output = seams.args, seams.num_generations, plain.output
    if args.experience_ratio <= 0:
        return []
    new_scored = int(scored[:num_new].sum())
    if new_scored and delayed_start(float(correct[:num_new].sum()) / new_scored, args.experience_start_accuracy):
        state.experience_on = True
    if not state.experience_on:
        return []
    k, n = correct.sum(dim=1), scored.sum(dim=1)
    wanted = [g * G + i for g in range(len(visits)) if 0 < k[g] < n[g] for i in correct[g].nonzero().view(-1).tolist()]
    trajectories: dict[int, Trajectory] = {}
    if wanted:
        held = plain.held_rows(wanted)
        rows = list(held.values())
        logps = output.get("old_per_token_logps")
        logps = seams.student_logps(output, rows or [0]) if logps is None else logps[rows]
        lengths = output["completion_mask"][rows].sum(dim=1).tolist()
        mine = [
            (row, output["completion_ids"][local, :n_tok].tolist(), lp[:n_tok].tolist())
            for (row, local), n_tok, lp in zip(held.items(), map(int, lengths), logps)
            if n_tok > 0
        ]
        trajectories = {row: Trajectory(ids, lps, state.round) for row, ids, lps in seams.gather_object(mine)}
    harvested = []
    for g, visit in enumerate(visits):
        marks = [bool(c) if s else None for c, s in zip(correct[g].tolist(), scored[g].tolist())]
        if 0 < k[g] < n[g] and any(c and g * G + i not in trajectories for i, c in enumerate(marks)):
            continue  # a correct rollout with no loss tokens (truncated and masked): nothing to replay
        harvested.append((visit, marks, [trajectories.get(g * G + i) for i in range(G)]))
    return harvested


def store(state, harvested: list) -> None:
    """The round's harvest into the experience buffer."""
    for visit, marks, found in harvested:
        state.experience.update(visit.prompt_id, visit.row, marks, found, state.round)


def replay(state, plain, plain_groups: list[dict], first: int, pids: list, rewards_per_func, seams):
    """ExGRPO's mixed groups: in experience group `first + j` (question `pids[j]`), the last of its G fresh
    rollouts is replaced by the question's stored success with the lowest mean entropy under the current policy
    (each group's candidates are scored by the process that holds that row, then gathered, so every process
    chooses the same). Returns the rescored rewards and this process's `(local row, trajectory)` pairs.

    Ours: TRL rolls out G per group, so the group is G fresh rollouts of which one is replaced (one rollout more
    than ExGRPO's G-1 fresh + 1 replayed)."""
    G, output, buffer = seams.num_generations, plain.output, state.experience
    targets = [((first + j) * G + G - 1, pid) for j, pid in enumerate(pids)]
    held = plain.held_rows([row for row, _ in targets])
    candidates = [
        (row, i, t.completion_ids)
        for row, pid in targets
        if row in held
        for i, t in enumerate(buffer.trajectories(pid))
    ]
    entropies = seams.mean_entropies(output, [(held[row], ids) for row, _, ids in candidates])
    scored = seams.gather_object([(row, i, h) for (row, i, _), h in zip(candidates, entropies)])
    chosen = {}
    for row, pid in targets:
        stored = buffer.trajectories(pid)
        by_index = {i: h for r, i, h in scored if r == row}
        chosen[row] = stored[lowest_entropy(stored, [by_index[i] for i in range(len(stored))])]
    plan = [(row, chosen[row].completion_ids) for row, _ in targets]
    rewards_per_func, rows = replace_rows(plain, plain_groups, plan, "experience", rewards_per_func, seams)
    mine = [(held[row], chosen[row]) for row, _ in targets if row in held]
    old = output.get("old_per_token_logps")
    if old is not None and mine:
        # TRL kept old log-probs (several updates per round): the replayed row's "old" value is the surrogate at
        # generation time, so its ratio is 1 on the first update and PPO-clipped around it after
        stored = experience_columns(old, mine)[EXPERIENCE_LOGPS][rows]
        old[rows] = shaped_surrogate(old[rows], stored, seams.args.experience_beta).to(old.dtype)
    return rewards_per_func, mine


def experience_columns(like: torch.Tensor, rows: list[tuple[int, Trajectory]]) -> dict[str, torch.Tensor]:
    """The ExGRPO columns of a rollout output shaped like `like` (`(rows, completion width)`): a flag per row and the
    stored per-token log-probs of each `(local row, trajectory)`, zero elsewhere."""
    flags = torch.zeros(like.shape[0], dtype=torch.bool, device=like.device)
    logps = torch.zeros(like.shape[:2], dtype=torch.float32, device=like.device)
    for row, trajectory in rows:
        values = trajectory.logps[: like.shape[1]]
        flags[row] = True
        logps[row, : len(values)] = torch.tensor(values, dtype=torch.float32)
    return {EXPERIENCE_FLAG: flags, EXPERIENCE_LOGPS: logps}


def metrics(state, replayed: int) -> dict[str, float]:
    counters = state.experience.counters()
    return {
        "zppo/experience/on": float(state.experience_on),
        "zppo/experience/replayed": float(replayed),
        "zppo/experience/buffer_size": float(len(state.experience)),
        "zppo/experience/total_stored_trajectories": float(counters["stored_trajectories"]),
        "zppo/experience/total_retired": float(counters["retired"]),
    }
