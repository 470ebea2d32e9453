"""`ZPPOTrainer`: TRL's GRPOTrainer with a hard-question replay buffer and BCQ/NCQ hint prompts.

The trainer is a thin seam over `trl.GRPOTrainer`. Each wrapped method calls `super()` (except `create_model_card`,
which writes the whole card: TRL's template cannot load an adapter); no TRL method body is copied.
Private TRL hooks wrapped (their signatures are pinned by tests/test_trainer.py):

- `_generate_and_score_completions`: one generation round = TRL's pass over the new prompts plus the replayed ones
  (decided here, at generation time, from the latest buffer), the buffer update from those plain rollouts, then a
  second TRL pass over the hint prompts of the round's hardest questions; the two outputs are joined and, with
  `advantage_estimator="zppo"`, given the paper's advantages.
- `_calculate_rewards`: only remembers the gathered rewards and this process's completions.
- `_prepare_inputs`: after TRL splits a round into micro-batches, moves rows between the micro-batches of one
  optimizer step so that hint rows (long prompts) do not pad plain rows, see `batching.regroup_micro_batches`.
- `_get_per_token_logps_and_entropies`: runs the plain and hint rows of a mixed micro-batch as two trimmed forwards.

Public methods wrapped: `compute_loss` (hands the micro-batch's hint flags to the split forward), `log` (running
totals are gauges), `save_model` (ZPPO's state into checkpoints, the adapter's base id, the model card), `train`
(restores ZPPO's state on resume), `create_model_card`.

Every process holds the same buffer: it is updated only from gathered (identical) rewards, and every random choice
is drawn from `random.Random` seeded by `(args.seed, round)`; a teacher is called on the main process and its
answer broadcast. The pure pieces live in their own modules: `buffer.py`, `replay.py` (which questions are replayed),
`hints.py` (which get hint prompts), `prompts.py` (the BCQ/NCQ text), `teachers.py`, `advantages.py`, `batching.py`,
`metrics.py`, `checkpoint.py`, `validation.py`.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import warnings
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import get_config_model_id

from .advantages import group_has_variance, zppo_advantages
from .baselines import (
    build_answer_hint_prompt,
    build_prefix_prompt,
    full_completion,
    grpo_advantages,
    plan_injections,
    replace_completions,
    solution_prefix,
    teacher_completion_ids,
)
from .batching import (
    HINT_FLAG,
    INFORMATIVE_FLAG,
    PER_MICRO_BATCH_LOSSES,
    accumulation_groups,
    concat_rollout_batches,
    drop_zero_variance_rows,
    informative_token_count,
    process_share,
    regroup_micro_batches,
)
from .buffer import HardQuestionBuffer
from .checkpoint import STATE_FILE_NAME, checkpoint_step, last_complete_checkpoint, read_checkpoint_state
from .checkpoint import write_state_file as write_state_file
from .config import ZPPOConfig
from .experience import (
    ExperienceBuffer,
    Trajectory,
    delayed_start,
    lowest_entropy,
    sample_experience,
    shaped_surrogate,
)
from .hints import HardVisit, fit_to_unit, plan_hints, rank_hard, round_visits
from .metrics import round_metrics, zero_variance_metrics
from .model_card import zppo_card_section
from .prompts import append_to_prompt, build_hint_prompt, completion_text
from .quantization import disable_cpu_inference_repacking
from .replay import group_unit, question_id, ratio_count, replay_count, round_rng, sample_replay
from .retrospective import RetrospectiveBuffer, continuation_success_vs_plain, harvest_state, select_states
from .rewards import answer_extractor
from .teachers import resolve_teacher, solutions_for, use_answer_extractor
from .validation import (
    check_trainer_arguments,
    check_vllm_lengths,
    default_args,
    resolve_correctness,
    warn_if_advantage_options_ignored,
    warn_if_checkpoints_split_rounds,
)

# keyword arguments of GRPOTrainer._get_per_token_logps_and_entropies that carry per-row image inputs
_MULTIMODAL_FORWARD_KWARGS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                              "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")  # fmt: skip


# ExGRPO: per-row flag of a replayed stored success, and its stored (generating) per-token log-probs, in the rollout
# output next to TRL's tensors; `compute_loss` hands them to the forward, which turns the row's log-probs into the
# shaped surrogate (see `experience.shaped_surrogate`)
EXPERIENCE_FLAG = "zppo_experience"
EXPERIENCE_LOGPS = "zppo_experience_logps"

# on Prefix rows until the rewards are computed: [prefix text, chat dataset?]; taken off before TRL's rewards see the row
PREFIX_KEY = "zppo_prefix"


class ZPPOTrainer(GRPOTrainer):
    """Trainer for ZPPO, "Zone of Proximal Policy Optimization: Teacher in Prompts, Not Gradients" (arXiv 2606.18216).

    Takes everything `trl.GRPOTrainer` takes, with a [`ZPPOConfig`], plus:

    Args:
        teacher (`Callable[[list[dict]], list[list[str]]]`, *optional*):
            Called with the dataset rows of a round's hardest questions; returns per row a list of correct solutions
            (strings) for BCQ prompts. Defaults to the `teacher_column` of the config; with neither, only NCQ
            prompts are built. A teacher that fails for a question leaves that question NCQ only.

    Attributes:
        replay_buffer (`HardQuestionBuffer`): the hard questions, identical on every process.
        last_round (`dict`): the latest round's new and replayed question ids and its hint prompts as the student saw
            them (`{"kind", "prompt_id", "prompt"}`), identical on every process.

    The training set is a `datasets.Dataset` or a streaming `IterableDataset` with a `prompt` column; the user's
    datasets are never modified (TRL's sampler and the rows it hands to `training_step` are TRL's own). A question is
    identified by its `prompt_id` column or, when there is none, by a hash of its `prompt` and `answer`
    (`replay.question_id`); the buffer keeps each buffered question's row (at most `replay_capacity` rows, saved in
    checkpoints), so replay never indexes the dataset. Every row a reward function sees carries the dataset columns
    plus `prompt_id` and `zppo_kind` in `("plain", "replay", "bcq", "ncq")`, or a baseline's kind (`"hint"`,
    `"prefix"`, `"teacher_response"`, see `hint_type`).
    """

    _tag_names = ["trl", "grpo", "zppo"]
    _name = "ZPPO"
    _paper = {
        "title": "Zone of Proximal Policy Optimization: Teacher in Prompts, Not Gradients",
        "id": "2606.18216",
        "citation": textwrap.dedent("""\
            @article{lee2026zppo,
                title        = {{Zone of Proximal Policy Optimization: Teacher in Prompts, Not Gradients}},
                author       = {Lee, B.-K. and others},
                year         = 2026,
                eprint       = {arXiv:2606.18216},
            }"""),
    }

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: ZPPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        teacher=None,
        **kwargs,
    ):
        args = default_args(model) if args is None else args
        check_trainer_arguments(args, reward_funcs, train_dataset)
        self.teacher = resolve_teacher(teacher, args)
        if args.hint_type != "bcq_ncq" and self.teacher is None:
            raise ValueError(
                f"`hint_type={args.hint_type!r}` needs a teacher's correct solutions: set teacher_column (reference "
                "solutions), teacher_model, or pass teacher= to the trainer."
            )
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )

        disable_cpu_inference_repacking(self.model)  # QLoRA on CPU: see quantization.py
        check_vllm_lengths(args, self._chat_template_overhead())
        self._correctness_index = resolve_correctness(args.correctness_reward, self.reward_func_names)
        # one extractor: NCQ's wrong answers and a sampled teacher's answers are read as the correctness reward reads
        self._extract_answer = answer_extractor(self.reward_funcs[self._correctness_index])
        use_answer_extractor(self.teacher, self._extract_answer)
        self.replay_buffer = HardQuestionBuffer(capacity=args.replay_capacity, hard_threshold=args.hard_threshold)
        self._replay_rows: dict = {}  # question id -> dataset row, for exactly the buffered questions
        self._zppo_round = 0  # generation rounds done; seeds every random choice, saved with the buffer
        self.last_round: dict = {}  # what the latest round fed the student (ids, hint prompts as seen), for logs
        self._teacher_warned = False
        self._unbuilt_hints = 0  # planned hint prompts of the latest round that could not be built
        self._micro_batch_hint_flags: torch.Tensor | None = None  # set by compute_loss for one micro-batch
        self.experience_buffer = ExperienceBuffer(capacity=args.experience_capacity)  # ExGRPO (experience_ratio > 0)
        self._experience_on = (
            False  # ExGRPO's delayed start, latched once a round's plain pass@1 exceeds the threshold
        )
        self._micro_batch_experience: tuple | None = None  # (flags, stored log-probs) of one micro-batch
        # Retrospective Replay (retrospective_ratio > 0): one state per hard question, and those questions' rows
        self.retrospective_buffer = RetrospectiveBuffer(
            capacity=args.retrospective_capacity, hard_threshold=args.hard_threshold, min_tries=self.num_generations
        )
        self._retrospective_rows: dict = {}
        self._state_replays = (0, 0)  # the latest round's state continuations: (correct, scored)
        G, num_new = self.num_generations, args.generation_batch_size // self.num_generations
        unit = group_unit(self.accelerator.num_processes, args.steps_per_generation, G)
        most_extra = (
            replay_count(args.replay_ratio, num_new, args.replay_capacity, unit)
            + max(ratio_count(args.hint_ratio, num_new), unit)
            + max(ratio_count(args.experience_ratio, num_new), unit)
            + max(ratio_count(args.retrospective_ratio, num_new), unit)
        )
        self._logs = _completions_table_logs(self._logs, args.generation_batch_size + most_extra * G)
        self._last_completions: list = []
        self._last_rewards_per_func: torch.Tensor | None = None
        warn_if_checkpoints_split_rounds(args)
        warn_if_advantage_options_ignored(args)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if inputs and PREFIX_KEY in inputs[0]:  # Prefix baseline: rewards read prefix + continuation
            prefixes = [row.pop(PREFIX_KEY) for row in inputs]
            completions = [full_completion(c, *prefix) for c, prefix in zip(completions, prefixes, strict=True)]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_completions = completions  # this process's decoded completions, in row order
        self._last_rewards_per_func = rewards  # gathered: (all processes' rows, n_funcs), identical on every rank
        return rewards

    # ----------------------------------------------------------------------------------------------------------------
    # one generation round

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:  # evaluation: same prompt format, no buffer, no hints
            return super()._generate_and_score_completions([self._as_model_input(r, "plain") for r in inputs])

        G, args = self.num_generations, self.args
        unit = group_unit(self.accelerator.num_processes, args.steps_per_generation, G)

        # 1. plain groups = new prompts (TRL's sampler, global order) + replays drawn now from the latest buffer
        new_rows = gather_object(inputs)[::G]
        new_ids = [question_id(row) for row in new_rows]
        replay_ids = sample_replay(
            self.replay_buffer.ids(),
            replay_count(args.replay_ratio, len(new_rows), len(self.replay_buffer), unit),
            args.seed,
            self._zppo_round,
            exclude=set(new_ids),
        )
        # ExGRPO: stored questions, drawn from accuracy buckets; never one the round already rolls out
        experience_ids = self._draw_experience(len(new_rows), unit, exclude={*new_ids, *replay_ids})
        rows = new_rows + [self._replay_rows[pid] for pid in replay_ids]
        rows += [self.experience_buffer.row(pid) for pid in experience_ids]
        kinds = ["plain"] * len(new_rows) + ["replay"] * len(replay_ids) + ["experience"] * len(experience_ids)
        plain_groups = [self._as_model_input(r, kind) for r, kind in zip(rows, kinds)]
        output = self._rollout(plain_groups)
        plain_rewards = self._last_rewards_per_func
        correct, scored = (t.view(-1, G).cpu() for t in self._correct_and_scored(plain_rewards))
        completions = gather_object(self._last_completions)
        all_visits = round_visits(rows, new_ids + replay_ids + experience_ids, correct, scored, completions)
        visits = all_visits[: len(new_rows) + len(replay_ids)]  # ZPPO's: new and replayed questions
        # ExGRPO's successes, read before any row is replaced (stored after this round's replay: a group never
        # replays one of its own fresh samples)
        harvest = self._harvest_experience(output, all_visits, correct, scored, len(new_rows))

        # 2. the buffer learns from plain rollouts only; it keeps the rows of exactly the questions it holds
        before = self.replay_buffer.counters()
        for v in visits:
            self.replay_buffer.visit(v.prompt_id, v.correct, v.scored, self._zppo_round)
        row_of = {**self._replay_rows, **{v.prompt_id: v.row for v in visits}}
        self._replay_rows = {pid: row_of[pid] for pid in self.replay_buffer.ids()}

        # 3. hint prompts for the round's hardest questions, rolled out as their own groups; or (GRPO† + teacher
        # response) teacher responses injected into their plain groups, after the buffer saw the groups as sampled
        injected, self._unbuilt_hints = 0, 0
        if args.hint_type == "teacher_response":
            plan = []
            plain_rewards, injected, teacher_failures = self._inject_teacher_responses(
                output, plain_groups, visits, scored & ~correct, plain_rewards, len(new_rows)
            )
        else:
            plan, teacher_failures = self._plan_hints(visits, len(new_rows), unit)
        # Retrospective Replay: stored states continued as groups of their own, chosen before this round's states are
        # harvested, so a state is always one found in an earlier round. They get a rollout pass of their own: a
        # state row is a rendered text prompt (it ends inside the assistant turn), and TRL tokenizes a pass either
        # as chat or as text
        states = self._plan_states(len(new_rows), unit, exclude={row["prompt_id"] for _, row in plan})
        if args.retrospective_ratio > 0:
            self._harvest_states(visits, correct, scored, completions)
        experience_rows: list[tuple[int, Trajectory]] = []
        if experience_ids:  # ExGRPO: the last rollout of each experience group becomes a stored success
            plain_rewards, experience_rows = self._replay_experience(
                output, plain_groups, len(visits), experience_ids, plain_rewards
            )
        for visit, marks, found in harvest:
            self.experience_buffer.update(visit.prompt_id, visit.row, marks, found, self._zppo_round)
        extra_rewards = []  # gathered rewards per extra pass: hint groups, then state groups
        output[HINT_FLAG] = torch.zeros_like(output["advantages"], dtype=torch.bool)
        for groups in (plan, states):
            if groups:
                hint_output = self._hint_pass([row for _, row in groups])
                extra_rewards.append(self._last_rewards_per_func)
                hint_output[HINT_FLAG] = torch.ones_like(hint_output["advantages"], dtype=torch.bool)
                output = concat_rollout_batches(output, hint_output, self._tokenizer.pad_token_id)
        if states:
            self._record_state_replays(states, extra_rewards[-1])
        plan += states
        if args.experience_ratio > 0:
            output.update(experience_columns(output["completion_ids"], experience_rows))

        # 4. advantages over the whole round (plain and hint groups together); which groups teach anything
        round_rewards = [self._total_rewards(r) for r in (plain_rewards, *extra_rewards)]
        if args.advantage_estimator == "zppo":
            advantages = zppo_advantages(torch.cat(round_rewards), G)
            output["advantages"] = self._local_part(advantages, round_rewards)
            _replace_latest(self._logs["advantages"], advantages.tolist())  # the table shows what is trained on
        elif injected or experience_rows:  # TRL's advantages predate the replaced rows: its formula on the new rewards
            advantages = grpo_advantages(round_rewards[0], G, self.scale_rewards)
            output["advantages"] = self._local_part(advantages, round_rewards)
            _replace_latest(self._logs["advantages"], advantages.tolist())
        has_variance = [group_has_variance(r, G) for r in round_rewards]
        output[INFORMATIVE_FLAG] = self._local_part(
            torch.cat([flags.repeat_interleave(G) for flags in has_variance]), round_rewards
        )
        all_tokens = output["num_items_in_batch"]
        informative_tokens = informative_token_count(output, self.accelerator.gather)
        if args.exclude_zero_variance_groups:
            output["num_items_in_batch"] = informative_tokens

        # 5. metrics and the round's record
        after = self.replay_buffer.counters()
        counts = {key: after[key] - before[key] for key in after}  # admitted / graduated / evicted this round
        hint_kinds = [kind for kind, _ in plan]
        hint_correct = hint_scored = None
        if extra_rewards:
            hint_correct, hint_scored = (
                t.view(-1, G).cpu() for t in self._correct_and_scored(torch.cat(extra_rewards))
            )
        metrics = {
            **round_metrics(self.replay_buffer, counts, len(replay_ids), hint_kinds, hint_correct, hint_scored, G),
            **zero_variance_metrics(kinds + hint_kinds, torch.cat(has_variance).tolist()),
            "zppo/teacher_failures": float(teacher_failures),
            "zppo/hints_not_built": float(self._unbuilt_hints),
            **({"zppo/injected_responses": float(injected)} if args.hint_type == "teacher_response" else {}),
            **(self._experience_metrics(len(experience_ids)) if args.experience_ratio > 0 else {}),
            **(self._retrospective_metrics() if args.retrospective_ratio > 0 else {}),
            "zppo/informative_token_share": float(informative_tokens / all_tokens.clamp(min=1)),
            "zppo/loss_normalizer_tokens": float(output["num_items_in_batch"]),
        }
        for key, value in metrics.items():
            self._metrics["train"][key].append(value)
        self.last_round = {
            "round": self._zppo_round,
            **counts,
            "buffer_size": len(self.replay_buffer),
            "teacher_failures": teacher_failures,
            "new": new_ids,
            "replayed": replay_ids,
            "experience": experience_ids,
            "hints": [{"kind": kind, "prompt_id": row["prompt_id"], "prompt": row["prompt"]} for kind, row in plan],
        }
        self._zppo_round += 1
        return output

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

    def _plan_hints(self, visits: list[HardVisit], num_new: int, unit: int) -> tuple[list[tuple[str, dict]], int]:
        """The round's hint prompts, identical on every process: `[(kind, model-input row), ...]`."""
        args = self.args
        slots = ratio_count(args.hint_ratio, num_new)
        if slots == 0 or not (args.use_bcq or args.use_ncq):
            return [], 0
        ranked = rank_hard(visits, args.hard_threshold)[:slots]  # each question takes at least one slot
        solutions, failures = [[] for _ in ranked], 0
        if (args.use_bcq or args.hint_type != "bcq_ncq") and ranked:
            solutions, failures = self._teacher_solutions([v.row for v in ranked])
        if args.hint_type == "bcq_ncq":
            plan = plan_hints(ranked, [bool(s) for s in solutions], slots, args.use_bcq, args.use_ncq)
        else:  # the paper's baselines: one group per hard question with a teacher solution
            plan = [(args.hint_type, v) for v, s in zip(ranked, solutions) if s][:slots]
        by_id = {v.prompt_id: s for v, s in zip(ranked, solutions)}
        plan = self._compress_wrong_candidates(plan)
        rows = [(kind, self._hint_row(kind, visit, by_id[visit.prompt_id])) for kind, visit in plan]
        self._unbuilt_hints = sum(row is None for _, row in rows)
        return fit_to_unit([(kind, row) for kind, row in rows if row is not None], unit), failures

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
        L, p = output["completion_ids"].shape[0], self.accelerator.process_index
        local = [(row - p * L, c) for row, c in plan if p * L <= row < (p + 1) * L]
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

    # ----------------------------------------------------------------------------------------------------------------
    # ExGRPO experience replay (the method's pure pieces: experience.py)

    def _draw_experience(self, num_new: int, unit: int, exclude: set) -> list:
        """The round's experience questions, identical on every process: `experience_ratio * N` drawn by accuracy
        bucket once the delayed start is on, cut to a multiple of `unit` (or repeated up to one unit)."""
        count = ratio_count(self.args.experience_ratio, num_new)
        if count == 0 or not self._experience_on:
            return []
        rng = round_rng(self.args.seed, self._zppo_round, "experience")
        return fit_to_unit(sample_experience(self.experience_buffer, count, rng, exclude=exclude), unit)

    def _harvest_experience(self, output: dict, visits: list[HardVisit], correct, scored, num_new: int) -> list:
        """With ExGRPO on: latch the delayed start on the new prompts' plain pass@1, then (once on, as ExGRPO's code)
        the round's visits for the experience buffer, `[(visit, correct marks, trajectories)]`: a correct rollout of a
        partially solved question comes with its token ids and generating log-probs (TRL's old log-probs when it kept
        them, else one no-grad forward over those rows)."""
        args, G = self.args, self.num_generations
        if args.experience_ratio <= 0:
            return []
        new_scored = int(scored[:num_new].sum())
        if new_scored and delayed_start(float(correct[:num_new].sum()) / new_scored, args.experience_start_accuracy):
            self._experience_on = True
        if not self._experience_on:
            return []
        k, n = correct.sum(dim=1), scored.sum(dim=1)
        wanted = [
            g * G + i for g in range(len(visits)) if 0 < k[g] < n[g] for i in correct[g].nonzero().view(-1).tolist()
        ]
        trajectories: dict[int, Trajectory] = {}
        if wanted:
            L, p = output["completion_ids"].shape[0], self.accelerator.process_index
            rows = [row - p * L for row in wanted if p * L <= row < (p + 1) * L]
            logps = output.get("old_per_token_logps")
            logps = self._student_logps(output, rows or [0]) if logps is None else logps[rows]
            lengths = output["completion_mask"][rows].sum(dim=1).tolist()
            mine = [(p * L + row, output["completion_ids"][row, :n_tok].tolist(), lp[:n_tok].tolist())
                    for row, n_tok, lp in zip(rows, map(int, lengths), logps) if n_tok > 0]  # fmt: skip
            trajectories = {row: Trajectory(ids, lps, self._zppo_round) for row, ids, lps in gather_object(mine)}
        harvest = []
        for g, visit in enumerate(visits):
            marks = [bool(c) if s else None for c, s in zip(correct[g].tolist(), scored[g].tolist())]
            if 0 < k[g] < n[g] and any(c and g * G + i not in trajectories for i, c in enumerate(marks)):
                continue  # a correct rollout with no loss tokens (truncated and masked): nothing to replay
            harvest.append((visit, marks, [trajectories.get(g * G + i) for i in range(G)]))
        return harvest

    def _replay_experience(
        self, output: dict, plain_groups: list[dict], first: int, pids: list, rewards_per_func
    ) -> tuple[torch.Tensor, list[tuple[int, Trajectory]]]:
        """ExGRPO's mixed groups: in experience group `first + j` (question `pids[j]`), the last of its G fresh
        rollouts is replaced by the question's stored success with the lowest mean entropy under the current policy
        (each group's candidates are scored by the process that holds that row, then gathered, so every process
        chooses the same). Returns the rescored rewards and this process's `(local row, trajectory)` pairs.

        Ours: TRL rolls out G per group, so the group is G fresh rollouts of which one is replaced (one rollout more
        than ExGRPO's G-1 fresh + 1 replayed)."""
        G = self.num_generations
        L, p = output["completion_ids"].shape[0], self.accelerator.process_index
        targets = [((first + j) * G + G - 1, pid) for j, pid in enumerate(pids)]
        candidates = [(row, i, t.completion_ids) for row, pid in targets if p * L <= row < (p + 1) * L
                      for i, t in enumerate(self.experience_buffer.trajectories(pid))]  # fmt: skip
        entropies = self._mean_entropies(output, [(row - p * L, ids) for row, _, ids in candidates])
        scored = gather_object([(row, i, h) for (row, i, _), h in zip(candidates, entropies)])
        chosen = {}
        for row, pid in targets:
            stored = self.experience_buffer.trajectories(pid)
            by_index = {i: h for r, i, h in scored if r == row}
            chosen[row] = stored[lowest_entropy(stored, [by_index[i] for i in range(len(stored))])]
        plan = [(row, chosen[row].completion_ids) for row, _ in targets]
        rewards_per_func, rows = self._replace_rows(output, plain_groups, plan, "experience", rewards_per_func)
        mine = [(row, chosen[row + p * L]) for row in rows]
        old = output.get("old_per_token_logps")
        if old is not None and mine:
            # TRL kept old log-probs (several updates per round): the replayed row's "old" value is the surrogate at
            # generation time, so its ratio is 1 on the first update and PPO-clipped around it after
            stored = experience_columns(old, mine)[EXPERIENCE_LOGPS][rows]
            old[rows] = shaped_surrogate(old[rows], stored, self.args.experience_beta).to(old.dtype)
        return rewards_per_func, mine

    def _mean_entropies(self, output: dict, items: list[tuple[int, list[int]]]) -> list[float]:
        """Mean token entropy under the current policy of each `(local row, completion ids)`: the row's prompt
        followed by the ids. One no-grad forward on every process (on row 0's own prompt when it has no item)."""
        probe = items or [(0, [int(output["completion_ids"][0, 0])])]
        width = max(len(ids) for _, ids in probe)
        completion = output["completion_ids"].new_full((len(probe), width), self._tokenizer.pad_token_id)
        mask = torch.zeros_like(completion)
        for i, (_, ids) in enumerate(probe):
            completion[i, : len(ids)] = torch.tensor(ids, dtype=completion.dtype)
            mask[i, : len(ids)] = 1
        rows = [row for row, _ in probe]
        input_ids = torch.cat([output["prompt_ids"][rows], completion], dim=1)
        attention_mask = torch.cat([output["prompt_mask"][rows], mask], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            _, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                input_ids,
                attention_mask,
                width,
                self.args.per_device_train_batch_size,
                compute_entropy=True,
            )
        means = (entropies * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return means.tolist() if items else []

    def _experience_metrics(self, replayed: int) -> dict[str, float]:
        counters = self.experience_buffer.counters()
        return {
            "zppo/experience/on": float(self._experience_on),
            "zppo/experience/replayed": float(replayed),
            "zppo/experience/buffer_size": float(len(self.experience_buffer)),
            "zppo/experience/total_stored_trajectories": float(counters["stored_trajectories"]),
            "zppo/experience/total_retired": float(counters["retired"]),
        }

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

    def _compress_wrong_candidates(self, plan: list[tuple[str, HardVisit]]) -> list[tuple[str, HardVisit]]:
        """With a compressing teacher (`teacher_compress`), the student's wrong rollouts are rewritten by the same
        teacher prompt as its own kept solutions, so that a candidate's style says nothing about which is correct
        (paper App. D.1). One call on the main process, broadcast; on a fault the rollouts stay as they are."""
        if not getattr(self.teacher, "compress", False) or not hasattr(self.teacher, "compress_texts"):
            return plan
        visits = list({id(v): v for kind, v in plan if kind in ("bcq", "ncq")}.values())
        texts = [text for v in visits for text in v.wrong_completions]
        box = [None]
        if self.accelerator.is_main_process and texts:
            try:
                box = [self.teacher.compress_texts(texts)]
            except Exception as err:  # a teacher fault degrades to uncompressed candidates, never stops the run
                warnings.warn(f"ZPPO teacher could not compress the wrong candidates, using them as sampled: {err}",
                              stacklevel=2)  # fmt: skip
        if self.accelerator.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        if box[0] is None or len(box[0]) != len(texts):
            return plan
        compressed, start = {}, 0
        for v in visits:
            n = len(v.wrong_completions)
            compressed[id(v)] = dataclasses.replace(v, wrong_completions=list(box[0][start : start + n]))
            start += n
        return [(kind, compressed.get(id(v), v)) for kind, v in plan]

    def _teacher_solutions(self, rows: list[dict]) -> tuple[list[list[str]], int]:
        # one call on the main process, broadcast: a sampling or remote teacher cannot make ranks disagree
        box = [None]
        if self.accelerator.is_main_process:
            box = [solutions_for(self.teacher, rows)]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        solutions, failures, error, acceptance_rate = box[0]
        if acceptance_rate is not None:  # a sampling teacher: its samples kept / drawn, this round
            self._metrics["train"]["zppo/teacher_acceptance_rate"].append(acceptance_rate)
        if error and not self._teacher_warned:
            warnings.warn(f"ZPPO teacher fault, the questions concerned get NCQ prompts only: {error}", stacklevel=2)
            self._teacher_warned = True
        return solutions, failures

    def _hint_row(self, kind: str, visit: HardVisit, solutions: list[str]) -> dict | None:
        """One hint model-input row: BCQ or NCQ (built in `prompts.build_hint_prompt`), or a baseline's (built in
        `baselines.py`); None when it cannot be built (no room for candidates within `hint_prompt_max_tokens`, or
        no sentence of the solution is free of the answer)."""
        args = self.args
        rng = round_rng(args.seed, self._zppo_round, kind, visit.prompt_id)
        if kind in ("hint", "prefix"):
            return self._baseline_row(kind, visit, rng.choice(solutions))
        prompt = build_hint_prompt(
            kind, visit.row["prompt"], visit.wrong_completions, rng,
            correct=rng.choice(solutions) if kind == "bcq" else None, instruction=args.answer_format_instruction,
            max_prompt_tokens=args.hint_prompt_max_tokens, max_candidate_tokens=args.candidate_max_tokens,
            count_tokens=self._count_tokens, extract_answer=self._extract_answer,
        )  # fmt: skip
        if prompt is None:
            return None
        # the instruction is already in the prompt
        return {**visit.row, "prompt_id": visit.prompt_id, "prompt": prompt, "zppo_kind": kind}

    def _baseline_row(self, kind: str, visit: HardVisit, solution: str) -> dict | None:
        row, instruction = visit.row, self.args.answer_format_instruction
        extra = {"prompt_id": visit.prompt_id, "zppo_kind": kind}
        if kind == "hint":
            prompt = build_answer_hint_prompt(row["prompt"], solution, str(row.get("answer", "")), instruction)
            return None if prompt is None else {**row, **extra, "prompt": prompt}
        prefix = solution_prefix(solution, self.args.prefix_fraction, self._tokenize, self._tokenizer.decode)
        return self._prefix_row(row, visit.prompt_id, kind, prefix)

    def _prefix_row(self, row: dict, prompt_id, kind: str, prefix: str) -> dict:
        """A row whose answer starts with `prefix` (the Prefix baseline's teacher prefix, a Retrospective Replay
        state): the student continues it, the prefix is prompt (no loss), the rewards read prefix + continuation."""
        render = lambda messages: self._tokenizer.apply_chat_template(
            messages, continue_final_message=True, tokenize=False, **self.chat_template_kwargs
        )
        prompt = build_prefix_prompt(row["prompt"], prefix, self.args.answer_format_instruction, render)
        extra = {"prompt_id": prompt_id, "zppo_kind": kind, PREFIX_KEY: [prefix, not isinstance(row["prompt"], str)]}
        return {**row, **extra, "prompt": prompt}

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

    def _rollout(self, groups: list[dict]) -> dict:
        """TRL's rollout pass on this process's share of `groups`; the completions table gets a `zppo_kind` column."""
        output = super()._generate_and_score_completions(self._local_rows(groups))
        self._logs["extra"]["zppo_kind"].extend(g["zppo_kind"] for g in groups for _ in range(self.num_generations))
        return output

    def _hint_pass(self, hint_groups: list[dict]) -> dict:
        """TRL's rollout on the hint rows. Its metrics move to `zppo/hint/*`, so `reward`, `completions/*` keep
        describing plain rollouts (the completions table marks every row with its `zppo_kind`)."""
        metrics = self._metrics["train"]
        sizes = {k: len(v) for k, v in metrics.items()}
        hint_output = self._rollout(hint_groups)
        for key in list(metrics):
            if key.startswith("zppo/"):
                continue
            new = metrics[key][sizes.get(key, 0) :]
            if new and key != "num_tokens":
                del metrics[key][sizes.get(key, 0) :]
                metrics[f"zppo/hint/{key}"].extend(new)
        return hint_output

    # ----------------------------------------------------------------------------------------------------------------
    # Retrospective Replay (the method's pure pieces: retrospective.py)

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

    # ----------------------------------------------------------------------------------------------------------------
    # micro-batches and the loss

    def _prepare_inputs(self, generation_batch):
        # a new round is recognised by TRL replacing its buffered micro-batches, not by re-deriving TRL's condition
        buffered = self._buffered_inputs
        inputs = super()._prepare_inputs(generation_batch)
        if self.model.training and self._buffered_inputs is not buffered:
            args = self.args
            groups = accumulation_groups(
                self._step, args.steps_per_generation, self.num_iterations, args.gradient_accumulation_steps
            )
            self._buffered_inputs = regroup_micro_batches(self._buffered_inputs, groups)
            if args.exclude_zero_variance_groups and self.loss_type in PER_MICRO_BATCH_LOSSES:
                # zero-advantage rows leave per-micro-batch normalisers too (token-level losses: num_items_in_batch)
                self._buffered_inputs = [drop_zero_variance_rows(chunk) for chunk in self._buffered_inputs]
            inputs = self._buffered_inputs[self._step % args.steps_per_generation]
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # TRL's loss calls `_get_per_token_logps_and_entropies` without the batch; it needs the hint flags (TRL offers
        # no way to pass a per-row field through), so they ride on the trainer for exactly this call
        self._micro_batch_hint_flags = inputs.get(HINT_FLAG)
        if inputs.get(EXPERIENCE_FLAG) is not None and bool(inputs[EXPERIENCE_FLAG].any()):
            self._micro_batch_experience = (inputs[EXPERIENCE_FLAG], inputs[EXPERIENCE_LOGPS])
        self._micro_batch_weights = torch.zeros(3)  # ExGRPO's importance weights: sum, count, max
        try:
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._micro_batch_hint_flags = self._micro_batch_experience = None
        if self.args.experience_ratio > 0:  # every process, every micro-batch: a collective, as TRL's clip ratios
            total, count, most = (
                self.accelerator.gather(self._micro_batch_weights.to(self.accelerator.device)).view(-1, 3).T
            )
            if count.sum() > 0:
                self._metrics["train"]["zppo/experience/importance_weight_mean"].append(
                    (total.sum() / count.sum()).item()
                )
                self._metrics["train"]["zppo/experience/importance_weight_max"].append(most.max().item())
        return loss

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        """TRL's per-token log-probs, through `_split_forward`; in `compute_loss`, ExGRPO's replayed rows get the
        shaped surrogate instead (`experience.shaped_surrogate`: TRL's ratio is then exactly 1 and the loss's
        gradient that of -A·f(w)), and their importance weights are logged."""
        logps, entropies, aux = self._split_forward(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        if self._micro_batch_experience is not None and self._micro_batch_experience[0].shape[0] == logps.shape[0]:
            flags, stored = self._micro_batch_experience
            rows = flags.nonzero().view(-1)
            stored = stored[rows, : logps.shape[1]].to(logps.device)
            mask = attention_mask[rows, -logps.shape[1] :].bool()
            weights = torch.exp(logps[rows].detach() - stored)[mask]
            if weights.numel():
                self._micro_batch_weights = torch.stack(
                    [weights.sum(), weights.new_tensor(weights.numel()), weights.max()]
                )
            logps = logps.clone()
            logps[rows] = shaped_surrogate(logps[rows], stored, self.args.experience_beta).to(logps.dtype)
        return logps, entropies, aux

    def _split_forward(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        """Run plain rows and hint rows of a mixed micro-batch as two forward calls, each trimmed of the prompt
        padding it does not need (TRL_SEAMS §7: a 20-token plain prompt padded to a 300-token hint prompt costs
        15x). Results are identical up to float error: RoPE attention depends only on relative positions and the
        trimmed columns are masked padding. Every process splits the same way (each holds the same number of plain
        and hint rows per micro-batch), so sharded engines see the same number of forward calls on every rank."""
        flags = self._micro_batch_hint_flags
        # split only text micro-batches that hold both kinds; any image input (hint prompts are text-only, so this is
        # an evaluation or a user's own call) or a positional argument goes to TRL's forward unchanged
        multimodal = args or any(kwargs.get(name) is not None for name in _MULTIMODAL_FORWARD_KWARGS)
        if flags is None or multimodal or flags.shape[0] != input_ids.shape[0] or flags.all() or not flags.any():
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
            )
        prompt_width = input_ids.shape[1] - logits_to_keep
        outputs, order = [], []
        for rows in (torch.nonzero(~flags).squeeze(1), torch.nonzero(flags).squeeze(1)):
            used = attention_mask[rows, :prompt_width].any(dim=0).nonzero()
            start = int(used[0]) if used.numel() else 0
            outputs.append(super()._get_per_token_logps_and_entropies(
                model, input_ids[rows, start:], attention_mask[rows, start:], logits_to_keep, **kwargs
            ))  # fmt: skip
            order.append(rows)
        inverse = torch.argsort(torch.cat(order))
        logps = torch.cat([o[0] for o in outputs])[inverse]
        entropies = None if outputs[0][1] is None else torch.cat([o[1] for o in outputs])[inverse]
        aux = None if outputs[0][2] is None else sum(o[2] * len(r) for o, r in zip(outputs, order)) / len(flags)
        return logps, entropies, aux

    # ----------------------------------------------------------------------------------------------------------------
    # logging, state, checkpoints

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL averages each metric over the logging window; running totals, rates and the buffer size are gauges, so
        # keep their latest value (per-round counts stay averaged: a mean per round over the window).
        for key, values in self._metrics["train"].items():
            if values and ("/total_" in key or key.endswith(("buffer_size", "exit_rate", "experience/on"))):
                del values[:-1]
        super().log(logs, start_time)

    def zppo_state(self) -> dict:
        """Everything ZPPO needs to resume: the buffer, the rows of the buffered questions, the round counter, and
        ExGRPO's experience buffer and delayed-start latch."""
        return {"buffer": self.replay_buffer.state_dict(), "rows": [[pid, row] for pid, row in self._replay_rows.items()],
                "round": self._zppo_round, "global_step": self.state.global_step,
                "experience": self.experience_buffer.state_dict(), "experience_on": self._experience_on,
                "retrospective": self.retrospective_buffer.state_dict(),
                "retrospective_rows": [[pid, row] for pid, row in self._retrospective_rows.items()]}  # fmt: skip

    def load_zppo_state(self, checkpoint: str) -> None:
        """Restore the buffer, its rows and the round counter from `checkpoint/zppo_buffer_state.json`; raise a
        `BufferStateError` that names the file and the fix (and change nothing) when it is missing, corrupted or does
        not belong to the checkpoint."""
        payload = read_checkpoint_state(checkpoint)
        buffer = HardQuestionBuffer(capacity=self.args.replay_capacity, hard_threshold=self.args.hard_threshold)
        buffer.load_state_dict(payload.get("buffer", {}))
        rows = {pid: row for pid, row in payload.get("rows", [])}
        missing = [pid for pid in buffer.ids() if pid not in rows]
        if missing:
            from .buffer import BufferStateError

            raise BufferStateError(
                f"{os.path.join(checkpoint, STATE_FILE_NAME)} lacks the rows of buffered question(s) {missing[:5]}: "
                "it was written by an older zppo_trl. Resume with that version, or from a fresh run."
            )
        experience = ExperienceBuffer(capacity=self.args.experience_capacity)
        if "experience" in payload:  # absent in states written before ExGRPO was added: an empty buffer
            experience.load_state_dict(payload["experience"])
        states = RetrospectiveBuffer(self.args.retrospective_capacity, self.args.hard_threshold, self.num_generations)
        if "retrospective" in payload:  # absent in states written before Retrospective Replay was added
            states.load_state_dict(payload["retrospective"])
        self.replay_buffer, self._replay_rows, self._zppo_round = buffer, rows, payload["round"]
        self.experience_buffer, self._experience_on = experience, bool(payload.get("experience_on", False))
        self.retrospective_buffer = states
        self._retrospective_rows = {pid: row for pid, row in payload.get("retrospective_rows", [])}

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        # transformers' `resume_from_checkpoint=True` takes the newest checkpoint folder even when its write was
        # cut short; take the newest *complete* one (see checkpoint.py)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete ZPPO "
                                 "checkpoint. Train from scratch (resume_from_checkpoint=None).")  # fmt: skip
        if resume_from_checkpoint:
            self.load_zppo_state(resume_from_checkpoint)  # before any generation: a bad state raises here
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        # the final buffer and logs, next to the final model (HF saves logs only in checkpoints)
        if self.args.should_save:
            write_state_file(os.path.join(self.args.output_dir, STATE_FILE_NAME), self.zppo_state())
            self.state.save_to_json(os.path.join(self.args.output_dir, "trainer_state.json"))
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        from .model_card import record_base_model

        super().save_model(output_dir, _internal_call)
        if self.args.should_save and _internal_call and output_dir and checkpoint_step(output_dir) is not None:
            # a checkpoint: ZPPO's state goes in now, before transformers starts a Hub upload of the folder
            write_state_file(os.path.join(output_dir, STATE_FILE_NAME), self.zppo_state())
        if self.args.should_save:  # adapter_config.json names the base's Hub id, not the local folder it came from
            pushing = self.args.push_to_hub or (_internal_call and output_dir is None)  # how push_to_hub saves
            record_base_model(self, output_dir or self.args.output_dir, pushing=pushing)
        # PEFT's save_pretrained has just written its own README.md: write ours over it (with the figure)
        if self.args.should_save and (output_dir is None or output_dir == self.args.output_dir):
            self.create_model_card()

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """The model card, written whole by `model_card.trainer_model_card` instead of TRL's template (whose
        quick-start cannot load an adapter): front matter with the base model's Hub id, a PEFT quick-start on a
        training question, TRL's tags, versions and citations, and the ZPPO section (config values that differ from
        the defaults, buffer statistics by entry bin, the buffer figure). `dataset_name` names the data in it;
        `plot=True` redraws the figure even during training."""
        if not self.is_world_process_zero():
            return
        from .model_card import trainer_model_card
        from .models import base_model_id
        from .plotting import FIGURE_NAME, plot_graduation

        output_dir = self.args.output_dir
        # TRL re-creates the card at every checkpoint: the figure (and the logs it is drawn from) is redrawn only when
        # the card is made outside training (the final save_model, or a user's call), or when asked with plot=True
        if kwargs.get("plot", not self.is_in_train) and any("zppo/buffer_size" in h for h in self.state.log_history):
            self.state.save_to_json(os.path.join(output_dir, "trainer_state.json"))
            plot_graduation(output_dir)
        figure = FIGURE_NAME if os.path.exists(os.path.join(output_dir, FIGURE_NAME)) else None
        base = base_model_id(get_config_model_id(self.model.config), self.args.base_model_id)
        section = zppo_card_section(self.replay_buffer, self.args, self.num_generations, base, dataset_name, figure)
        card = trainer_model_card(self, section, model_name=model_name, dataset_name=dataset_name, tags=tags)
        card.save(os.path.join(output_dir, "README.md"))


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


def _completions_table_logs(logs: dict, maxlen: int) -> dict:
    """TRL's completions-table buffers with room for `maxlen` rows, so replayed and hint rows do not push the new
    prompts' rows out (TRL sizes them for `generation_batch_size` rows)."""
    return {key: defaultdict(lambda: deque(maxlen=maxlen)) if isinstance(value, defaultdict) else deque(maxlen=maxlen)
            for key, value in logs.items()}  # fmt: skip


def _replace_latest(log: deque, values: list) -> None:
    """Overwrite the newest `len(values)` entries of a completions-table column (TRL appended them this round)."""
    for _ in range(min(len(values), len(log))):
        log.pop()
    log.extend(values)
