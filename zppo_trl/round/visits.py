"""A round's plain visits: one `HardVisit` per plain group (its correct and scored rollouts, its wrong completions),
the hardest ones ranked (paper Alg. 1 steps 2-4), copies of a question merged, and the rule that keeps a round's
extra groups legal for TRL's shapes. Pure functions, identical on every process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..text import completion_text


@dataclass
class HardVisit:
    """One plain (new or replayed) visit of a question in the current round, with what a hint needs."""

    prompt_id: Any
    position: int  # the group's index in the round's global order (tie-breaker)
    correct: int
    scored: int
    row: dict  # the dataset row (original columns)
    wrong_completions: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored


def rank_hard(visits: Sequence[HardVisit], hard_threshold: float) -> list[HardVisit]:
    """Hard visits (scored, accuracy < τ), one per question, hardest first.

    Ties in accuracy are broken by the position in the round (new prompts in sampler order, then replays); a question
    visited twice in one round keeps its lowest-accuracy visit (ours).
    """
    best: dict[Any, HardVisit] = {}
    for v in visits:
        if v.scored > 0 and v.accuracy < hard_threshold and v.wrong_completions:
            if v.prompt_id not in best or v.accuracy < best[v.prompt_id].accuracy:
                best[v.prompt_id] = v
    return sorted(best.values(), key=lambda v: (v.accuracy, v.position))


def fit_to_unit(items: Sequence, unit: int) -> list:
    """Cut a planned list of extra groups down to a multiple of `unit`; a non-empty list shorter than one unit is
    repeated cyclically up to one unit instead (ours: the same hint prompt rolled out twice, never dropped)."""
    items = list(items)
    if not items or unit <= 1:
        return items
    if len(items) >= unit:
        return items[: len(items) // unit * unit]
    return [items[i % len(items)] for i in range(unit)]


def round_visits(
    rows: Sequence[dict], question_ids: Sequence, correct: torch.Tensor, scored: torch.Tensor, completions: Sequence
) -> list[HardVisit]:
    """One `HardVisit` per plain group of a round, in the round's global order: its correct and scored rollouts (from
    the correctness reward, `(groups, G)` bool tensors) and the text of its wrong rollouts (NCQ/BCQ candidates)."""
    G = correct.shape[1]
    visits = []
    for g, (row, pid) in enumerate(zip(rows, question_ids, strict=True)):
        wrong = [completion_text(completions[g * G + i]) for i in range(G) if scored[g, i] and not correct[g, i]]
        visits.append(HardVisit(pid, g, int(correct[g].sum()), int(scored[g].sum()), row, wrong))
    return visits


def merge_visits(visits: Sequence[HardVisit]) -> list[HardVisit]:
    """One visit per question: groups of the same question in one round (a dataset that holds the same question
    twice, identified by `buffers.replay.question_id`) are merged, their correct and scored rollouts summed and
    their wrong rollouts joined, at the first group's position. So the buffer sees one visit per question per round,
    as it would had the question been rolled out once with more rollouts (ours)."""
    merged: dict[Any, HardVisit] = {}
    for v in visits:
        if v.prompt_id in merged:
            m = merged[v.prompt_id]
            merged[v.prompt_id] = HardVisit(
                m.prompt_id,
                m.position,
                m.correct + v.correct,
                m.scored + v.scored,
                m.row,
                m.wrong_completions + v.wrong_completions,
            )
        else:
            merged[v.prompt_id] = v
    return list(merged.values())
