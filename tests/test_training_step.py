"""One training step, exactly right: which rows each optimizer step trains, and what the loss is handed."""

from collections import Counter, defaultdict

import pytest
import torch
from scripted import ScriptedReward

import zppo_trl.trainer as trainer_module
from zppo_trl.batching import HINT_FLAG, accumulation_groups


@pytest.mark.parametrize(
    "spg, iterations, ga, expected",
    [
        (1, 1, 1, [[0]]),
        (2, 1, 1, [[0], [1]]),
        (2, 1, 2, [[0, 1]]),
        (4, 1, 2, [[0, 1], [2, 3]]),
        (2, 1, 4, [[0, 1]]),  # a window spans two rounds: this round's part of it
        (3, 2, 2, [[0], [1], [2]]),  # windows (0,1) (2,0) (1,2): no two micro-batches always train together
        (4, 2, 2, [[0, 1], [2, 3]]),  # the second iteration repeats the first one's windows
    ],
)
def test_accumulation_groups(spg, iterations, ga, expected):
    groups = accumulation_groups(0, spg, iterations, ga)
    assert sorted(map(sorted, groups)) == expected
    # the next round (which may start mid-window when a window spans two rounds) groups the same way
    assert sorted(map(sorted, accumulation_groups(spg * iterations, spg, iterations, ga))) == expected


def _row_keys(batch: dict) -> list[tuple]:
    """One hashable key per row, independent of how much prompt padding the micro-batch carries."""
    keys = []
    for i in range(batch["prompt_ids"].shape[0]):
        prompt = batch["prompt_ids"][i][batch["prompt_mask"][i].bool()].tolist()
        keys.append((tuple(prompt), tuple(batch["completion_ids"][i].tolist()), bool(batch[HINT_FLAG][i])))
    return keys


@pytest.mark.parametrize("spg, ga", [(1, 1), (2, 1), (2, 2), (4, 2)])
def test_every_optimizer_step_trains_the_rows_trl_assigned_to_it(make_trainer, monkeypatch, spg, ga):
    """TRL shuffles a round and splits it into `spg` micro-batches; ZPPO's regrouping (plain rows before hint rows,
    to save padding) may only move rows between micro-batches of the same optimizer step."""
    trl_rounds = {}  # first micro-step of the round -> TRL's micro-batches (row keys)
    original = trainer_module.regroup_micro_batches

    def record_trl_split(chunks, groups=None):
        trl_rounds[trainer._step] = [_row_keys(c) for c in chunks]
        return original(chunks, groups)

    monkeypatch.setattr(trainer_module, "regroup_micro_batches", record_trl_split)
    trainer = make_trainer(
        ScriptedReward(), teacher_column="solution", replay_ratio=0.5, hint_ratio=1.0, max_steps=4,
        per_device_train_batch_size=8, steps_per_generation=spg, gradient_accumulation_steps=ga,
    )  # fmt: skip
    trained = defaultdict(Counter)  # optimizer step -> rows trained in it
    compute_loss = trainer._compute_loss

    def record_trained(model, inputs):
        trained[trainer.state.global_step].update(_row_keys(inputs))
        return compute_loss(model, inputs)

    monkeypatch.setattr(trainer, "_compute_loss", record_trained)
    trainer.train()

    expected = defaultdict(Counter)
    for first, chunks in trl_rounds.items():
        for step in range(first, first + spg):
            expected[step // ga].update(chunks[step % spg])
    assert any(any(key[2] for key in rows) for rows in expected.values()), "the test needs hint rows"
    assert set(trained) == set(range(4)) and dict(trained) == dict(expected)
    for chunks in trl_rounds.values():  # TRL's micro-batch sizes are kept (one size per round)
        assert len({len(chunk) for chunk in chunks}) == 1
