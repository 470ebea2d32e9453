"""Configuration and data-shape faults raise in ZPPOTrainer.__init__, before any generation, naming the fix."""

import pytest
import torch
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
        (
            addition_dataset(8, ids=False).add_column("prompt_id", [1, 2, 3, 3, 4, 5, 6, 7]),
            {},
            r"duplicates, e.g. \[3\]",
        ),
        (addition_dataset(8, ids=False).add_column("prompt_id", [0.5] * 8), {}, "must be int or str, got float"),
        (addition_dataset(8), {"correctness_reward": "accuracy"}, r"the reward functions are \[.reward.\]"),
        (addition_dataset(8), {"correctness_reward": "3"}, "names no reward function"),
        (addition_dataset(8), {"remove_unused_columns": True}, "remove_unused_columns=False"),
    ],
)
def test_bad_inputs_raise_before_generation(make_trainer, dataset, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(reward, dataset=dataset, **overrides)


def test_multimodal_datasets_are_refused_at_construction(make_trainer):
    with pytest.raises(ValueError, match=r"multimodal column\(s\) \['image'\]"):
        make_trainer(reward, dataset=addition_dataset(8).add_column("image", [None] * 8))


def test_vllm_context_too_short_for_a_hint_prompt_is_refused():
    from zppo_trl import ZPPOConfig
    from zppo_trl.validation import check_vllm_lengths

    args = ZPPOConfig("out", use_cpu=True, bf16=False, use_vllm=True, vllm_max_model_length=4096,
                      hint_prompt_max_tokens=4096, max_completion_length=256)  # fmt: skip
    with pytest.raises(ValueError, match=r"\(4096\) \+ chat template \(30\) \+ max_completion_length \(256\) = 4382"):
        check_vllm_lengths(args, template_overhead=30)
    check_vllm_lengths(ZPPOConfig("out", use_cpu=True, bf16=False, use_vllm=True, vllm_max_model_length=8192), 30)


def test_a_grpo_config_is_refused_with_the_fix(tokenizer, tmp_path):
    from zppo_trl import ZPPOTrainer
    from zppo_trl.tiny import build_tiny_llama

    with pytest.raises(TypeError, match="must be a ZPPOConfig"):
        ZPPOTrainer(build_tiny_llama(tokenizer), reward, args=GRPOConfig(str(tmp_path), use_cpu=True, bf16=False),
                    train_dataset=addition_dataset(8), processing_class=tokenizer)  # fmt: skip


def test_string_prompt_ids_and_string_prompts_work(make_trainer):
    data = addition_dataset(8, chat=False, ids=False).add_column("prompt_id", [f"q{i}" for i in range(8)])
    trainer = make_trainer(reward, dataset=data, max_steps=1, hint_ratio=1.0)
    trainer.train()
    assert set(trainer.replay_buffer.ids()) <= {f"q{i}" for i in range(8)} and len(trainer.replay_buffer) == 2
    assert trainer.last_round["hints"] and trainer.last_round["hints"][0]["prompt"].startswith("What is")


def test_unaligned_save_steps_warn(make_trainer):
    with pytest.warns(UserWarning, match="save_steps=3"):
        make_trainer(reward, gradient_accumulation_steps=1, steps_per_generation=2, per_device_train_batch_size=4,
                     save_strategy="steps", save_steps=3)  # fmt: skip


def test_unhashable_prompt_ids_are_refused(make_trainer):
    with pytest.raises(ValueError, match="must be int or str, got list"):
        make_trainer(reward, dataset=addition_dataset(8, ids=False).add_column("prompt_id", [[i] for i in range(8)]))


# ---- per-question runtime faults: degrade that question only, counted, never stop the run


def test_rewards_with_none_and_nan_for_some_rows_do_not_stop_the_run(make_trainer):
    seen = set()

    def flaky(completions, prompt_id, **kwargs):  # ids 1, 5: unscorable (None); ids 3, 7: NaN; others: 0 or 1
        seen.update(prompt_id)
        scores = {1: None, 5: None, 3: float("nan"), 7: float("nan")}
        # the other questions are right on every fourth row: hard (admitted), and their groups carry a gradient
        return [scores.get(pid, float(i % 4 == 0)) for i, pid in enumerate(prompt_id)]

    trainer = make_trainer(flaky, max_steps=6, hint_ratio=1.0)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert seen & {1, 3, 5, 7}, "the test needs a faulty question to be visited"
    assert not {1, 3, 5, 7} & set(trainer.replay_buffer.ids()) and len(trainer.replay_buffer) > 0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(torch.isfinite(torch.tensor(losses))) and any(loss != 0 for loss in losses)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))


