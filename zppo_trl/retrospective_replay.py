"""ZPPOTrainer's Retrospective Replay: which stored states a round continues, the states harvested from its plain
rollouts, and their counts and metrics. The method's pure pieces: `retrospective.py`."""

from __future__ import annotations

import torch

from .hints import HardVisit, fit_to_unit
from .prompts import completion_text
from .replay import ratio_count, round_rng
from .retrospective import continuation_success_vs_plain, harvest_state, select_states


class RetrospectiveReplayMixin:
    """Retrospective Replay methods of `ZPPOTrainer` (holds no state: the trainer's `__init__` sets every
    attribute)."""

    def _plan_states(self, num_new: int, unit: int, exclude: set) -> list[tuple[str, dict]]:
        """The round's state continuations, identical on every process: `retrospective_ratio * N` stored states
        (hardest question first, none of a question that already has a hint group this round), cut to a multiple of
        `unit` (or repeated up to one unit), as `("retrospective", prefix row)`."""
        count = ratio_count(self.args.retrospective_ratio, num_new)
        self._state_replays = (0, 0)
        if count == 0:
            return []
        rng = round_rng(self.args.seed, self._zppo_round, "retrospective")
        pids = select_states(self.retrospective_buffer, count, rng, exclude=exclude)
        rows = [self._prefix_row(self._retrospective_rows[pid], pid, "retrospective",
                                 self.retrospective_buffer.state(pid).prefix) for pid in pids]  # fmt: skip
        return fit_to_unit([("retrospective", row) for row in rows], unit)

    def _harvest_states(self, visits: list[HardVisit], correct, scored, completions: list) -> None:
        """Every plain visit of the round updates its question's state; a hard visit solved at least once offers the
        state of its first correct rollout that has one (`retrospective.harvest_state`)."""
        G, buffer = self.num_generations, self.retrospective_buffer
        for g, visit in enumerate(visits):
            n = int(scored[g].sum())
            if n == 0:
                continue
            accuracy = int(correct[g].sum()) / n
            state = None
            if 0 < accuracy < self.args.hard_threshold:
                texts = [completion_text(c) for c in completions[g * G : (g + 1) * G]]
                answer = str(visit.row.get("answer", ""))
                state = harvest_state(texts, correct[g].tolist(), answer, self._tokenize, self._tokenizer.decode,
                                      self.args.retrospective_state_fraction)  # fmt: skip
            if state is None:
                buffer.record_plain(visit.prompt_id, accuracy)
            else:
                buffer.harvest(visit.prompt_id, state, accuracy, self._zppo_round)
                self._retrospective_rows[visit.prompt_id] = visit.row
        self._retrospective_rows = {pid: self._retrospective_rows[pid] for pid in buffer.ids()}

    def _record_state_replays(self, states: list[tuple[str, dict]], rewards: torch.Tensor) -> None:
        """Each replayed state's continuations (`rewards`: the state pass's, scored on state + continuation) update
        its counts."""
        correct, scored = (t.view(-1, self.num_generations).cpu() for t in self._correct_and_scored(rewards))
        for g, (_, row) in enumerate(states):
            self.retrospective_buffer.record_replay(row["prompt_id"], int(correct[g].sum()), int(scored[g].sum()))
        self._state_replays = (int(correct.sum()), int(scored.sum()))

    def _retrospective_metrics(self) -> dict[str, float]:
        counters, (successes, tries) = self.retrospective_buffer.counters(), self._state_replays
        return {
            "zppo/retrospective/buffer_size": float(len(self.retrospective_buffer)),
            "zppo/retrospective/total_stored": float(counters["stored"]),
            "zppo/retrospective/total_dropped_unpromising": float(counters["dropped_unpromising"]),
            "zppo/retrospective/continuation_success": successes / tries if tries else float("nan"),
        }

    def retrospective_report(self) -> dict:
        """Stored states' continuation success against the plain accuracy of the same questions
        (`retrospective.continuation_success_vs_plain`)."""
        return continuation_success_vs_plain(self.retrospective_buffer)
