"""What a round asks of TRL and of the model, in one place: `TRLSeams` reads the `GRPOTrainer` private fields and
methods a round needs (the trainer itself touches only its hooks, `_metrics` and `_logs`). It runs TRL's rollout
pass on a round's groups and hands back rewards and completions as values (`Rollout`), scores completions the
student did not sample, calls the teacher on the main process and broadcasts it, runs the model's no-grad forwards
ExGRPO and the injection need, gathers across processes and writes metrics.
`round/run.py` sees only this interface, so a fake of it (tests/fakes.py) runs a round without a model.
"""

from __future__ import annotations

import warnings
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from accelerate.utils import broadcast_object_list, gather_object
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from ..methods.baselines import PREFIX_KEY, full_completion
from ..sanitize import special_token_strings
from ..teachers import solutions_for
from .batching import process_share


@dataclass
class Rollout:
    """One TRL rollout pass: this process's rows (`output`, TRL's tensors), the rewards per function of every
    process's rows (`rewards`, gathered: identical on every process), and the decoded completions of every process's
    rows in row order (gathered, when the pass was asked to gather them; else this process's)."""

    output: dict
    rewards: torch.Tensor
    completions: list
    process_index: int = 0

    def held_rows(self, rows) -> dict[int, int]:
        """Global row of this pass -> this process's row in `output`, for the `rows` this process holds (each
        process holds a contiguous share, in rank order)."""
        L, p = self.output["completion_ids"].shape[0], self.process_index
        return {row: row - p * L for row in rows if p * L <= row < (p + 1) * L}


@dataclass
class TextTools:
    """The tokenizer as the round uses it: token counts for prompt budgets, ids for teacher completions and
    prefixes, a chat renderer for prefix rows, and the answer extractor of the correctness reward."""

    tokenize: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    decode_batch: Callable[[list[list[int]]], list[str]]
    render_prefix: Callable[[list[dict]], str]
    extract_answer: Callable[[str], str | None]
    pad_token_id: int
    eos_token_id: int
    stop_ids: set = field(default_factory=set)
    special_tokens: tuple[str, ...] = ()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    @classmethod
    def of(cls, tokenizer, eos_token_ids, chat_template_kwargs: dict, extract_answer) -> TextTools:
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else eos_token_ids[0]
        render = lambda messages: tokenizer.apply_chat_template(
            messages, continue_final_message=True, tokenize=False, **chat_template_kwargs
        )
        return cls(
            tokenize=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
            decode=tokenizer.decode,
            decode_batch=lambda ids: tokenizer.batch_decode(ids, skip_special_tokens=True),
            render_prefix=render,
            extract_answer=extract_answer,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
            stop_ids={*eos_token_ids, eos, tokenizer.pad_token_id},
            special_tokens=special_token_strings(tokenizer),
        )

    def template_overhead(self, tokenizer) -> int:
        """Tokens the chat template adds around a one-message prompt (0 without a chat template)."""
        try:
            templated = tokenizer.apply_chat_template(
                [{"role": "user", "content": ""}], add_generation_prompt=True, tokenize=False
            )
        except (ValueError, AttributeError):
            return 0
        return self.count_tokens(templated)


