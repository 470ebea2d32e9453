"""`ZPPOTrainer`: TRL's GRPOTrainer with a hard-question replay buffer and BCQ/NCQ hint prompts.

A thin seam over `trl.GRPOTrainer`: every wrapped method calls `super()` and no TRL method body is copied. One class
stands between the two (`round/loss.py`'s `LossSeamMixin`: the micro-batch and loss hooks TRL forces). Private TRL
hooks wrapped here (their signatures are pinned by tests/round/test_trainer.py):

- `_generate_and_score_completions`: one generation round, `round/run.py`'s `run_round`, which reads TRL and the
  model only through `round/rollout.py`'s `TRLSeams`;
- `_calculate_rewards`: hands the pass's rewards and completions to the seams (a +-inf reward becomes unscorable).

Public methods wrapped: `log` (running totals are gauges), `train` (restores ZPPO's state on resume), `save_model`
(ZPPO's state into checkpoints and the output folder, the adapter's base id, the model card), `create_model_card`.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from .buffers.hard import BufferStateError
from .buffers.replay import group_unit, question_id, ratio_count, replay_count
from .config import ZPPOConfig
from .methods.retrospective import continuation_success_vs_plain
from .quantization import disable_cpu_inference_repacking, upcast_quantized_adapters
from .rewards import answer_extractor
from .round.loss import LossSeamMixin
from .round.rollout import TRLSeams, completions_table_logs
from .round.run import as_model_input, run_round
from .round.state import (
    STATE_FILE_NAME,
    RunState,
    checkpoint_rows,
    checkpoint_step,
    last_complete_checkpoint,
    read_checkpoint_state,
    state_digest,
    write_state_file,
)
from .teachers import resolve_teacher, use_answer_extractor
from .validation import (
    check_trainer_arguments,
    check_vllm_lengths,
    default_args,
    resolve_correctness,
    warn_if_advantage_options_ignored,
    warn_if_checkpoints_split_rounds,
    warn_if_no_teacher,
    warn_if_not_paper_recipe,
)


class ZPPOTrainer(LossSeamMixin, GRPOTrainer):
    """Trainer for ZPPO, "Zone of Proximal Policy Optimization: Teacher in Prompts, Not Gradients" (arXiv 2606.18216).

    Takes everything `trl.GRPOTrainer` takes, with a [`ZPPOConfig`], plus:

    Args:
        teacher (`Callable[[list[dict]], list[list[str]]]`, *optional*):
            Called with the dataset rows of a round's hardest questions; returns per row a list of correct solutions
            (strings) for BCQ prompts. Defaults to the `teacher_column` of the config; with neither, only NCQ
            prompts are built. A teacher that fails for a question leaves that question NCQ only.

    Attributes:
        run_state (`round.state.RunState`): the buffers, their questions' rows and the round counter, identical on
            every process; `replay_buffer`, `experience_buffer` and `retrospective_buffer` are its buffers.
        last_round (`dict`): the latest round's record: new, replayed and experience question ids, admitted,
            graduated and evicted ids, the hint prompts as the student saw them (`{"kind", "prompt_id", "prompt"}`),
            completions and tokens generated; identical on every process.

    The training set is a `datasets.Dataset` or a streaming `IterableDataset` with a `prompt` column; the user's
    datasets are never modified (TRL's sampler and the rows it hands to `training_step` are TRL's own). A question is
    identified by its `prompt_id` column or, when there is none, by a hash of its `prompt` and `answer`
    (`buffers.replay.question_id`); the buffer keeps each buffered question's row (saved in checkpoints), so replay
    never indexes the dataset. Every row a reward function sees carries the dataset columns plus `prompt_id` and
    `zppo_kind` in `("plain", "replay", "bcq", "ncq")`, or another method's kind (`"hint"`, `"prefix"`,
    `"teacher_response"`, `"experience"`, `"retrospective"`).
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
        upcast_quantized_adapters(self.model, args)  # TRL 1.16 casts QLoRA adapters to bf16 even under fp16/fp32
        correctness = resolve_correctness(args.correctness_reward, self.reward_func_names)
        # one extractor: NCQ's wrong answers and a sampled teacher's answers are read as the correctness reward reads
        extract_answer = answer_extractor(self.reward_funcs[correctness])
        use_answer_extractor(self.teacher, extract_answer)
        self.round_seams = TRLSeams(self, self.teacher, extract_answer)
        self.round_seams.correctness_index = correctness
        check_vllm_lengths(args, self.round_seams.text.template_overhead(self._tokenizer))
        self.run_state = RunState.new(args, self.num_generations)
        self.last_round: dict = {}
        # the completions table makes room for the round's replayed and extra rows, not only the new prompts'
        self._logs = completions_table_logs(
            self._logs, args.generation_batch_size + most_extra_groups(self) * self.num_generations
        )
        warn_if_checkpoints_split_rounds(args)
        warn_if_advantage_options_ignored(args)
        warn_if_not_paper_recipe(args)
        warn_if_no_teacher(args, self.teacher)
        self._checkpoint_rows = checkpoint_rows(args)  # whether checkpoints keep the buffered questions' rows

    @property
    def correctness_reward(self):
        """The reward function that decides correctness (`correctness_reward` of the config; the first by default)."""
        return self.reward_funcs[self.round_seams.correctness_index]

    @property
    def replay_buffer(self):
        return self.run_state.buffer

    @property
    def experience_buffer(self):
        return self.run_state.experience

    @property
    def retrospective_buffer(self):
        return self.run_state.retrospective

    # ----------------------------------------------------------------------------------------------------------------
    # the round

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:  # evaluation: same prompt format, no buffer, no hints
            instruction = self.args.answer_format_instruction
            return super()._generate_and_score_completions([as_model_input(r, "plain", instruction) for r in inputs])
        # the round's new prompts: one row per group, every process's, in TRL's sampler order
        result = run_round(gather_object(inputs)[:: self.num_generations], self.run_state, self.round_seams)
        self.last_round = result.record
        show_round_progress(self, result.record)
        return result.output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        completions = self.round_seams.reward_inputs(inputs, completions)
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self.round_seams.capture(completions, rewards)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL averages each metric over the logging window; running totals, rates and the buffer size are gauges, so
        # keep their latest value (per-round counts stay averaged: a mean per round over the window).
        for key, values in self._metrics["train"].items():
            if values and ("/total_" in key or key.endswith(("buffer_size", "exit_rate", "experience/on"))):
                del values[:-1]
        super().log(logs, start_time)

    def retrospective_report(self) -> dict:
        """Stored states' continuation success against the plain accuracy of the same questions."""
        return continuation_success_vs_plain(self.run_state.retrospective)

    # ----------------------------------------------------------------------------------------------------------------
    # resume and save

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        # transformers' `resume_from_checkpoint=True` takes the newest checkpoint folder even when its write was
        # cut short; take the newest *complete* one (round/state.py), chosen by the main process and broadcast, so
        # every process resumes from the same folder even if they see the output folder differently
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.strip().lower() in ("true", "last"):
            resume_from_checkpoint = True  # the CLI's spelling
        if resume_from_checkpoint is True:
            box = [last_complete_checkpoint(self.args.output_dir) if self.accelerator.is_main_process else None]
            if self.accelerator.num_processes > 1:
                broadcast_object_list(box, from_process=0)
            resume_from_checkpoint = box[0]
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete ZPPO checkpoint. "
                    "Train from scratch (resume_from_checkpoint=None)."
                )
        if resume_from_checkpoint:
            self.load_zppo_state(resume_from_checkpoint)  # before any generation: a bad state raises here
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        if (
            self.args.should_save
        ):  # the final buffer and logs, next to the final model (HF saves logs only in checkpoints)
            self._write_output_state()
        return output

    def zppo_state(self, include_rows: bool = True) -> dict:
        """Everything ZPPO needs to resume (`RunState.to_dict`); `include_rows=False` is what a Hub push uploads."""
        return self.run_state.to_dict(self.state.global_step, include_rows)

    def load_zppo_state(self, checkpoint: str) -> None:
        """Restore ZPPO's state from `checkpoint/zppo_buffer_state.json`; raise a `BufferStateError` that names the
        file and the fix (and change nothing) when it is missing, corrupted or does not belong to the checkpoint. Rows
        a state was saved without are found again in the training set by question id. Every process checks that it
        loaded what the others did (a collective)."""
        state = RunState.from_dict(read_checkpoint_state(checkpoint), self.args, self.num_generations)
        missing = state.missing_rows()
        found = rows_by_id(self.train_dataset, missing) if missing else {}
        if len(found) < len(missing):
            raise BufferStateError(
                f"{os.path.join(checkpoint, STATE_FILE_NAME)} holds no dataset rows for buffered question(s) "
                f"{sorted(map(str, missing - set(found)))[:5]}, and the training set has no question with those ids. "
                "Resume with the training set the run used (or from a checkpoint saved with push_dataset_rows=True)."
            )
        state.fill_rows(found)
        if self.accelerator.num_processes > 1:
            digests = gather_object([state_digest(state.to_dict(0))])
            if len(set(digests)) > 1:
                raise BufferStateError(
                    f"the processes loaded different ZPPO states from {checkpoint} (digests {digests}): each reads "
                    "the checkpoint from its own file system. Give every process the same checkpoint folder."
                )
        self.run_state = state

    def _write_output_state(self) -> None:
        """The output folder's state file (what a Hub push uploads: rows only with `push_dataset_rows`) and
        trainer_state.json."""
        payload = self.zppo_state(include_rows=self.args.push_dataset_rows)
        write_state_file(os.path.join(self.args.output_dir, STATE_FILE_NAME), payload)
        self.state.save_to_json(os.path.join(self.args.output_dir, "trainer_state.json"))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        from .model_card import record_base_model

        super().save_model(output_dir, _internal_call)
        checkpoint = _internal_call and output_dir and checkpoint_step(output_dir) is not None
        if self.args.should_save and checkpoint:
            # a checkpoint: ZPPO's state goes in now, before transformers starts a Hub upload of the folder; its rows
            # only when the folder is not uploaded, or the user opted in (`checkpoint_rows`)
            payload = self.zppo_state(include_rows=self._checkpoint_rows)
            write_state_file(os.path.join(output_dir, STATE_FILE_NAME), payload)
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
        from .model_card import trainer_model_card, zppo_card_section
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
        card = trainer_model_card(
            self,
            section,
            model_name=model_name,
            dataset_name=dataset_name,
            tags=tags,
            prompt=kwargs.get("example_prompt"),
        )
        card.save(os.path.join(output_dir, "README.md"))


