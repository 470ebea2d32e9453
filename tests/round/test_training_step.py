"""One training step, exactly right: which rows each optimizer step trains, and what the loss is handed."""

from collections import Counter, defaultdict

import pytest
import torch
from scripted import ScriptedReward, assert_loss_gradient_is_hand_loss

import zppo_trl.round.loss as micro_batches_module
from zppo_trl.round.batching import HINT_FLAG, accumulation_groups


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
    original = micro_batches_module.regroup_micro_batches

    def record_trl_split(chunks, groups=None):
        trl_rounds[trainer._step] = [_row_keys(c) for c in chunks]
        return original(chunks, groups)

    monkeypatch.setattr(micro_batches_module, "regroup_micro_batches", record_trl_split)
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


INFORMATIVE = frozenset({1, 3, 5, 7, 9, 11, 13, 15})  # odd ids: one rollout of four right; even ids: all wrong


def one_right_of_four(completions, prompt_id, **kwargs):
    """Controlled rewards: a group of an odd question scores [1, 0, 0, 0] (reward variance), an even one all 0."""
    return [float(pid in INFORMATIVE and i % 4 == 0) for i, pid in enumerate(prompt_id)]


def _first_micro_batch(trainer, monkeypatch):
    """The first micro-batch TRL hands the loss, and the same rows before ZPPO dropped the zero-variance ones."""
    before_drop = []
    original = micro_batches_module.drop_zero_variance_rows

    def record(chunk):
        before_drop.append(chunk)
        return original(chunk)

    monkeypatch.setattr(micro_batches_module, "drop_zero_variance_rows", record)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    return inputs, before_drop[0] if before_drop else inputs


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
@pytest.mark.parametrize("exclude", [True, False])
def test_zero_variance_groups_and_the_loss_normaliser(make_trainer, monkeypatch, loss_type, exclude):
    """With `exclude_zero_variance_groups`, the loss and gradients equal those of the informative groups alone;
    without it (the paper's aggregation) they are diluted by the share of tokens (dapo) or rows (grpo) that carry no
    gradient. Both are checked against the surrogate written out by hand."""
    trainer = make_trainer(
        one_right_of_four, loss_type=loss_type, exclude_zero_variance_groups=exclude, replay_ratio=0.0,
        hint_ratio=0.0, per_device_train_batch_size=16, max_completion_length=6,
    )  # fmt: skip
    inputs, full = _first_micro_batch(trainer, monkeypatch)
    informative = (full["advantages"] != 0).nonzero().squeeze(1)
    everything = torch.arange(len(full["advantages"]))
    assert 0 < len(informative) < len(everything), "the test needs both kinds of group in the micro-batch"
    dropped = exclude and loss_type == "grpo"  # per-micro-batch normaliser: the rows go; dapo: only the count
    assert inputs["prompt_ids"].shape[0] == (len(informative) if dropped else len(everything))
    tokens = full["completion_mask"].sum(1)
    assert int(inputs["num_items_in_batch"]) == int(tokens[informative].sum() if exclude else tokens.sum())

    normaliser = None if loss_type == "grpo" else tokens[informative].sum()
    dilution = 1.0
    if not exclude:  # the paper's aggregation: zero-variance rollouts still count in the normaliser
        dilution = (
            (tokens[informative].sum() / tokens.sum()) if loss_type == "dapo" else len(informative) / len(everything)
        )
    loss, value = assert_loss_gradient_is_hand_loss(trainer, inputs, full, informative, normaliser, scale=dilution)
    assert torch.allclose(loss, value * dilution, rtol=1e-5, atol=1e-7)


def test_zero_variance_shares_are_logged_by_kind(make_trainer):
    trainer = make_trainer(one_right_of_four, teacher_column="solution", replay_ratio=0.5, hint_ratio=1.0, max_steps=3)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "zppo/zero_variance/plain" in h]
    assert len(logs) == 3
    last, final = trainer.last_round, logs[-1]

    def even_share(ids):
        return sum(pid not in INFORMATIVE for pid in ids) / len(ids)

    assert final["zppo/zero_variance/plain"] == pytest.approx(even_share(last["new"]))
    assert final["zppo/zero_variance/replay"] == pytest.approx(even_share(last["replayed"]))
    for kind in ("bcq", "ncq"):
        hinted = [h["prompt_id"] for h in last["hints"] if h["kind"] == kind]
        if hinted:
            assert final[f"zppo/zero_variance/{kind}"] == pytest.approx(even_share(hinted))
    assert all(0.0 <= h["zppo/informative_token_share"] <= 1.0 for h in logs)


def test_completions_table_logs_the_advantages_trained_on(make_trainer):
    from zppo_trl.round.advantages import zppo_advantages

    trainer = make_trainer(one_right_of_four, replay_ratio=0.0, hint_ratio=0.0, per_device_train_batch_size=16)
    trainer.model.train()
    output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    expected = zppo_advantages(trainer.round_seams.latest_rewards[:, 0], 4)
    assert expected.abs().sum() > 0 and torch.equal(output["advantages"], expected)
    assert list(trainer._logs["advantages"])[-len(expected) :] == expected.tolist()


def test_trl_advantage_options_ignored_by_the_paper_estimator_warn(make_trainer):
    with pytest.warns(UserWarning, match="scale_rewards"):
        make_trainer(one_right_of_four, scale_rewards="batch")


def test_exit_rate_once_questions_are_evicted(make_trainer, monkeypatch):
    import zppo_trl.plotting as plotting

    drawn = []
    monkeypatch.setattr(plotting, "plot_graduation", lambda run_dir: drawn.append(run_dir))
    trainer = make_trainer(ScriptedReward(flip_at_step=2), replay_capacity=2, replay_ratio=1.0, hint_ratio=0.0,
                           max_steps=4, save_strategy="steps", save_steps=2)  # fmt: skip
    trainer.train()
    buffer, last = trainer.replay_buffer, trainer.state.log_history[-2]
    assert buffer.total_evicted > 0 and buffer.total_graduated > 0
    assert last["zppo/exit_rate"] == pytest.approx(
        buffer.total_graduated / (buffer.total_graduated + buffer.total_evicted)
    )
    assert not drawn  # checkpoints re-create the card, not the figure
    trainer.save_model()
    card = open(f"{trainer.args.output_dir}/README.md").read()
    assert (
        drawn and f"exit rate (graduated / (graduated + evicted), the paper's Fig. 4) {buffer.exit_rate():.1%}" in card
    )


def test_a_compressing_teacher_rewrites_the_wrong_candidates_too(make_trainer):
    """Paper App. D.1: with compression, both BCQ candidates come from the same teacher prompt, so style and length
    give nothing away: the student's wrong rollouts are compressed like the teacher's own solutions."""

    class CompressingTeacher:
        compress = True

        def __call__(self, rows):
            return [[f"SUMMARY of the teacher. The answer is \\boxed{{{row['answer']}}}."] for row in rows]

        def compress_texts(self, texts):
            return [f"SUMMARY of a rollout of {len(t)} characters." for t in texts]

    reward = ScriptedReward()
    trainer = make_trainer(reward, teacher=CompressingTeacher(), hint_ratio=1.0, max_steps=2)
    trainer.train()
    bcq = [r["prompt"] for r in reward.rows if r["kind"] == "bcq"]
    ncq = [r["prompt"] for r in reward.rows if r["kind"] == "ncq"]
    assert bcq and ncq
    for prompt in bcq + ncq:  # every candidate block holds a summary, none a raw rollout
        blocks = prompt.split("\n<candidate>\n")[1:]
        assert blocks and all(block.startswith("SUMMARY of") for block in blocks)
