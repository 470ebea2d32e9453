"""Advantage estimators for ZPPO (paper §2 step 7, App. C).

`"zppo"` is the paper's REINFORCE++-style two-step estimator, "Norm w/o Zero":

    A'_i = r_i - mean(group)                       # per-group baseline
    A_i  = (A'_i - mu_S) / (sigma_S + eps)         # batch normalisation over non-trivial groups only

where `mu_S`, `sigma_S` are taken over the rollouts of the groups whose rewards are not all equal (std > 0);
trivial groups (all right or all wrong) keep `A = 0`. The statistics are per *rollout batch* (ours): over every
group of one generation round, plain and hint groups together, gathered from all processes, not per optimizer
micro-batch. Unscorable rollouts (NaN reward) are left out of every statistic and get `A = 0`, as in TRL.
"""

from __future__ import annotations

import torch

ADVANTAGE_ESTIMATORS = ("zppo", "grpo")


def zppo_advantages(rewards: torch.Tensor, num_generations: int, eps: float = 1e-6) -> torch.Tensor:
    """Norm-w/o-Zero advantages for flat `rewards` of shape `(num_groups * G,)`, groups contiguous.

    Example:
    ```python
    >>> zppo_advantages(torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]), 4)
    tensor([-0.5773, -0.5773,  1.7320, -0.5773,  0.0000,  0.0000,  0.0000,  0.0000])
    ```
    """
    grouped = rewards.view(-1, num_generations)
    group_mean = torch.nanmean(grouped, dim=1, keepdim=True)
    centred = grouped - group_mean
    valid = ~torch.isnan(grouped)
    nontrivial = group_has_variance(rewards, num_generations)
    selected = centred[nontrivial][valid[nontrivial]]
    advantages = torch.zeros_like(grouped)
    if selected.numel() > 0:
        mu = selected.mean()
        sigma = selected.std(unbiased=False) if selected.numel() > 1 else torch.zeros((), dtype=selected.dtype)
        advantages[nontrivial] = (centred[nontrivial] - mu) / (sigma + eps)
    return torch.nan_to_num(advantages, nan=0.0).view(-1)


def group_has_variance(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Per group of flat `rewards` (`(num_groups * G,)`, groups contiguous): whether its scored rewards are not all
    equal (std > 0, NaNs ignored). A group without variance has zero advantage under every estimator: it teaches
    nothing. A group with no scored reward at all has none either.

    Example:
    ```python
    >>> group_has_variance(torch.tensor([0.0, 1.0, 1.0, 1.0, float("nan"), 0.0]), 2)
    tensor([ True, False, False])
    ```
    """
    grouped = rewards.view(-1, num_generations)
    valid = ~torch.isnan(grouped)
    high = torch.where(valid, grouped, -torch.inf).amax(dim=1)
    low = torch.where(valid, grouped, torch.inf).amin(dim=1)
    return valid.any(dim=1) & (high - low > 0)
