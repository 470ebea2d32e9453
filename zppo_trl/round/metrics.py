"""Per-round metrics, as pure functions of what a round did: `{name: value}` for TRL's metric log (`zppo/*`)."""

from __future__ import annotations

import torch

from ..buffers.hard import HardQuestionBuffer

GROUP_KINDS = ("plain", "replay", "bcq", "ncq")  # always reported; a baseline adds its own kind


def zero_variance_metrics(kinds: list[str], has_variance: list[bool]) -> dict[str, float]:
    """`zppo/zero_variance/<kind>`: the share of the round's groups of each kind whose rewards were all equal (they
    teach nothing), NaN for a kind with no group this round (TRL's log skips NaN).

    Example:
    ```python
    >>> zero_variance_metrics(["plain", "plain", "bcq"], [True, False, False])["zppo/zero_variance/plain"]
    0.5
    ```
    """
    metrics = {}
    for kind in sorted(set(GROUP_KINDS) | set(kinds)):
        flags = [v for k, v in zip(kinds, has_variance, strict=True) if k == kind]
        metrics[f"zppo/zero_variance/{kind}"] = (flags.count(False) / len(flags)) if flags else float("nan")
    return metrics


def hint_accuracy(kinds: list[str], correct: torch.Tensor | None, scored: torch.Tensor | None, kind: str) -> float:
    """Correct / scored rollouts of the round's hint groups of one kind (`correct`, `scored`: `(groups, G)` bools
    in the order of `kinds`); NaN when there were none (TRL's log skips NaN)."""
    if correct is None or kind not in kinds:
        return float("nan")
    rows = torch.tensor([k == kind for k in kinds])
    n = scored[rows].sum()
    return float(correct[rows].sum() / n) if n > 0 else float("nan")


def round_metrics(
    buffer: HardQuestionBuffer,
    counts: dict[str, int],
    replayed: int,
    hint_kinds: list[str],
    hint_correct: torch.Tensor | None,
    hint_scored: torch.Tensor | None,
    num_generations: int,
) -> dict[str, float]:
    """What one round did to the buffer and with hints: per-round counts (`zppo/admitted|graduated|evicted|replayed`
    and `zppo/<kind>_prompts` for bcq, ncq and a baseline's hint kind), hint-rollout accuracies, and gauges of the
    whole run so far (`zppo/buffer_size`, `zppo/total_*`, per entry bin `zppo/total_admitted_bin_{k}` /
    `zppo/total_graduated_bin_{k}`, and the paper's `zppo/exit_rate` once something was evicted)."""
    metrics = {f"zppo/{key}": float(value) for key, value in counts.items()}
    metrics["zppo/replayed"] = float(replayed)
    for kind in sorted({"bcq", "ncq", *hint_kinds}):
        metrics[f"zppo/{kind}_prompts"] = float(hint_kinds.count(kind))
        metrics[f"zppo/{kind}_accuracy"] = hint_accuracy(hint_kinds, hint_correct, hint_scored, kind)
    metrics["zppo/buffer_size"] = float(len(buffer))
    metrics.update({f"zppo/total_{key}": float(value) for key, value in buffer.counters().items()})
    for k in range(num_generations + 1):
        if k / num_generations < buffer.hard_threshold:
            metrics[f"zppo/total_admitted_bin_{k}"] = float(buffer.admitted_by_bin.get(k, 0))
            metrics[f"zppo/total_graduated_bin_{k}"] = float(buffer.graduated_by_bin.get(k, 0))
    exit_rate = buffer.exit_rate()
    if exit_rate is not None:
        metrics["zppo/exit_rate"] = exit_rate
    return metrics
