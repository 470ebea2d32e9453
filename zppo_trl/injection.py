"""ZPPOTrainer's completion injection: completions the student did not sample put into its plain groups, rescored by
the reward functions (GRPO† + teacher response, see `baselines.py`; ExGRPO's replayed successes use `_replace_rows`
too)."""

from __future__ import annotations

import torch
from trl.models.utils import disable_gradient_checkpointing

from .baselines import plan_injections, replace_completions, teacher_completion_ids
from .hints import HardVisit, rank_hard
from .replay import ratio_count, round_rng


class InjectionMixin:
    """Injection methods of `ZPPOTrainer`. `_replace_rows` scores with `GRPOTrainer._calculate_rewards` (reached by
    `super()`: no class between this mixin and `GRPOTrainer` in `ZPPOTrainer`'s MRO defines it), not with the
    trainer's own override, which would overwrite the round's remembered rewards and completions."""

    def _inject_teacher_responses(
        self, output: dict, plain_groups: list[dict], visits: list[HardVisit], wrong, rewards_per_func, num_new: int
    ) -> tuple[torch.Tensor, int, int]:
        """GRPO† + teacher response (see `baselines.py`; off-policy by design): in at most `hint_ratio * N` hard
        plain groups, hardest first, one wrong rollout becomes a correct teacher response. Edits this process's
        `output` in place; returns the round's gathered rewards per function with the injected rows rescored, the
        number injected and the teacher failures. Every process decides the same rows and runs the same collectives.

        The reward functions score the injected completion as they score a rollout (row `zppo_kind`
        `"teacher_response"`), then the correctness reward's score is set to 1: the teacher's solution is trusted, as
        a BCQ candidate is. The other functions keep their own score of it (a format reward judges the teacher's
        format). Its old-policy log-probs (when TRL keeps them) and vLLM sampling log-probs are the student's own
        now; TRL's per-round metrics (lengths, rewards, `frac_reward_zero_std`) describe the sampled rollouts."""
        args, tokenizer = self.args, self._tokenizer
        ranked = rank_hard(visits, args.hard_threshold)[: ratio_count(args.hint_ratio, num_new)]
        if not ranked:
            return rewards_per_func, 0, 0
        solutions, failures = self._teacher_solutions([v.row for v in ranked])
        rng = lambda visit: round_rng(args.seed, self._zppo_round, "teacher_response", visit.prompt_id)
        plan = plan_injections(ranked, solutions, wrong, lambda visit, sols: rng(visit).choice(sols))
        if not plan:
            return rewards_per_func, 0, failures
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else self.eos_token_ids[0]
        tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = [teacher_completion_ids(sol, tokenize, eos, args.max_completion_length) for _, sol in plan]
        plan = [(row, c) for (row, _), c in zip(plan, ids)]
        rewards_per_func, _ = self._replace_rows(output, plain_groups, plan, "teacher_response", rewards_per_func)
        rewards_per_func[[row for row, _ in plan], self._correctness_index] = 1.0
        return rewards_per_func, len(plan), failures

    def _replace_rows(
        self, output: dict, plain_groups: list[dict], plan: list[tuple[int, list[int]]], kind: str, rewards_per_func
    ) -> tuple[torch.Tensor, list[int]]:
        """Put completions the student did not sample into its plain groups (GRPO† + teacher response; ExGRPO's
        replayed successes): `plan` = `[(global row, completion ids)]`, identical on every process. Edits this
        process's `output` in place (completions, masks, the vLLM ratio via `baselines.replace_completions`; old and
        sampling log-probs, when TRL keeps them, set to the student's own now, so the ratio starts at 1; the global
        token count) and returns the round's gathered rewards per function with the rows rescored by the reward
        functions (as row `zppo_kind=kind`), and this process's local indices of the replaced rows. Every process
        runs the same collectives."""
        G, tokenizer = self.num_generations, self._tokenizer
        held = self._held_rows(output, [row for row, _ in plan])
        local = [(held[row], c) for row, c in plan if row in held]
        rows = [row for row, _ in local]
        loss_tokens = lambda b: (b["completion_mask"] * (1 if b.get("tool_mask") is None else b["tool_mask"])).sum()
        before = loss_tokens(output)
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else self.eos_token_ids[0]
        stop_ids = {*self.eos_token_ids, eos, tokenizer.pad_token_id}
        output.update(replace_completions(output, rows, [c for _, c in local], tokenizer.pad_token_id, stop_ids,
                                          self.mask_truncated_completions))  # fmt: skip
        if output.get("old_per_token_logps") is not None:
            # one forward on every process (a sharded model gathers its weights in it), on a row of its own if it
            # holds no replaced one
            logps = self._student_logps(output, rows or [0])
            for key in ("old_per_token_logps", "sampling_per_token_logps"):
                if output.get(key) is not None and rows:
                    output[key][rows] = logps.to(output[key].dtype)
        # a global token count: every process adds the change on all of them
        changed = self.accelerator.gather(loss_tokens(output) - before).sum()
        output["num_items_in_batch"] = output["num_items_in_batch"] + changed

        # the reward functions see the new completion; every process scores all of them, rank 0's copy is kept
        inputs = [{**plain_groups[row // G], "zppo_kind": kind} for row, _ in plan]
        texts = tokenizer.batch_decode([c for _, c in plan], skip_special_tokens=True)
        completions = [t if isinstance(r["prompt"], str) else [{"role": "assistant", "content": t}]
                       for t, r in zip(texts, inputs)]  # fmt: skip
        ids = [c for _, c in plan]
        scores = super()._calculate_rewards(inputs, [r["prompt"] for r in inputs], completions, ids)[: len(plan)]
        rewards_per_func = rewards_per_func.clone()
        rewards_per_func[[row for row, _ in plan]] = scores
        return rewards_per_func, rows

    def _student_logps(self, batch: dict, rows: list[int]) -> torch.Tensor:
        """The student's per-token log-probs of `rows`' completions now, without gradient (as TRL computes
        `old_per_token_logps`)."""
        ids = torch.cat([batch["prompt_ids"][rows], batch["completion_ids"][rows]], dim=1)
        mask = torch.cat([batch["prompt_mask"][rows], batch["completion_mask"][rows]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, mask, batch["completion_ids"].shape[1], self.args.per_device_train_batch_size
            )
        return logps
