"""`ZPPOTrainer`: TRL's GRPOTrainer with a hard-question replay buffer and BCQ/NCQ hint prompts.

The trainer is a thin seam over `trl.GRPOTrainer`. Each wrapped method calls `super()`; no TRL method body is
copied:

- `_generate_and_score_completions`: one generation round = TRL's pass over the new prompts plus the replayed
  ones (decided here, at generation time, from the latest buffer), the buffer update from those plain rollouts,
  then a second TRL pass over the hint prompts of the round's hardest questions; the two outputs are joined and,
  with `advantage_estimator="zppo"`, given the paper's advantages.
- `_generate` / `_calculate_rewards`: only remember the decoded completions and the gathered rewards.
- `_prepare_inputs`: after TRL splits a round into micro-batches, re-split it so hint rows (long prompts) do not
  pad plain rows, see `batching.regroup_micro_batches`.
- `_save_checkpoint` / `_load_optimizer_and_scheduler` / `train`: save and restore the buffer state.
- `log`: running totals are logged as their latest value, not averaged.

Every process holds the same buffer: it is updated only from gathered (identical) rewards, and every random choice
is drawn from `random.Random` seeded by `(args.seed, round)`; a teacher is called on the main process and its
answer broadcast.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import textwrap
import warnings
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset, IterableDataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from .advantages import group_has_variance, zppo_advantages
from .batching import (
    HINT_FLAG,
    INFORMATIVE_FLAG,
    accumulation_groups,
    concat_rollout_batches,
    drop_zero_variance_rows,
    informative_token_count,
    regroup_micro_batches,
)
from .buffer import STATE_FILE_NAME, BufferStateError, HardQuestionBuffer, read_state_file, write_state_file
from .config import ZPPOConfig
from .metrics import zero_variance_metrics
from .model_card import zppo_card_section
from .prompts import append_to_prompt, build_hint_prompt, completion_text
from .quantization import disable_cpu_inference_repacking
from .replay import (
    HardVisit,
    fit_to_unit,
    group_unit,
    plan_hints,
    rank_hard,
    ratio_count,
    replay_count,
    round_rng,
    sample_replay,
)
from .teachers import resolve_teacher, solutions_for

logger = logging.getLogger(__name__)

KINDS = ("plain", "replay", "bcq", "ncq")
# reward-function parameters TRL fills itself; any other required parameter must be a dataset column
_TRL_REWARD_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
                      "environments", "kwargs", "args", "prompt_id", "zppo_kind"}  # fmt: skip


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
        last_round (`dict`): the latest round's new and replayed prompt ids and its hint prompts as the student saw
            them (`{"kind", "prompt_id", "prompt"}`), identical on every process.

    The dataset must be a map-style `datasets.Dataset` with a `prompt` column; questions are identified by its
    `prompt_id` column (unique int or str) or, when it has none, by their row index (added as `prompt_id`). Every row
    a reward function sees carries the dataset columns plus `zppo_kind` in `("plain", "replay", "bcq", "ncq")`.
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
        train_dataset: Dataset | None = None,
        eval_dataset=None,
        processing_class=None,
        teacher=None,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = ZPPOConfig(f"{str(name).split('/')[-1] or 'model'}-ZPPO")
        elif not isinstance(args, ZPPOConfig):
            raise TypeError(
                f"`args` must be a ZPPOConfig, got {type(args).__name__}. Build it with ZPPOConfig(...) and the same "
                "arguments: every GRPOConfig field is accepted."
            )
        reward_list = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        if reward_funcs is None or not [f for f in reward_list if f is not None]:
            raise ValueError(
                "`reward_funcs` is empty: ZPPO needs at least one reward function to tell correct rollouts from wrong "
                "ones. Pass e.g. reward_funcs=zppo_trl.rewards.boxed_accuracy_reward."
            )
        if args.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns=True` would drop the `prompt_id` and answer columns ZPPO needs. Set "
                "remove_unused_columns=False (the GRPOConfig default)."
            )
        if args.use_vllm and importlib.util.find_spec("vllm") is None:
            raise ImportError(
                "`use_vllm=True` but vLLM is not installed (it needs a CUDA machine): pip install 'zppo-trl[vllm]', "
                "or set use_vllm=False. With vLLM, ZPPO's hint prompts go through the same vLLM path as plain ones."
            )
        train_dataset = _prepare_train_dataset(train_dataset, args, reward_list)
        eval_dataset = _with_prompt_ids(eval_dataset)
        self.teacher = resolve_teacher(teacher, args)

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
        self._correctness_index = _resolve_correctness(args.correctness_reward, self.reward_func_names)
        self.replay_buffer = HardQuestionBuffer(capacity=args.replay_capacity, hard_threshold=args.hard_threshold)
        self._row_index = {pid: i for i, pid in enumerate(self.train_dataset["prompt_id"])}
        self._zppo_round = 0  # generation rounds done; seeds every random choice, saved with the buffer
        self.last_round: dict = {}  # what the latest round fed the student (ids, hint prompts as seen), for logs
        self._teacher_warned = False
        self._micro_batch_hint_flags: torch.Tensor | None = None  # set by _compute_loss for one micro-batch
        G, num_new = self.num_generations, args.generation_batch_size // self.num_generations
        unit = group_unit(self.accelerator.num_processes, args.steps_per_generation, G)
        most_extra = replay_count(args.replay_ratio, num_new, args.replay_capacity, unit) + max(
            ratio_count(args.hint_ratio, num_new), unit
        )
        self._logs = _completions_table_logs(self._logs, args.generation_batch_size + most_extra * G)
        self._last_completions: list = []
        self._last_rewards_per_func: torch.Tensor | None = None
        _warn_if_checkpoints_split_rounds(args)
        _warn_if_advantage_options_ignored(args)

    # ----------------------------------------------------------------------------------------------------------------
    # stashes: remember what TRL computed, change nothing

    def _generate(self, prompts: list):
        result = super()._generate(prompts)
        self._last_completions = result[3]  # decoded completions of this process, in row order
        return result

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
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
        new_groups = gather_object(inputs)[::G]
        num_new = len(new_groups)
        replay_ids = sample_replay(
            self.replay_buffer.ids(),
            replay_count(args.replay_ratio, num_new, len(self.replay_buffer), unit),
            args.seed,
            self._zppo_round,
            exclude={row["prompt_id"] for row in new_groups},
        )
        replay_rows = [self._dataset_row(pid) for pid in replay_ids]
        plain_groups = [self._as_model_input(r, "plain") for r in new_groups]
        plain_groups += [self._as_model_input(r, "replay") for r in replay_rows]
        output = self._rollout(plain_groups)
        plain_rewards = self._last_rewards_per_func
        visits = self._visits(new_groups + replay_rows, plain_rewards)

        # 2. the buffer learns from plain rollouts only
        before = self.replay_buffer.counters()
        for v in visits:
            self.replay_buffer.visit(v.prompt_id, v.correct, v.scored, self._zppo_round)

        # 3. hint prompts for the round's hardest questions, rolled out as their own groups
        plan, teacher_failures = self._plan_hints(visits, num_new, unit)
        hint_rewards = None
        output[HINT_FLAG] = torch.zeros_like(output["advantages"], dtype=torch.bool)
        if plan:
            hint_groups = [row for _, row in plan]
            hint_output = self._hint_pass(hint_groups)
            hint_rewards = self._last_rewards_per_func
            hint_output[HINT_FLAG] = torch.ones_like(hint_output["advantages"], dtype=torch.bool)
            output = concat_rollout_batches(output, hint_output, self._tokenizer.pad_token_id)

        # 4. advantages over the whole round (plain and hint groups together); which groups teach anything
        round_rewards = [self._total_rewards(r) for r in (plain_rewards, hint_rewards) if r is not None]
        if args.advantage_estimator == "zppo":
            advantages = zppo_advantages(torch.cat(round_rewards), G)
            output["advantages"] = self._local_part(advantages, round_rewards)
            _replace_latest(self._logs["advantages"], advantages.tolist())  # the table shows what is trained on
        has_variance = [group_has_variance(r, G) for r in round_rewards]
        output[INFORMATIVE_FLAG] = self._local_part(
            torch.cat([flags.repeat_interleave(G) for flags in has_variance]), round_rewards
        )
        all_tokens, informative_tokens = (
            output["num_items_in_batch"],
            informative_token_count(output, self.accelerator.gather),
        )
        if args.exclude_zero_variance_groups:
            output["num_items_in_batch"] = informative_tokens

        after = self.replay_buffer.counters()
        counts = {key: after[key] - before[key] for key in after}  # admitted / graduated / evicted this round
        self._log_round(counts, len(replay_ids), plan, hint_rewards, teacher_failures)
        kinds = [row["zppo_kind"] for row in plain_groups] + [kind for kind, _ in plan]
        for key, value in zero_variance_metrics(kinds, torch.cat(has_variance).tolist()).items():
            self._metrics["train"][key].append(value)
        self._metrics["train"]["zppo/informative_token_share"].append(
            float(informative_tokens / all_tokens.clamp(min=1))
        )
        self._metrics["train"]["zppo/loss_normalizer_tokens"].append(float(output["num_items_in_batch"]))
        self.last_round = {
            "round": self._zppo_round,
            **counts,
            "buffer_size": len(self.replay_buffer),
            "teacher_failures": teacher_failures,
            "new": [row["prompt_id"] for row in new_groups],
            "replayed": replay_ids,
            "hints": [{"kind": kind, "prompt_id": row["prompt_id"], "prompt": row["prompt"]} for kind, row in plan],
        }
        self._zppo_round += 1
        return output

    def _as_model_input(self, row: dict, kind: str) -> dict:
        """A copy of a dataset row as the student sees it: the answer-format instruction appended, `zppo_kind` set."""
        row = dict(row)
        row["prompt"] = append_to_prompt(row["prompt"], self.args.answer_format_instruction)
        row["zppo_kind"] = kind
        return row

    def _dataset_row(self, prompt_id) -> dict:
        return dict(self.train_dataset[self._row_index[prompt_id]])

    def _local_rows(self, groups: Sequence[dict]) -> list[dict]:
        """This process's contiguous share of the round: each group repeated G times, split evenly in rank order
        (the order `gather` reassembles, so rewards line up with groups)."""
        rows = [dict(group) for group in groups for _ in range(self.num_generations)]
        P, p = self.accelerator.num_processes, self.accelerator.process_index
        per_process = len(rows) // P
        assert per_process * P == len(rows) and per_process % self.args.steps_per_generation == 0, (
            f"round of {len(rows)} rows cannot be split over {P} processes x {self.args.steps_per_generation} "
            "micro-batches; please report this as a zppo_trl bug"
        )
        return rows[p * per_process : (p + 1) * per_process]

    def _correct_and_scored(self, rewards_per_func: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per rollout: is it correct, and could it be scored at all (the correctness reward was not None/NaN)."""
        values = rewards_per_func[:, self._correctness_index]
        scored = ~torch.isnan(values)
        return (values >= self.args.correct_threshold) & scored, scored

    def _visits(self, rows: Sequence[dict], rewards_per_func: torch.Tensor) -> list[HardVisit]:
        G = self.num_generations
        correct, scored = (t.view(-1, G).cpu() for t in self._correct_and_scored(rewards_per_func))
        completions = gather_object(self._last_completions)
        visits = []
        for g, row in enumerate(rows):
            wrong = [completion_text(completions[g * G + i]) for i in range(G) if scored[g, i] and not correct[g, i]]
            visits.append(HardVisit(row["prompt_id"], g, int(correct[g].sum()), int(scored[g].sum()), row, wrong))
        return visits

    def _plan_hints(self, visits: list[HardVisit], num_new: int, unit: int) -> tuple[list[tuple[str, dict]], int]:
        """The round's hint prompts, identical on every process: `[(kind, model-input row), ...]`."""
        args = self.args
        slots = ratio_count(args.hint_ratio, num_new)
        if slots == 0 or not (args.use_bcq or args.use_ncq):
            return [], 0
        ranked = rank_hard(visits, args.hard_threshold)[:slots]  # each question takes at least one slot
        solutions, failures = [[] for _ in ranked], 0
        if args.use_bcq and ranked:
            solutions, failures = self._teacher_solutions([v.row for v in ranked])
        plan = plan_hints(ranked, [bool(s) for s in solutions], slots, args.use_bcq, args.use_ncq)
        by_id = {v.prompt_id: s for v, s in zip(ranked, solutions)}
        rows = []
        for kind, visit in plan:
            row = self._hint_row(kind, visit, by_id[visit.prompt_id])
            if row is not None:
                rows.append((kind, row))
        return fit_to_unit(rows, unit), failures

    def _teacher_solutions(self, rows: list[dict]) -> tuple[list[list[str]], int]:
        # one call on the main process, broadcast: a sampling or remote teacher cannot make ranks disagree
        box = [None]
        if self.accelerator.is_main_process:
            box = [solutions_for(self.teacher, rows)]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        solutions, failures, error = box[0]
        if error and not self._teacher_warned:
            warnings.warn(f"ZPPO teacher fault, the questions concerned get NCQ prompts only: {error}", stacklevel=2)
            self._teacher_warned = True
        return solutions, failures

    def _hint_row(self, kind: str, visit: HardVisit, solutions: list[str]) -> dict | None:
        """One BCQ or NCQ model-input row (built in `prompts.build_hint_prompt`), or None if the question leaves no
        room for candidates within `hint_prompt_max_tokens`."""
        args = self.args
        rng = round_rng(args.seed, self._zppo_round, kind, visit.prompt_id)
        prompt = build_hint_prompt(
            kind, visit.row["prompt"], visit.wrong_completions, rng,
            correct=rng.choice(solutions) if kind == "bcq" else None, instruction=args.answer_format_instruction,
            max_prompt_tokens=args.hint_prompt_max_tokens, max_candidate_tokens=args.candidate_max_tokens,
            count_tokens=self._count_tokens,
        )  # fmt: skip
        if prompt is None:
            return None
        return {**visit.row, "prompt": prompt, "zppo_kind": kind}  # the instruction is already in the prompt

    def _count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

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

    def _total_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """Weighted sum over reward functions per rollout, as TRL sums them; NaN where no function could score."""
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable rows stay out of statistics
        return rewards

    def _local_part(self, values: torch.Tensor, passes: list[torch.Tensor]) -> torch.Tensor:
        """This process's rows of per-rollout `values` laid out pass after pass (all processes' plain rows, then all
        hint rows), in the order of the joined output (its plain rows, then its hint rows)."""
        P, p, start, local = self.accelerator.num_processes, self.accelerator.process_index, 0, []
        for part in passes:
            per_process = len(part) // P
            local.append(values[start + p * per_process : start + (p + 1) * per_process])
            start += len(part)
        return torch.cat(local)

    # ----------------------------------------------------------------------------------------------------------------
    # micro-batches, logging, checkpoints

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
            if args.exclude_zero_variance_groups:  # rows with zero advantage leave per-micro-batch normalisers too
                self._buffered_inputs = [drop_zero_variance_rows(chunk) for chunk in self._buffered_inputs]
            inputs = self._buffered_inputs[self._step % args.steps_per_generation]
        return inputs

    def _compute_loss(self, model, inputs):
        self._micro_batch_hint_flags = inputs.get(HINT_FLAG)  # read by _get_per_token_logps_and_entropies
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._micro_batch_hint_flags = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        """Run plain rows and hint rows of a mixed micro-batch as two forward calls, each trimmed of the prompt
        padding it does not need (TRL_SEAMS §7: a 20-token plain prompt padded to a 300-token hint prompt costs
        15x). Results are identical up to float error: RoPE attention depends only on relative positions and the
        trimmed columns are masked padding. Every process splits the same way (each holds the same number of plain
        and hint rows per micro-batch), so sharded engines see the same number of forward calls on every rank."""
        flags = self._micro_batch_hint_flags
        multimodal = any(v is not None for v in kwargs.values() if not isinstance(v, bool)) or args
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

    def _log_round(self, counts, replayed, plan, hint_rewards, teacher_failures):
        metrics, buf = self._metrics["train"], self.replay_buffer
        for key, value in counts.items():
            metrics[f"zppo/{key}"].append(float(value))
        kinds = [kind for kind, _ in plan]
        metrics["zppo/replayed"].append(float(replayed))
        metrics["zppo/bcq_prompts"].append(float(kinds.count("bcq")))
        metrics["zppo/ncq_prompts"].append(float(kinds.count("ncq")))
        metrics["zppo/teacher_failures"].append(float(teacher_failures))
        for kind in ("bcq", "ncq"):
            metrics[f"zppo/{kind}_accuracy"].append(self._hint_accuracy(kinds, hint_rewards, kind))
        metrics["zppo/buffer_size"].append(float(len(buf)))
        for key, value in buf.counters().items():
            metrics[f"zppo/total_{key}"].append(float(value))
        for k in range(self.num_generations + 1):
            if k / self.num_generations < self.args.hard_threshold:
                metrics[f"zppo/total_admitted_bin_{k}"].append(float(buf.admitted_by_bin.get(k, 0)))
                metrics[f"zppo/total_graduated_bin_{k}"].append(float(buf.graduated_by_bin.get(k, 0)))

    def _hint_accuracy(self, kinds: list[str], hint_rewards, kind: str) -> float:
        if hint_rewards is None or kind not in kinds:
            return float("nan")  # TRL's log() skips NaN: no such prompts this round
        correct, scored = (t.view(-1, self.num_generations) for t in self._correct_and_scored(hint_rewards))
        rows = torch.tensor([k == kind for k in kinds], device=correct.device)
        n = scored[rows].sum()
        return float(correct[rows].sum() / n) if n > 0 else float("nan")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL averages each metric over the logging window; running totals and the buffer size are gauges, so keep
        # their latest value (per-round counts stay averaged: a mean per round over the window).
        for key, values in self._metrics["train"].items():
            if values and (key.startswith("zppo/total_") or key == "zppo/buffer_size"):
                del values[:-1]
        super().log(logs, start_time)

    def zppo_state(self) -> dict:
        return {"buffer": self.replay_buffer.state_dict(), "round": self._zppo_round,
                "global_step": self.state.global_step}  # fmt: skip

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            write_state_file(os.path.join(folder, STATE_FILE_NAME), self.zppo_state())

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_zppo_state(checkpoint)

    def load_zppo_state(self, checkpoint: str) -> None:
        """Restore the buffer and round counter from `checkpoint/zppo_buffer_state.json`; raise a `BufferStateError`
        that names the file and the fix (and change nothing) when it is missing, corrupted or does not match."""
        path = os.path.join(checkpoint, STATE_FILE_NAME)
        if not os.path.exists(path):
            raise BufferStateError(
                f"{path} is missing: the checkpoint was not written by ZPPOTrainer, or its write was interrupted "
                "(the buffer state is written last). Resume from an earlier checkpoint, or delete this one."
            )
        payload = read_state_file(path)
        step = os.path.basename(os.path.normpath(checkpoint)).removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if step.isdigit() and payload.get("global_step") != int(step):
            raise BufferStateError(
                f"{path} was saved at step {payload.get('global_step')} but sits in the checkpoint of step {step}. "
                "Resume from a checkpoint whose files belong together."
            )
        if not isinstance(payload.get("round"), int) or payload["round"] < 0:
            raise BufferStateError(f"{path} holds round={payload.get('round')!r}, expected a non-negative integer.")
        self.replay_buffer.load_state_dict(payload.get("buffer", {}))
        self._zppo_round = payload["round"]

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        # transformers' `resume_from_checkpoint=True` takes the newest checkpoint folder even when its write was
        # cut short; take the newest *complete* one (its ZPPO state, written last, is intact)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete ZPPO "
                                 "checkpoint. Train from scratch (resume_from_checkpoint=None).")  # fmt: skip
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        # the final buffer and logs, next to the final model (HF saves logs only in checkpoints)
        if self.args.should_save:
            write_state_file(os.path.join(self.args.output_dir, STATE_FILE_NAME), self.zppo_state())
            self.state.save_to_json(os.path.join(self.args.output_dir, "trainer_state.json"))
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        # PEFT's save_pretrained has just written its own README.md: write ours over it (with the figure)
        if self.args.should_save and (output_dir is None or output_dir == self.args.output_dir):
            self.create_model_card()

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """TRL's card (tags `zppo`, `trl`, `grpo`, base model, citation) plus the ZPPO section: config values that
        differ from the defaults, buffer statistics by entry bin and the buffer figure."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        output_dir = self.args.output_dir
        self.state.save_to_json(os.path.join(output_dir, "trainer_state.json"))
        figure = None
        if any("zppo/buffer_size" in h for h in self.state.log_history):
            from .plotting import FIGURE_NAME, plot_graduation

            plot_graduation(output_dir)
            figure = FIGURE_NAME
        base = get_config_model_id(self.model.config)
        section = zppo_card_section(
            self.replay_buffer, self.args, self.num_generations, base if base and not os.path.isdir(base) else None,
            dataset_name, figure,
        )  # fmt: skip
        with open(os.path.join(output_dir, "README.md"), "a") as f:
            f.write("\n" + section)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` whose ZPPO buffer state reads back intact (it is written
    last, so an intact state means the rest of the checkpoint was written before it). Partial ones are skipped with
    a warning and left in place: nothing is deleted."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(name.split("-")[-1]), name)
        for name in os.listdir(output_dir)
        if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.split("-")[-1].isdigit()
    )
    for _, name in reversed(steps):
        folder = os.path.join(output_dir, name)
        try:
            read_state_file(os.path.join(folder, STATE_FILE_NAME))
            return folder
        except (OSError, BufferStateError) as err:
            warnings.warn(f"skipping incomplete checkpoint {folder}: {err}", stacklevel=2)
    return None


# --------------------------------------------------------------------------------------------------------------------
# checks that run before any generation


def _prepare_train_dataset(dataset, args: ZPPOConfig, reward_funcs: list) -> Dataset:
    if dataset is None:
        raise ValueError("`train_dataset` is None: ZPPO trains on a datasets.Dataset with a `prompt` column.")
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Dataset):
        raise TypeError(
            f"`train_dataset` must be a map-style datasets.Dataset, got {type(dataset).__name__}: replay looks "
            "questions up by id. Convert it with Dataset.from_list(list(dataset)) or Dataset.from_generator(...)."
        )
    columns = dataset.column_names
    if "prompt" not in columns:
        raise ValueError(
            f"`train_dataset` has no `prompt` column (columns: {columns}). Rename the question column to `prompt`, "
            "e.g. dataset.rename_column('question', 'prompt')."
        )
    if "zppo_kind" in columns:
        raise ValueError("`train_dataset` has a `zppo_kind` column, which ZPPO sets itself. Rename or drop it.")
    if args.teacher_column is not None and args.teacher_column not in columns:
        raise ValueError(
            f"`teacher_column={args.teacher_column!r}` is not a column of train_dataset (columns: {columns}). "
            "Name the column holding reference solutions, or set teacher_column=None."
        )
    for func in reward_funcs:
        if callable(func) and not isinstance(func, torch.nn.Module):
            missing = [p for p in _required_params(func) if p not in columns and p not in _TRL_REWARD_KWARGS]
            if missing:
                raise ValueError(
                    f"reward function {getattr(func, '__name__', func)!r} needs dataset column(s) {missing}, which "
                    f"train_dataset lacks (columns: {columns}). Add the column(s) or rename them."
                )
    if "prompt_id" not in columns:
        return _with_prompt_ids(dataset)
    ids = dataset["prompt_id"]
    bad = next((x for x in ids if isinstance(x, bool) or not isinstance(x, (int, str))), None)
    if bad is not None:
        raise ValueError(
            f"`prompt_id` values must be int or str, got {type(bad).__name__} ({bad!r}). Use a unique int or "
            "string id per question, or drop the column to use row indices."
        )
    if len(set(ids)) != len(ids):
        seen, dupes = set(), []
        for x in ids:
            if x in seen and len(dupes) < 5:
                dupes.append(x)
            seen.add(x)
        raise ValueError(
            f"`prompt_id` has duplicates, e.g. {dupes}: each question needs a unique id (the buffer is keyed by "
            "it). Deduplicate the dataset or drop the column to use row indices."
        )
    return dataset


def _with_prompt_ids(dataset):
    """Add a `prompt_id` column (the row index) where it is missing, so every row has the same keys."""
    if isinstance(dataset, dict):
        return type(dataset)({name: _with_prompt_ids(d) for name, d in dataset.items()})
    if isinstance(dataset, Dataset) and "prompt_id" not in dataset.column_names:
        return dataset.add_column("prompt_id", list(range(len(dataset))))
    return dataset


def _required_params(func) -> list[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


def _resolve_correctness(choice: str | int | None, names: list[str]) -> int:
    if choice is None:
        return 0
    if isinstance(choice, int) or (isinstance(choice, str) and choice.isdigit()):
        index = int(choice)
        if 0 <= index < len(names):
            return index
    elif choice in names:
        return names.index(choice)
    raise ValueError(
        f"`correctness_reward={choice!r}` names no reward function; the reward functions are {names} (indices "
        f"0..{len(names) - 1}). Use one of those names or indices."
    )


def _warn_if_checkpoints_split_rounds(args: ZPPOConfig) -> None:
    """TRL does not checkpoint a round's buffered rollouts: a checkpoint taken mid-round resumes by generating a new
    round, so the resumed run differs from an uninterrupted one. Warn when `save_steps` allows that."""
    micro_steps = args.steps_per_generation * args.num_iterations  # micro-steps per round
    if args.save_strategy != "steps" or (isinstance(args.save_steps, float) and args.save_steps < 1):
        return
    ga = args.gradient_accumulation_steps
    if micro_steps % ga != 0 or int(args.save_steps) % (micro_steps // ga) != 0:
        warnings.warn(
            f"`save_steps={args.save_steps}` is not a multiple of the {micro_steps / ga:g} optimizer steps of one "
            "generation round (steps_per_generation * num_iterations / gradient_accumulation_steps): a resumed run "
            "will not repeat an uninterrupted one exactly. Align save_steps to rounds.",
            stacklevel=3,
        )


def _warn_if_advantage_options_ignored(args: ZPPOConfig) -> None:
    """`advantage_estimator="zppo"` computes the paper's advantages itself: TRL's scaling options do not apply."""
    ignored = {"scale_rewards": (args.scale_rewards, "group"),
               "multi_objective_aggregation": (args.multi_objective_aggregation, "sum_then_normalize")}  # fmt: skip
    changed = [f"{name}={value!r}" for name, (value, default) in ignored.items() if value != default]
    if args.advantage_estimator == "zppo" and changed:
        warnings.warn(
            f"{', '.join(changed)} is ignored with advantage_estimator='zppo' (the paper's Norm w/o Zero, which "
            "sums the weighted rewards and normalises over non-trivial groups). Set advantage_estimator='grpo' to "
            "use TRL's estimator with these options, or leave them at their defaults.",
            stacklevel=3,
        )


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
