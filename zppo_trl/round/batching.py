"""Tensor plumbing for a round's rollout passes (plain and hint groups): join, order and trim TRL batches.

TRL's `_generate_and_score_completions` returns a dict of per-row tensors (prompt left-padded, completion
right-padded) plus the 0-dim `num_items_in_batch`. A round runs it once per pass (a second pass for the hint groups
under hint_schedule="same_round", one pass under "next_round") and joins the results here. Only text batches are
supported (the keys listed below); anything else raises, rather than being silently dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HINT_FLAG = "zppo_is_hint"  # (B,) bool tensor riding along in the batch; ignored by TRL's loss
INFORMATIVE_FLAG = "zppo_has_variance"  # (B,) bool: the row's group has reward variance (non-zero advantages)

# key -> (side, pad value); "left"/"right" pad along dim 1 to the wider of the two batches
_PADDED = {
    "prompt_ids": ("left", None),  # None: the tokenizer's pad id
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "old_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "tool_mask": ("right", 1),
    "importance_sampling_ratio": ("right", 1.0),  # token-level (B, C); sequence-level (B, 1) is just concatenated
}
_ROWWISE = {"advantages", HINT_FLAG, INFORMATIVE_FLAG}


def process_share(items, num_processes: int, process_index: int):
    """This process's contiguous share of a round laid out in rank order (rows or per-row values; `gather` reassembles
    them in the same order). Raises if the round does not split evenly: every process must hold as many rows."""
    per_process, rest = divmod(len(items), num_processes)
    if rest:
        raise RuntimeError(
            f"a round of {len(items)} rows cannot be split evenly over {num_processes} processes; please report this "
            "as a zppo_trl bug"
        )
    return items[process_index * per_process : (process_index + 1) * per_process]


def _pad_to(t: torch.Tensor, width: int, side: str, value) -> torch.Tensor:
    missing = width - t.shape[1]
    if missing <= 0:
        return t
    return F.pad(t, (missing, 0) if side == "left" else (0, missing), value=value)


def concat_rollout_batches(first: dict, second: dict, pad_token_id: int) -> dict:
    """Rows of `first` then rows of `second`, padded to common widths. `num_items_in_batch` (a global token count
    in each) is summed, so token-normalised losses (`dapo`, `cispo`, `vespo`) normalise over both passes."""
    if first.keys() != second.keys():
        raise ValueError(f"cannot join rollout batches with different keys: {sorted(first)} vs {sorted(second)}")
    out = {}
    for key, a in first.items():
        b = second[key]
        if a is None or b is None:
            out[key] = None if a is None and b is None else _fail(key, "present in one pass only")
        elif key == "num_items_in_batch":
            out[key] = a + b
        elif key in _ROWWISE:
            out[key] = torch.cat([a, b])
        elif key in _PADDED:
            side, value = _PADDED[key]
            value = pad_token_id if value is None else value
            if key == "importance_sampling_ratio" and a.shape[1] == 1 and b.shape[1] == 1:
                out[key] = torch.cat([a, b])
                continue
            width = max(a.shape[1], b.shape[1])
            out[key] = torch.cat([_pad_to(a, width, side, value), _pad_to(b, width, side, value)])
        else:
            _fail(key, "not a text rollout key (multimodal batches are not supported with hint prompts)")
    return out


def _fail(key, why):
    raise ValueError(f"ZPPO cannot join rollout batches on key {key!r}: {why}.")


def _num_rows(batch: dict) -> int:
    return batch["prompt_ids"].shape[0]


def take_rows(batch: dict, index: torch.Tensor) -> dict:
    """The rows `index` of every per-row tensor; 0-dim tensors and None pass through."""
    return {k: (v[index] if isinstance(v, torch.Tensor) and v.ndim > 0 else v) for k, v in batch.items()}


def trim_prompt_padding(batch: dict) -> dict:
    """Drop the leading prompt columns that are padding in every row (left padding is shared across rows)."""
    mask = batch["prompt_mask"]
    used = mask.any(dim=0).nonzero()
    start = int(used[0]) if used.numel() else 0
    if start == 0:
        return batch
    return {**batch, "prompt_ids": batch["prompt_ids"][:, start:], "prompt_mask": mask[:, start:]}


def accumulation_groups(
    first_step: int, steps_per_generation: int, num_iterations: int, gradient_accumulation_steps: int
) -> list[list[int]]:
    """The round's micro-batch indices, partitioned into the sets whose rows may be exchanged without changing what
    any optimizer step trains.

    TRL trains micro-batch `step % spg` at micro-step `step`, for the `spg * num_iterations` micro-steps of a round
    starting at `first_step`; an optimizer step accumulates the micro-steps `[k * GA, (k + 1) * GA)`. Two
    micro-batches can swap rows only when every optimizer window holds both or neither (over all iterations), so
    micro-batches are grouped by the set of windows they are trained in. With `GA == spg` that is one group (the
    whole round); with `GA < spg`, groups of `GA` consecutive micro-batches; with `GA > spg`, the round's part of
    a window that spans several rounds.

    Example:
    ```python
    >>> accumulation_groups(0, steps_per_generation=4, num_iterations=1, gradient_accumulation_steps=2)
    [[0, 1], [2, 3]]
    ```
    """
    windows: dict[int, set[int]] = {i: set() for i in range(steps_per_generation)}
    for step in range(first_step, first_step + steps_per_generation * num_iterations):
        windows[step % steps_per_generation].add(step // gradient_accumulation_steps)
    groups: dict[frozenset, list[int]] = {}
    for index, trained_in in windows.items():
        groups.setdefault(frozenset(trained_in), []).append(index)
    return list(groups.values())


def regroup_micro_batches(chunks: list[dict], groups: list[list[int]] | None = None) -> list[dict]:
    """Within each group of micro-batches (see `accumulation_groups`), put plain rows before hint rows, re-split at
    TRL's sizes, then trim each micro-batch's prompt padding.

    Why: TRL pads a whole round to its longest prompt. Hint prompts (question + candidates) are many times longer
    than plain ones, so a plain row sharing a micro-batch with a hint row pays for the hint's length in every
    forward and backward pass. Sorting rows by kind (the order inside each kind kept from TRL's shuffle) bounds
    that cost to at most one mixed micro-batch per group. Rows move only between micro-batches of the same
    optimizer step, so every optimizer step trains the same multiset of rows as TRL's own split, and micro-batch
    sizes are unchanged (every process runs the same number of equal-sized steps). `groups=None`: one group.
    """
    if len(chunks) == 0 or HINT_FLAG not in chunks[0]:
        return chunks
    regrouped = list(chunks)
    for group in groups if groups is not None else [list(range(len(chunks)))]:
        for index, chunk in zip(group, _sort_plain_first([chunks[i] for i in group])):
            regrouped[index] = chunk
    return [trim_prompt_padding(chunk) for chunk in regrouped]


def _sort_plain_first(chunks: list[dict]) -> list[dict]:
    if len(chunks) == 1:
        return chunks
    full = {}
    for key, value in chunks[0].items():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            full[key] = torch.cat([c[key] for c in chunks])
        else:
            full[key] = value  # 0-dim (num_items_in_batch) or None: identical in every chunk
    full = take_rows(full, torch.argsort(full[HINT_FLAG].to(torch.int8), stable=True))
    size = _num_rows(full) // len(chunks)
    return [take_rows(full, torch.arange(i * size, (i + 1) * size)) for i in range(len(chunks))]


def informative_token_count(batch: dict, gather) -> torch.Tensor:
    """Loss tokens (completion mask x tool mask, as TRL counts `num_items_in_batch`) of the rows whose group has
    reward variance, summed over all processes with `gather` (a collective: every process calls it)."""
    loss_mask = (
        batch["completion_mask"] if batch.get("tool_mask") is None else batch["completion_mask"] * batch["tool_mask"]
    )
    local = (loss_mask.sum(dim=1) * batch[INFORMATIVE_FLAG]).sum()
    return gather(local).sum()


# TRL loss types that normalise per micro-batch (by its rows or tokens) rather than by `num_items_in_batch`
PER_MICRO_BATCH_LOSSES = ("grpo", "sapo", "bnpo", "dr_grpo", "luspo")


def drop_zero_variance_rows(chunk: dict) -> dict:
    """The micro-batch without the rows of zero-variance groups, so TRL's per-micro-batch normalisers (`grpo`: mean
    over sequences, `bnpo`: token mean, `dr_grpo`: rows x max length) count only rows that carry a gradient.

    Those rows have zero advantage, so with `beta == 0` they add nothing to the loss: dropping them changes only the
    normaliser. A micro-batch with no informative row keeps one row with its loss mask zeroed (loss and gradient 0),
    so every process still runs one forward and backward per micro-step. The hint flags are dropped with the rows:
    processes now hold different mixes of plain and hint rows, and a plain/hint split forward must run the same
    number of forward calls on every process (DDP, ZeRO-3), so the micro-batch runs as one forward.
    """
    keep = chunk[INFORMATIVE_FLAG]
    chunk = {k: v for k, v in chunk.items() if k != HINT_FLAG}
    if bool(keep.all()):
        return chunk
    if not bool(keep.any()):
        chunk = take_rows(chunk, torch.arange(1))
        return {**chunk, "completion_mask": torch.zeros_like(chunk["completion_mask"])}
    return trim_prompt_padding(take_rows(chunk, keep.nonzero().squeeze(1)))