def show_round_progress(trainer, record: dict) -> None:
    """The round on the progress bar (a postfix of transformers' training bar): hint groups rolled out, the buffer's
    size, and teacher calls and failures, so the slow parts of a ZPPO step are not silent between log lines."""
    from transformers.trainer_callback import ProgressCallback

    bar = next((c.training_bar for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)), None)
    if bar is None:  # disable_tqdm, or not the main process
        return
    postfix = {"hints": len(record["hints"]), "buffer": record["buffer_size"]}
    if trainer.teacher is not None:
        postfix.update(teacher_calls=trainer.round_seams.teacher_calls, teacher_failures=record["teacher_failures"])
    bar.set_postfix(postfix, refresh=False)


def most_extra_groups(trainer) -> int:
    """The most groups a round can add to the new prompts' (replays, hints, experience, states), for table sizes."""
    args, G = trainer.args, trainer.num_generations
    num_new = args.generation_batch_size // G
    unit = group_unit(trainer.accelerator.num_processes, args.steps_per_generation, G)
    extra = [
        ratio_count(ratio, num_new) for ratio in (args.hint_ratio, args.experience_ratio, args.retrospective_ratio)
    ]
    return replay_count(args.replay_ratio, num_new, args.replay_capacity, unit) + sum(max(n, unit) for n in extra)


def rows_by_id(dataset, wanted: set) -> dict:
    """The rows of the questions `wanted` (by `question_id`), read once in order; stops as soon as all are found (a
    stream is read only as far as needed)."""
    found = {}
    for row in dataset:
        pid = question_id(row)
        if pid in wanted and pid not in found:
            found[pid] = dict(row)
            if len(found) == len(wanted):
                break
    return found
