"""What a user switching from GRPOTrainer relies on: streamed training sets, datasets left as given, rows TRL passes
around without ZPPO's bookkeeping, and TRL's own error messages for TRL's faults."""

import pytest
from scripted import HARD, ScriptedReward

from zppo_trl.tiny import addition_dataset


def test_a_streamed_training_set_is_buffered_replayed_and_hinted(make_trainer):
    reward = ScriptedReward()
    stream = addition_dataset(16).to_iterable_dataset()
    trainer = make_trainer(reward, dataset=stream, teacher_column="solution", replay_ratio=0.5, hint_ratio=1.0,
                           max_steps=4)  # fmt: skip
    trainer.train()
    assert set(trainer.replay_buffer.ids()) == reward.ids("plain") & HARD
    assert reward.ids("replay") and reward.ids("bcq")
    # the buffer keeps the rows of exactly the questions it holds (a stream cannot be indexed to replay them)
    assert set(trainer.zppo_state()["buffer"]["entries"][i][0] for i in range(len(trainer.replay_buffer))) == {
        pid for pid, _ in trainer.zppo_state()["rows"]
    }


def test_a_stream_without_ids_identifies_questions_by_prompt_and_answer(make_trainer):
    from zppo_trl.buffers.replay import question_id

    data = addition_dataset(16, ids=False)
    hard = {question_id(row) for i, row in enumerate(data) if i % 2 == 0}
    reward = ScriptedReward(hard=hard)
    trainer = make_trainer(reward, dataset=data.to_iterable_dataset(), replay_ratio=0.5, hint_ratio=0.0, max_steps=3)
    trainer.train()
    assert trainer.replay_buffer.ids() and set(trainer.replay_buffer.ids()) <= hard
    assert all(pid.startswith("q-") for pid in trainer.replay_buffer.ids())
    assert reward.ids("replay") <= hard and reward.ids("replay")


def test_datasets_and_rows_stay_as_the_user_gave_them(make_trainer, monkeypatch):
    train, evaluation = addition_dataset(16, ids=False), addition_dataset(8, seed=1, ids=False)
    trainer = make_trainer(ScriptedReward(hard=set()), dataset=train, eval_dataset=evaluation, max_steps=1)
    assert trainer.eval_dataset is evaluation and trainer.train_dataset is train
    seen = []
    training_step = trainer.training_step

    def record(model, inputs, *args, **kwargs):
        seen.append(inputs)
        return training_step(model, inputs, *args, **kwargs)

    monkeypatch.setattr(trainer, "training_step", record)
    trainer.train()
    assert seen and all(set(row) == set(train.column_names) for row in seen[0])


@pytest.mark.parametrize(
    "reward_funcs, dataset, message",
    [([], "default", "No reward source provided"), (None, None, "`train_dataset` is required")],
)
def test_trls_faults_raise_trls_messages(tokenizer, tmp_path, reward_funcs, dataset, message):
    from conftest import tiny_config

    from zppo_trl import ZPPOTrainer
    from zppo_trl.tiny import build_tiny_llama

    reward_funcs = ScriptedReward() if reward_funcs is None else reward_funcs
    dataset = addition_dataset(8) if dataset == "default" else dataset
    with pytest.raises(ValueError, match=message):
        ZPPOTrainer(build_tiny_llama(tokenizer), reward_funcs, args=tiny_config(tmp_path), train_dataset=dataset,
                    processing_class=tokenizer)  # fmt: skip