def test_empty_teacher_column_rows_get_ncq_only_and_are_counted(make_trainer):
    data = addition_dataset(16)
    data = data.map(lambda row, i: {"solution": "" if i % 4 == 0 else row["solution"]}, with_indices=True)
    trainer = make_trainer(reward, dataset=data, teacher_column="solution", hint_ratio=1.0, max_steps=4)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "zppo/teacher_failures" in h]
    assert sum(h["zppo/teacher_failures"] for h in logs) > 0 and sum(h["zppo/bcq_prompts"] for h in logs) > 0


def test_a_teacher_returning_non_strings_warns_once_and_degrades(make_trainer):
    calls = []

    def odd_teacher(rows):
        calls.append(len(rows))
        return [[42, None] for _ in rows]

    trainer = make_trainer(reward, teacher=odd_teacher, hint_ratio=1.0, max_steps=3)
    with pytest.warns(UserWarning, match="non-string") as record:
        trainer.train()
    assert len([w for w in record if "teacher fault" in str(w.message)]) == 1 and len(calls) == 3
    assert trainer.last_round["hints"] and {h["kind"] for h in trainer.last_round["hints"]} == {"ncq"}


def test_a_wrong_version_buffer_state_is_refused_on_resume(make_trainer, tmp_path):
    import json

    from zppo_trl.round.state import STATE_FILE_NAME

    trainer = make_trainer(reward, max_steps=2, save_strategy="steps", save_steps=2, output_dir=str(tmp_path / "a"))
    trainer.train()
    path = tmp_path / "a" / "checkpoint-2" / STATE_FILE_NAME
    document = json.loads(path.read_text())
    document["schema_version"] = 99
    path.write_text(json.dumps(document))
    again = make_trainer(reward, max_steps=4, output_dir=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="schema_version=99"):
        again.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    path.unlink()
    with pytest.raises(ValueError, match="is missing"):
        again.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))


def test_a_buffer_state_from_another_step_is_refused(make_trainer, tmp_path):
    from zppo_trl.round.state import STATE_FILE_NAME, read_state_file, write_state_file

    trainer = make_trainer(reward, max_steps=2, save_strategy="steps", save_steps=2, output_dir=str(tmp_path / "a"))
    trainer.train()
    path = str(tmp_path / "a" / "checkpoint-2" / STATE_FILE_NAME)
    write_state_file(path, {**read_state_file(path), "global_step": 3})  # intact file, wrong checkpoint
    with pytest.raises(ValueError, match="saved at step 3 but sits in the checkpoint of step 2"):
        make_trainer(reward, max_steps=4).train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))


def test_a_run_without_a_teacher_says_once_that_bcq_is_off(make_trainer, recwarn):
    import warnings

    for overrides, said in ((dict(), True), (dict(teacher_column="solution"), False), (dict(use_bcq=False), False),
                            (dict(hint_ratio=0.0), False)):  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_trainer(reward, **overrides)
        assert any("BCQ prompts" in str(w.message) and "are off" in str(w.message) for w in caught) is said, overrides


def test_the_progress_bar_shows_each_rounds_hints_buffer_and_teacher_calls(make_trainer):
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    seen = []

    class ReadBar(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            bar = next(c.training_bar for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback))
            seen.append(dict(bar.postfix and [kv.split("=") for kv in bar.postfix.split(", ")] or []))

    trainer = make_trainer(reward, teacher_column="solution", hint_ratio=1.0, max_steps=2, disable_tqdm=False)
    trainer.add_callback(ReadBar())
    trainer.train()
    assert seen[-1]["teacher_calls"] == "2" and int(seen[-1]["hints"]) > 0 and "buffer" in seen[-1]
