"""`ZPPOTrainer`: TRL's GRPOTrainer with a hard-question replay buffer and BCQ/NCQ hint prompts.

The trainer is a thin seam over `trl.GRPOTrainer`. Each wrapped method calls `super()` (except `create_model_card`,
which writes the whole card: TRL's template cannot load an adapter); no TRL method body is copied.
Private TRL hooks wrapped (their signatures are pinned by tests/test_trainer.py):

- `_generate_and_score_completions` (here): one generation round = TRL's pass over the new prompts plus the replayed
  ones (decided here, at generation time, from the latest buffer), the buffer update from those plain rollouts, then
  a second TRL pass over the hint prompts of the round's hardest questions; the two outputs are joined and, with
  `advantage_estimator="zppo"`, given the paper's advantages.
- `_calculate_rewards` (here): only remembers the gathered rewards and this process's completions.
- `_prepare_inputs` (`micro_batches.py`): after TRL splits a round into micro-batches, moves rows between the
  micro-batches of one optimizer step so that hint rows (long prompts) do not pad plain rows.
- `_get_per_token_logps_and_entropies` (`micro_batches.py`): runs the plain and hint rows of a mixed micro-batch as
  two trimmed forwards.

Public methods wrapped: `compute_loss` (`micro_batches.py`: hands the micro-batch's hint flags to the split forward),
`log` (running totals are gauges), `save_model` (ZPPO's state into checkpoints, the adapter's base id, the model
card), `train` (restores ZPPO's state on resume), `create_model_card`.

The round's steps are methods of mixins, one module each, none with an `__init__` (the trainer's sets their
attributes): `hint_groups.py`, `injection.py` (GRPO† + teacher response), `experience_replay.py` (ExGRPO),
`retrospective_replay.py`, `round_rows.py`, `micro_batches.py`, `zppo_state.py`. They come before `GRPOTrainer` in
the MRO and none wraps a hook another wraps, so a `super()` call in a mixin reaches TRL's method.

Every process holds the same buffer: it is updated only from gathered (identical) rewards, and every random choice
is drawn from `random.Random` seeded by `(args.seed, round)`; a teacher is called on the main process and its
answer broadcast. The pure pieces live in their own modules: `buffer.py`, `replay.py` (which questions are replayed),
`hints.py` (which get hint prompts), `prompts.py` (the BCQ/NCQ text), `teachers.py`, `advantages.py`, `batching.py`,
`metrics.py`, `checkpoint.py`, `validation.py`, `experience.py`, `retrospective.py`.
"""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from .advantages import group_has_variance, zppo_advantages
from .baselines import full_completion, grpo_advantages
from .batching import HINT_FLAG, INFORMATIVE_FLAG, concat_rollout_batches, informative_token_count
from .buffer import HardQuestionBuffer
from .checkpoint import STATE_FILE_NAME, checkpoint_rows, checkpoint_step, last_complete_checkpoint
from .checkpoint import write_state_file as write_state_file
from .config import ZPPOConfig
from .experience import ExperienceBuffer, Trajectory
from .experience_replay import EXPERIENCE_FLAG as EXPERIENCE_FLAG
from .experience_replay import EXPERIENCE_LOGPS as EXPERIENCE_LOGPS
from .experience_replay import ExperienceReplayMixin, experience_columns
from .hint_groups import PREFIX_KEY, HintGroupsMixin
from .hints import merge_visits, round_visits
from .injection import InjectionMixin
from .metrics import round_metrics, zero_variance_metrics
from .micro_batches import _MULTIMODAL_FORWARD_KWARGS as _MULTIMODAL_FORWARD_KWARGS
from .micro_batches import MicroBatchesMixin
from .model_card import zppo_card_section
from .quantization import disable_cpu_inference_repacking
from .replay import group_unit, question_id, ratio_count, replay_count, sample_replay
from .retrospective import RetrospectiveBuffer
from .retrospective_replay import RetrospectiveReplayMixin
from .rewards import answer_extractor
from .round_rows import RoundRowsMixin, completions_table_logs, replace_latest
from .teachers import resolve_teacher, use_answer_extractor
from .validation import (
    check_trainer_arguments,
    check_vllm_lengths,
    default_args,
    resolve_correctness,
    warn_if_advantage_options_ignored,
    warn_if_checkpoints_split_rounds,
    warn_if_not_paper_recipe,
)
from .zppo_state import ZPPOStateMixin


