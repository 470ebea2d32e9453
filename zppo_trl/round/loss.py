"""The micro-batch and loss seam TRL forces: TRL's micro-batches regrouped so hint rows do not pad plain rows, plain
and hint rows of a mixed micro-batch run as two trimmed forwards, and ExGRPO's replayed rows given the shaped
surrogate. Wraps `GRPOTrainer._prepare_inputs`, `compute_loss` and `_get_per_token_logps_and_entropies` (their
signatures are pinned by tests/round/test_trainer.py); TRL offers no other way to see a micro-batch's rows in the
loss."""

from __future__ import annotations

import torch

from ..methods.exgrpo import EXPERIENCE_FLAG, EXPERIENCE_LOGPS, shaped_surrogate
from .batching import (
    HINT_FLAG,
    PER_MICRO_BATCH_LOSSES,
    accumulation_groups,
    drop_zero_variance_rows,
    regroup_micro_batches,
)

# keyword arguments of GRPOTrainer._get_per_token_logps_and_entropies that carry per-row image inputs
_MULTIMODAL_FORWARD_KWARGS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


class LossSeamMixin:
    """Micro-batch and loss methods of `ZPPOTrainer`; the one class between it and `GRPOTrainer`, so their `super()`
    is TRL's. The three attributes below carry one micro-batch's row flags from `compute_loss` to the forward TRL's
    loss calls without them; they hold a value only during that call."""

    _micro_batch_hint_flags: torch.Tensor | None = None  # which rows are hint rows (the split forward)
    _micro_batch_experience: tuple | None = None  # ExGRPO: (replayed-row flags, their stored log-probs)
    _micro_batch_weights: torch.Tensor | None = None  # ExGRPO: importance weights seen (sum, count, max)

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
            self._buffered_inputs = self._split_only_where_every_process_does(self._buffered_inputs)
            inputs = self._buffered_inputs[self._step % args.steps_per_generation]
        return inputs

    def _split_only_where_every_process_does(self, chunks: list[dict]) -> list[dict]:
        """A micro-batch runs as two forwards (`_split_forward`) only where it mixes plain and hint rows on every
        process: a sharded or DDP model's forward is a collective, so every process must run as many. A round's
        passes are split evenly over processes, so this holds when hint rows have passes of their own; when they
        ride in the plain pass (`hint_schedule="next_round"`) one process may hold more of them. One gather per
        round (every process calls it)."""
        if self.accelerator.num_processes == 1 or not chunks or HINT_FLAG not in chunks[0]:
            return chunks
        mixed = torch.tensor([bool(c[HINT_FLAG].any() and not c[HINT_FLAG].all()) for c in chunks], dtype=torch.long)
        everywhere = self.accelerator.gather(mixed.to(self.accelerator.device)).view(-1, len(chunks)).min(dim=0).values
        return [c if split else {k: v for k, v in c.items() if k != HINT_FLAG} for c, split in zip(chunks, everywhere)]

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
        padding it does not need (measured: a 20-token plain prompt padded to a 300-token hint prompt costs
        15x). Results are identical up to float error: RoPE attention depends only on relative positions and the
        trimmed columns are masked padding. A micro-batch is flagged for the split only where it is mixed on every
        process (`_split_only_where_every_process_does`), so sharded engines see the same number of forward calls
        on every rank."""
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
            outputs.append(
                super()._get_per_token_logps_and_entropies(
                    model, input_ids[rows, start:], attention_mask[rows, start:], logits_to_keep, **kwargs
                )
            )
            order.append(rows)
        inverse = torch.argsort(torch.cat(order))
        logps = torch.cat([o[0] for o in outputs])[inverse]
        entropies = None if outputs[0][1] is None else torch.cat([o[1] for o in outputs])[inverse]
        aux = None if outputs[0][2] is None else sum(o[2] * len(r) for o, r in zip(outputs, order)) / len(flags)
        return logps, entropies, aux
