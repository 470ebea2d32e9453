"""Joining the plain and hint passes, and regrouping micro-batches so hint prompts do not pad plain rows."""

import pytest
import torch

from zppo_trl.round.batching import HINT_FLAG, concat_rollout_batches, regroup_micro_batches


def batch(rows, prompt_len, completion_len, hint, pad=0):
    prompt_mask = torch.ones(rows, prompt_len, dtype=torch.long)
    prompt_mask[:, 0] = 0  # one column of left padding
    return {
        "prompt_ids": torch.full((rows, prompt_len), 5),
        "prompt_mask": prompt_mask,
        "completion_ids": torch.full((rows, completion_len), 6),
        "completion_mask": torch.ones(rows, completion_len, dtype=torch.long),
        "advantages": torch.arange(rows, dtype=torch.float),
        "num_items_in_batch": torch.tensor(rows * completion_len),
        "old_per_token_logps": None,
        HINT_FLAG: torch.full((rows,), hint, dtype=torch.bool),
    }


def test_concat_pads_each_side_and_sums_token_counts():
    out = concat_rollout_batches(batch(4, 3, 5, False), batch(2, 9, 2, True), pad_token_id=0)
    assert out["prompt_ids"].shape == (6, 9) and out["completion_ids"].shape == (6, 5)
    assert out["prompt_mask"][0].tolist() == [0] * 7 + [1, 1]  # plain prompts left-padded
    assert out["completion_mask"][5].tolist() == [1, 1, 0, 0, 0]  # hint completions right-padded
    assert out["num_items_in_batch"].item() == 4 * 5 + 2 * 2 and out["old_per_token_logps"] is None
    assert out[HINT_FLAG].tolist() == [False] * 4 + [True] * 2


def test_concat_refuses_unknown_keys():
    a, b = batch(2, 3, 3, False), batch(2, 3, 3, True)
    a["pixel_values"] = b["pixel_values"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="pixel_values"):
        concat_rollout_batches(a, b, 0)


def test_regroup_keeps_plain_rows_out_of_long_prompt_micro_batches():
    full = concat_rollout_batches(batch(4, 3, 5, False), batch(4, 50, 5, True), pad_token_id=0)
    shuffled = {
        k: (
            v[torch.randperm(8, generator=torch.Generator().manual_seed(0))]
            if k not in ("num_items_in_batch",) and v is not None
            else v
        )
        for k, v in full.items()
    }  # noqa: E501
    chunks = [
        {k: (v[i * 4 : (i + 1) * 4] if v is not None and v.ndim else v) for k, v in shuffled.items()} for i in range(2)
    ]  # noqa: E501
    regrouped = regroup_micro_batches(chunks)
    assert [c[HINT_FLAG].tolist() for c in regrouped] == [[False] * 4, [True] * 4]
    assert regrouped[0]["prompt_ids"].shape[1] == 2  # plain micro-batch trimmed to its own padding
    assert regrouped[1]["prompt_ids"].shape[1] == 49
    assert sorted(torch.cat([c["advantages"] for c in regrouped]).tolist()) == sorted(full["advantages"].tolist())


def test_a_micro_batch_without_signal_keeps_one_masked_row():
    from zppo_trl.round.batching import INFORMATIVE_FLAG, drop_zero_variance_rows

    chunk = batch(4, 3, 5, False)
    chunk[INFORMATIVE_FLAG] = torch.tensor([False, True, False, True])
    kept = drop_zero_variance_rows(chunk)
    assert kept["advantages"].tolist() == [1.0, 3.0] and kept["num_items_in_batch"] == chunk["num_items_in_batch"]
    chunk[INFORMATIVE_FLAG] = torch.zeros(4, dtype=torch.bool)
    empty = drop_zero_variance_rows(chunk)
    assert empty["prompt_ids"].shape[0] == 1 and empty["completion_mask"].sum() == 0  # one forward, zero loss