class TRLSeams:
    """Everything a round asks of `trainer` (a `ZPPOTrainer`), as values and callables.

    Attributes a round reads: `args`, `num_generations`, `num_processes`, `process_index`, `text` (`TextTools`),
    `correctness_index`, `reward_weights`, `scale_rewards`, `mask_truncated_completions`.
    """

    def __init__(self, trainer, teacher, extract_answer):
        self.trainer, self.teacher = trainer, teacher
        self.args, self.num_generations = trainer.args, trainer.num_generations
        self.num_processes, self.process_index = trainer.accelerator.num_processes, trainer.accelerator.process_index
        self.text = TextTools.of(
            trainer._tokenizer, trainer.eos_token_ids, trainer.chat_template_kwargs, extract_answer
        )
        self.reward_weights, self.scale_rewards = trainer.reward_weights, trainer.scale_rewards
        self.mask_truncated_completions = trainer.mask_truncated_completions
        self.correctness_index = 0  # set by the trainer once its reward functions are known
        self._captured: tuple | None = None  # (this process's completions, gathered rewards) of the latest pass
        self._nonfinite = 0  # rollouts with a +-inf reward since `nonfinite_rewards` was last read
        self._teacher_warned = False
        self.teacher_calls = 0  # teacher calls so far (one per round that asked), for the progress bar

    # ------------------------------------------------------------------------------------------------------------
    # TRL's rollout pass

    def rollout(self, groups: Sequence[dict], metrics_prefix: str | None = None, gather: bool = False) -> Rollout:
        """TRL's rollout pass (`GRPOTrainer._generate_and_score_completions`) on this process's share of `groups`
        (each group repeated G times). The completions table gets a `zppo_kind` column. With `metrics_prefix`, the
        TRL metrics this pass logs move under it (so `reward`, `completions/*` keep describing plain rollouts).
        `gather=True` gathers the completions of every process (a collective: every process asks the same)."""
        trainer, metrics = self.trainer, self.trainer._metrics["train"]
        sizes = {k: len(v) for k, v in metrics.items()}
        output = GRPOTrainer._generate_and_score_completions(trainer, self.local_rows(groups))
        trainer._logs["extra"]["zppo_kind"].extend(g["zppo_kind"] for g in groups for _ in range(self.num_generations))
        if metrics_prefix is not None:
            for key in list(metrics):
                new = metrics[key][sizes.get(key, 0) :]
                if new and not key.startswith("zppo/") and key != "num_tokens":
                    del metrics[key][sizes.get(key, 0) :]
                    metrics[f"{metrics_prefix}{key}"].extend(new)
        completions, rewards = self._captured
        return Rollout(output, rewards, gather_object(completions) if gather else completions, self.process_index)

    def local_rows(self, groups: Sequence[dict]) -> list[dict]:
        """This process's contiguous share of a pass: each group repeated G times, split evenly in rank order (the
        order `gather` reassembles, so rewards line up with groups)."""
        rows = [dict(group) for group in groups for _ in range(self.num_generations)]
        local = process_share(rows, self.num_processes, self.process_index)
        if len(local) % self.args.steps_per_generation:
            raise RuntimeError(
                f"{len(local)} rows per process cannot be split into {self.args.steps_per_generation} micro-batches; "
                "please report this as a zppo_trl bug"
            )
        return local

    def capture(self, completions: list, rewards: torch.Tensor) -> torch.Tensor:
        """Remember a pass's completions and gathered rewards (the trainer's `_calculate_rewards` calls it), and
        return the rewards TRL should use: a +-inf reward would make every advantage of the round NaN, hence 0, so it
        counts as unscorable (NaN) instead, which leaves only that rollout out (TRL's rule for None), and is
        counted (`nonfinite_rewards`)."""
        infinite = torch.isinf(rewards)
        if infinite.any():
            rewards = torch.where(infinite, torch.full_like(rewards, torch.nan), rewards)
            self._nonfinite += int(infinite.any(dim=1).sum())
        self._captured = (completions, rewards)
        return rewards

    @property
    def latest_rewards(self) -> torch.Tensor | None:
        """The gathered rewards per function of the latest pass (tests and reports read them)."""
        return None if self._captured is None else self._captured[1]

    def nonfinite_rewards(self) -> int:
        """Rollouts scored with a +-inf reward since the last call (a round reads it once, at its end)."""
        count, self._nonfinite = self._nonfinite, 0
        return count

    def reward_inputs(self, inputs: list[dict], completions: list) -> list:
        """The completions the reward functions see: a Prefix or Retrospective Replay row's prefix is prompt to TRL,
        but the answer is prefix + continuation (its `PREFIX_KEY`, taken off the row here). Row by row: a pass may mix
        them with plain rows (`hint_schedule="next_round"` on a text dataset)."""
        return [full_completion(c, *row.pop(PREFIX_KEY)) if PREFIX_KEY in row else c
                for row, c in zip(inputs, completions, strict=True)]  # fmt: skip

    def score(self, inputs: list[dict], prompts: list, completions: list, completion_ids: list) -> torch.Tensor:
        """The reward functions on completions the student did not sample, as TRL scores a pass (every process
        scores all of them; gathered): TRL's own method, not the trainer's, which would overwrite the pass's
        remembered rewards."""
        return GRPOTrainer._calculate_rewards(self.trainer, inputs, prompts, completions, completion_ids)

    # ------------------------------------------------------------------------------------------------------------
    # the teacher: called on the main process, broadcast, so a sampling or remote teacher cannot make ranks disagree

    def teacher_solutions(self, rows: list[dict]) -> tuple[list[list[str]], int]:
        """Correct solutions per row and the number of rows left without one (`teachers.solutions_for`)."""
        self.teacher_calls += 1
        box = [solutions_for(self.teacher, rows) if self.trainer.accelerator.is_main_process else None]
        if self.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        solutions, failures, error, acceptance_rate = box[0]
        if acceptance_rate is not None:  # a sampling teacher: its samples kept / drawn, this round
            self.log({"zppo/teacher_acceptance_rate": acceptance_rate})
        if error and not self._teacher_warned:
            warnings.warn(f"ZPPO teacher fault, the questions concerned get NCQ prompts only: {error}", stacklevel=2)
            self._teacher_warned = True
        return solutions, failures

    def compress(self, texts: list[str]) -> list[str] | None:
        """`texts` rewritten by a compressing teacher (`teacher_compress`), or None (no such teacher, or a fault:
        the texts stay as they are, the run goes on)."""
        if not getattr(self.teacher, "compress", False) or not hasattr(self.teacher, "compress_texts"):
            return None
        box = [None]
        if self.trainer.accelerator.is_main_process:
            try:
                box = [self.teacher.compress_texts(texts)]
            except Exception as err:  # a teacher fault degrades to uncompressed candidates, never stops the run
                warnings.warn(
                    f"ZPPO teacher could not compress the wrong candidates, using them as sampled: {err}", stacklevel=2
                )
        if self.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        return box[0]

    # ------------------------------------------------------------------------------------------------------------
    # collectives, the model's no-grad forwards, logs

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.trainer.accelerator.gather(tensor.to(self.trainer.accelerator.device))

    def gather_object(self, objects: list) -> list:
        return gather_object(objects)

    def student_logps(self, batch: dict, rows: list[int]) -> torch.Tensor:
        """The student's per-token log-probs of `rows`' completions now, without gradient (as TRL computes
        `old_per_token_logps`)."""
        trainer = self.trainer
        ids = torch.cat([batch["prompt_ids"][rows], batch["completion_ids"][rows]], dim=1)
        mask = torch.cat([batch["prompt_mask"][rows], batch["completion_mask"][rows]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(trainer.model, self.args.gradient_checkpointing_kwargs):
            logps, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, ids, mask, batch["completion_ids"].shape[1], self.args.per_device_train_batch_size
            )
        return logps

    def mean_entropies(self, output: dict, items: list[tuple[int, list[int]]]) -> list[float]:
        """Mean token entropy under the current policy of each `(local row, completion ids)`: the row's prompt
        followed by the ids. One no-grad forward on every process (on row 0's own prompt when it has no item)."""
        trainer = self.trainer
        probe = items or [(0, [int(output["completion_ids"][0, 0])])]
        width = max(len(ids) for _, ids in probe)
        completion = output["completion_ids"].new_full((len(probe), width), self.text.pad_token_id)
        mask = torch.zeros_like(completion)
        for i, (_, ids) in enumerate(probe):
            completion[i, : len(ids)] = torch.tensor(ids, dtype=completion.dtype)
            mask[i, : len(ids)] = 1
        rows = [row for row, _ in probe]
        input_ids = torch.cat([output["prompt_ids"][rows], completion], dim=1)
        attention_mask = torch.cat([output["prompt_mask"][rows], mask], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(trainer.model, self.args.gradient_checkpointing_kwargs):
            _, entropies, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model,
                input_ids,
                attention_mask,
                width,
                self.args.per_device_train_batch_size,
                compute_entropy=True,
            )
        means = (entropies * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return means.tolist() if items else []

    def log(self, metrics: dict[str, float]) -> None:
        """Append to TRL's metric log (averaged over the logging window by `GRPOTrainer.log`)."""
        for key, value in metrics.items():
            self.trainer._metrics["train"][key].append(value)

    def show_advantages(self, values: list[float], before_last: int = 0) -> None:
        """The completions table shows the advantages trained on: overwrite the entries TRL appended for them, the
        newest ones but the last `before_last` (the rows of later passes, whose advantages TRL's are)."""
        log = self.trainer._logs["advantages"]
        entries = list(log)
        end = len(entries) - before_last
        start = max(0, end - len(values))
        entries[start:end] = values[len(values) - (end - start) :]
        log.clear()
        log.extend(entries)


def completions_table_logs(logs: dict, maxlen: int) -> dict:
    """TRL's completions-table buffers with room for `maxlen` rows, so replayed and hint rows do not push the new
    prompts' rows out (TRL sizes them for `generation_batch_size` rows)."""
    return {
        key: defaultdict(lambda: deque(maxlen=maxlen)) if isinstance(value, defaultdict) else deque(maxlen=maxlen)
        for key, value in logs.items()
    }