class ZPPOTrainer(
    HintGroupsMixin,
    InjectionMixin,
    ExperienceReplayMixin,
    RetrospectiveReplayMixin,
    RoundRowsMixin,
    ZPPOStateMixin,
    MicroBatchesMixin,
    GRPOTrainer,
):
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
        self._unbuilt_hints: Counter = Counter()  # planned hint prompts of the latest round not built, per reason
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
        self._logs = completions_table_logs(self._logs, args.generation_batch_size + most_extra * G)
        self._last_completions: list = []
        self._last_rewards_per_func: torch.Tensor | None = None
        self._nonfinite_rewards = 0  # rollouts of the latest round with a +-inf reward, scored as unscorable
        warn_if_checkpoints_split_rounds(args)
        warn_if_advantage_options_ignored(args)
        warn_if_not_paper_recipe(args)
        self._checkpoint_rows = checkpoint_rows(args)  # whether checkpoints keep the buffered questions' rows

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if inputs and PREFIX_KEY in inputs[0]:  # Prefix baseline: rewards read prefix + continuation
            prefixes = [row.pop(PREFIX_KEY) for row in inputs]
            completions = [full_completion(c, *prefix) for c, prefix in zip(completions, prefixes, strict=True)]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # a +-inf reward would make every advantage of the round NaN, hence 0: it counts as unscorable (NaN) instead,
        # which leaves only that rollout out (TRL's rule for None), and is counted
        infinite = torch.isinf(rewards)
        if infinite.any():
            rewards = torch.where(infinite, torch.full_like(rewards, torch.nan), rewards)
            self._nonfinite_rewards += int(infinite.any(dim=1).sum())
        self._last_completions = completions  # this process's decoded completions, in row order
        self._last_rewards_per_func = rewards  # gathered: (all processes' rows, n_funcs), identical on every rank
        return rewards

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:  # evaluation: same prompt format, no buffer, no hints
            return super()._generate_and_score_completions([self._as_model_input(r, "plain") for r in inputs])

        G, args = self.num_generations, self.args
        unit = group_unit(self.accelerator.num_processes, args.steps_per_generation, G)
        self._nonfinite_rewards = 0

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

        # 2. the buffer learns from plain rollouts only, one visit per question (copies of a question merged); it
        # keeps the rows of exactly the questions it holds
        questions = merge_visits(visits)
        before, held = self.replay_buffer.counters(), self.replay_buffer.ids()  # FIFO order: the same on every rank
        outcome = {v.prompt_id: self.replay_buffer.visit(v.prompt_id, v.correct, v.scored, self._zppo_round)
                   for v in questions}  # fmt: skip
        row_of = {**self._replay_rows, **{v.prompt_id: v.row for v in questions}}
        self._replay_rows = {pid: row_of[pid] for pid in self.replay_buffer.ids()}

        # 3. hint prompts for the round's hardest questions, rolled out as their own groups; or (GRPO† + teacher
        # response) teacher responses injected into their plain groups, after the buffer saw the groups as sampled
        injected, self._unbuilt_hints = 0, Counter()
        if args.hint_type == "teacher_response":
            plan = []
            plain_rewards, injected, teacher_failures = self._inject_teacher_responses(
                output, plain_groups, visits, scored & ~correct, plain_rewards, len(new_rows)
            )
        else:
            plan, teacher_failures = self._plan_hints(questions, len(new_rows), unit)
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
            replace_latest(self._logs["advantages"], advantages.tolist())  # the table shows what is trained on
        elif injected or experience_rows:  # TRL's advantages predate the replaced rows: its formula on the new rewards
            advantages = grpo_advantages(round_rewards[0], G, self.scale_rewards)
            output["advantages"] = self._local_part(advantages, round_rewards)
            replace_latest(self._logs["advantages"], advantages.tolist())
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
            "zppo/nonfinite_rewards": float(self._nonfinite_rewards),
            "zppo/hints_not_built": float(sum(self._unbuilt_hints.values())),
            **{f"zppo/hints_not_built/{reason}": float(n) for reason, n in self._unbuilt_hints.items()},
            **({"zppo/injected_responses": float(injected)} if args.hint_type == "teacher_response" else {}),
            **(self._experience_metrics(len(experience_ids)) if args.experience_ratio > 0 else {}),
            **(self._retrospective_metrics() if args.retrospective_ratio > 0 else {}),
            "zppo/informative_token_share": float(informative_tokens / all_tokens.clamp(min=1)),
            "zppo/loss_normalizer_tokens": float(output["num_items_in_batch"]),
        }
        for key, value in metrics.items():
            self._metrics["train"][key].append(value)
        gathered = self.accelerator.gather  # a collective: every process calls it
        loss_rows = output["completion_mask"].sum(dim=1)
        tokens = torch.stack([loss_rows[~output[HINT_FLAG]].sum(), loss_rows[output[HINT_FLAG]].sum(),
                              output["prompt_mask"].sum()]).to(self.accelerator.device)  # fmt: skip
        plain_tokens, hint_tokens, prompt_tokens = gathered(tokens).view(-1, 3).sum(dim=0).tolist()
        self.last_round = {
            "round": self._zppo_round,
            **counts,
            "admitted_ids": [pid for pid, what in outcome.items() if what == "admitted"],
            "graduated_ids": [pid for pid, what in outcome.items() if what == "graduated"],
            "evicted_ids": [pid for pid in held if pid not in self.replay_buffer and outcome.get(pid) != "graduated"],
            # what this round generated, over all processes: completions, their tokens (plain and hint rows) and the
            # prompt tokens of every row (a round's processed tokens = prompt + completion tokens)
            "completions": len(round_rewards[0]) + sum(len(r) for r in round_rewards[1:]),
            "tokens": {
                "plain_completion": int(plain_tokens),
                "hint_completion": int(hint_tokens),
                "prompt": int(prompt_tokens),
            },  # fmt: skip
            "buffer_size": len(self.replay_buffer),
            "teacher_failures": teacher_failures,
            "new": new_ids,
            "replayed": replay_ids,
            "experience": experience_ids,
            "hints": [{"kind": kind, "prompt_id": row["prompt_id"], "prompt": row["prompt"]} for kind, row in plan],
        }
        self._zppo_round += 1
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL averages each metric over the logging window; running totals, rates and the buffer size are gauges, so
        # keep their latest value (per-round counts stay averaged: a mean per round over the window).
        for key, values in self._metrics["train"].items():
            if values and ("/total_" in key or key.endswith(("buffer_size", "exit_rate", "experience/on"))):
                del values[:-1]
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        # transformers' `resume_from_checkpoint=True` takes the newest checkpoint folder even when its write was
        # cut short; take the newest *complete* one (see checkpoint.py), chosen by the main process and broadcast, so
        # every process resumes from the same folder even if they see the output folder differently
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.strip().lower() in ("true", "last"):
            resume_from_checkpoint = True  # the CLI's spelling
        if resume_from_checkpoint is True:
            box = [last_complete_checkpoint(self.args.output_dir) if self.accelerator.is_main_process else None]
            if self.accelerator.num_processes > 1:
                broadcast_object_list(box, from_process=0)
            resume_from_checkpoint = box[0]
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete ZPPO "
                                 "checkpoint. Train from scratch (resume_from_checkpoint=None).")  # fmt: skip
        if resume_from_checkpoint:
            self.load_zppo_state(resume_from_checkpoint)  # before any generation: a bad state raises here
            self._check_processes_agree_on_state(resume_from_checkpoint)
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        # the final buffer and logs, next to the final model (HF saves logs only in checkpoints)
        if self.args.should_save:
            self._write_output_state()
        return output

    def _write_output_state(self) -> None:
        """The output folder's state file (what a Hub push uploads, see `hub_rows_policy`) and trainer_state.json."""
        write_state_file(
            os.path.join(self.args.output_dir, STATE_FILE_NAME),
            self.zppo_state(include_rows=self.args.push_dataset_rows),
        )
        self.state.save_to_json(os.path.join(self.args.output_dir, "trainer_state.json"))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        from .model_card import record_base_model

        super().save_model(output_dir, _internal_call)
        checkpoint = _internal_call and output_dir and checkpoint_step(output_dir) is not None
        if self.args.should_save and checkpoint:
            # a checkpoint: ZPPO's state goes in now, before transformers starts a Hub upload of the folder; its rows
            # only when the folder is not uploaded, or the user opted in (`checkpoint_rows`)
            write_state_file(
                os.path.join(output_dir, STATE_FILE_NAME), self.zppo_state(include_rows=self._checkpoint_rows)
            )
        if self.args.should_save and self.args.push_to_hub and (checkpoint or output_dir is None):
            # transformers uploads the output folder right after this save: its state file must be current
            self._write_output_state()
        if self.args.should_save:  # adapter_config.json names the base's Hub id, not the local folder it came from
            pushing = self.args.push_to_hub or (_internal_call and output_dir is None)  # how push_to_hub saves
            record_base_model(self, output_dir or self.args.output_dir, pushing=pushing)
        # PEFT's save_pretrained has just written its own README.md: write ours over it (with the figure)
        if self.args.should_save and (output_dir is None or output_dir == self.args.output_dir):
            self.create_model_card()

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """The model card, written whole by `model_card.trainer_model_card` instead of TRL's template (whose
        quick-start cannot load an adapter): front matter with the base model's Hub id, a PEFT quick-start on a
        neutral question (`example_prompt=` to show your own; a training question could be private), TRL's tags,
        versions and citations, and the ZPPO section (config values that differ from the defaults, buffer statistics
        by entry bin, the buffer figure). `dataset_name` names the data in it; `plot=True` redraws the figure even
        during training."""
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
        card = trainer_model_card(self, section, model_name=model_name, dataset_name=dataset_name, tags=tags,
                                  prompt=kwargs.get("example_prompt"))  # fmt: skip
        card.save(os.path.join(output_dir, "README.md"))
