"""ZPPOTrainer's rows of a round: a dataset row as the student sees it, this process's share of a round's groups and
of per-rollout values, correctness and total rewards per rollout, token counts, TRL's rollout pass, and the room the
completions table makes for the round's rows."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

import torch

from .batching import process_share
from .prompts import append_to_prompt
from .replay import question_id


class RoundRowsMixin:
    """Row helpers of `ZPPOTrainer`. `_rollout` runs `GRPOTrainer._generate_and_score_completions` (reached by
    `super()`: no class between this mixin and `GRPOTrainer` in `ZPPOTrainer`'s MRO defines it)."""

    def _as_model_input(self, row: dict, kind: str) -> dict:
        """A copy of a dataset row as the student sees it: the answer-format instruction appended, `prompt_id` and
        `zppo_kind` set (reward functions may read both)."""
        row = dict(row)
        row["prompt_id"] = question_id(row)
        row["prompt"] = append_to_prompt(row["prompt"], self.args.answer_format_instruction)
        row["zppo_kind"] = kind
        return row

    def _local_rows(self, groups: Sequence[dict]) -> list[dict]:
        """This process's contiguous share of the round: each group repeated G times, split evenly in rank order
        (the order `gather` reassembles, so rewards line up with groups)."""
        rows = [dict(group) for group in groups for _ in range(self.num_generations)]
        local = process_share(rows, self.accelerator.num_processes, self.accelerator.process_index)
        if len(local) % self.args.steps_per_generation:
            raise RuntimeError(
                f"{len(local)} rows per process cannot be split into {self.args.steps_per_generation} micro-batches; "
                "please report this as a zppo_trl bug"
            )
        return local

    def _held_rows(self, output: dict, rows) -> dict[int, int]:
        """Global row of the round's plain pass -> this process's row in `output`, for the `rows` this process holds
        (each process holds a contiguous share, in rank order)."""
        L, p = output["completion_ids"].shape[0], self.accelerator.process_index
        return {row: row - p * L for row in rows if p * L <= row < (p + 1) * L}

    def _local_part(self, values: torch.Tensor, passes: list[torch.Tensor]) -> torch.Tensor:
        """This process's rows of per-rollout `values` laid out pass after pass (all processes' plain rows, then all
        hint rows), in the order of the joined output (its plain rows, then its hint rows)."""
        P, p, start, local = self.accelerator.num_processes, self.accelerator.process_index, 0, []
        for part in passes:
            local.append(process_share(values[start : start + len(part)], P, p))
            start += len(part)
        return torch.cat(local)

    def _correct_and_scored(self, rewards_per_func: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per rollout: is it correct, and could it be scored at all (the correctness reward was not None/NaN)."""
        values = rewards_per_func[:, self._correctness_index]
        scored = ~torch.isnan(values)
        return (values >= self.args.correct_threshold) & scored, scored

    def _total_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """Weighted sum over reward functions per rollout, as TRL sums them; NaN where no function could score."""
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable rows stay out of statistics
        return rewards

    def _rollout(self, groups: list[dict]) -> dict:
        """TRL's rollout pass on this process's share of `groups`; the completions table gets a `zppo_kind` column."""
        output = super()._generate_and_score_completions(self._local_rows(groups))
        self._logs["extra"]["zppo_kind"].extend(g["zppo_kind"] for g in groups for _ in range(self.num_generations))
        return output

    def _tokenize(self, text: str) -> list[int]:
        return self._tokenizer(text, add_special_tokens=False)["input_ids"]

    def _count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _chat_template_overhead(self) -> int:
        """Tokens the chat template adds around a one-message prompt (0 without a chat template)."""
        try:
            templated = self._tokenizer.apply_chat_template(
                [{"role": "user", "content": ""}], add_generation_prompt=True, tokenize=False
            )
        except (ValueError, AttributeError):
            return 0
        return self._count_tokens(templated)


def completions_table_logs(logs: dict, maxlen: int) -> dict:
    """TRL's completions-table buffers with room for `maxlen` rows, so replayed and hint rows do not push the new
    prompts' rows out (TRL sizes them for `generation_batch_size` rows)."""
    return {key: defaultdict(lambda: deque(maxlen=maxlen)) if isinstance(value, defaultdict) else deque(maxlen=maxlen)
            for key, value in logs.items()}  # fmt: skip


def replace_latest(log: deque, values: list) -> None:
    """Overwrite the newest `len(values)` entries of a completions-table column (TRL appended them this round)."""
    for _ in range(min(len(values), len(log))):
        log.pop()
    log.extend(values)
