"""Configuration and data-shape faults raise in ZPPOTrainer.__init__, before any generation, naming the fix."""

import pytest
from datasets import Dataset
from trl import GRPOConfig

from zppo_trl.tiny import addition_dataset


def reward(completions, answer, **kwargs):
    return [0.0] * len(completions)


@pytest.mark.parametrize(
    "dataset, overrides, message",
    [
        (addition_dataset(8).rename_column("prompt", "question"), {}, r"no `prompt` column .* dataset.rename_column"),
        (addition_dataset(8).remove_columns("answer"), {}, r"needs dataset column\(s\) \['answer'\]"),
        (addition_dataset(8), {"teacher_column": "reference"}, "`teacher_column='reference'` is not a column"),
        (addition_dataset(8).add_column("prompt_id", [1, 2, 3, 3, 4, 5, 6, 7]), {}, r"duplicates, e.g. \[3\]"),
        (addition_dataset(8).add_column("prompt_id", [0.5] * 8), {}, "must be int or str, got float"),
        (addition_dataset(8), {"correctness_reward": "accuracy"}, r"the reward functions are \[.reward.\]"),
        (addition_dataset(8), {"correctness_reward": "3"}, "names no reward function"),
        (addition_dataset(8), {"remove_unused_columns": True}, "remove_unused_columns=False"),
    ],
)
def test_bad_inputs_raise_before_generation(make_trainer, dataset, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(reward, dataset=dataset, **overrides)


def test_no_reward_function(make_trainer):
    with pytest.raises(ValueError, match="`reward_funcs` is empty"):
        make_trainer([])


def test_an_iterable_dataset_is_refused(make_trainer):
    with pytest.raises(TypeError, match="map-style"):
        make_trainer(reward, dataset=addition_dataset(8).to_iterable_dataset())


def test_a_grpo_config_is_refused_with_the_fix(tokenizer, tmp_path):
    from zppo_trl import ZPPOTrainer
    from zppo_trl.tiny import build_tiny_llama

    with pytest.raises(TypeError, match="must be a ZPPOConfig"):
        ZPPOTrainer(build_tiny_llama(tokenizer), reward, args=GRPOConfig(str(tmp_path), use_cpu=True, bf16=False),
                    train_dataset=addition_dataset(8), processing_class=tokenizer)  # fmt: skip


def test_string_prompt_ids_and_string_prompts_work(make_trainer):
    data = addition_dataset(8, chat=False).add_column("prompt_id", [f"q{i}" for i in range(8)])
    trainer = make_trainer(reward, dataset=data, max_steps=1, hint_ratio=1.0)
    trainer.train()
    assert set(trainer.replay_buffer.ids()) <= {f"q{i}" for i in range(8)} and len(trainer.replay_buffer) == 2
    assert trainer.last_round["hints"] and trainer.last_round["hints"][0]["prompt"].startswith("What is")


def test_unaligned_save_steps_warn(make_trainer):
    with pytest.warns(UserWarning, match="save_steps=3"):
        make_trainer(reward, gradient_accumulation_steps=1, steps_per_generation=2, per_device_train_batch_size=4,
                     save_strategy="steps", save_steps=3)  # fmt: skip
