"""Per-round metrics, as pure functions of what a round did: `{name: value}` for TRL's metric log (`zppo/*`)."""

from __future__ import annotations

GROUP_KINDS = ("plain", "replay", "bcq", "ncq")


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
