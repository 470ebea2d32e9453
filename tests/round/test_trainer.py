"""ZPPOTrainer end to end through `trainer.train()` on a tiny random model (CPU, offline).

The rewards are scripted per question (always 0 for "hard" ones, always 1 for "easy" ones) so that what the buffer
must hold can be worked out by hand, whatever the random model writes.
"""

import inspect
import json
import os

import pytest
import torch
from scripted import HARD, ScriptedReward
from trl import GRPOTrainer

from zppo_trl import BCQ_TEMPLATE, ZPPOTrainer
from zppo_trl.round.advantages import zppo_advantages
from zppo_trl.round.loss import _MULTIMODAL_FORWARD_KWARGS
from zppo_trl.round.state import STATE_FILE_NAME, read_state_file
from zppo_trl.text import prompt_text


def test_hard_questions_are_buffered_replayed_and_hinted(make_trainer):
    reward = ScriptedReward()
    trainer = make_trainer(reward, teacher_column="solution", hint_ratio=1.0, replay_ratio=0.5, max_steps=4)
    trainer.train()
    dataset = trainer.train_dataset

    seen_plain = reward.ids("plain")
    assert set(trainer.replay_buffer.ids()) == seen_plain & HARD  # exactly the hard ones seen, never an easy one
    assert not (set(trainer.replay_buffer.ids()) - HARD)

    # replay with no lag: round t replays only questions admitted in rounds < t, and each round replays one
    for step in range(1, 4):
        replayed = reward.ids("replay", step=step)
        assert len(replayed) == 1
        admitted_before = {r["id"] for r in reward.rows if r["kind"] in ("plain", "replay") and r["step"] < step}
        assert replayed <= admitted_before & HARD

    bcq = [r for r in reward.rows if r["kind"] == "bcq"]
    ncq = [r for r in reward.rows if r["kind"] == "ncq"]
    assert bcq and ncq
    for row in bcq + ncq:
        original = dataset[row["id"]]
        assert row["id"] in HARD
        assert row["answer"] == original["answer"]  # scored against the original gold answer
        assert row["prompt"].startswith(original["prompt"][0]["content"])  # the question comes first
    for row in bcq:
        assert BCQ_TEMPLATE in row["prompt"]
        # two candidate blocks (the template sentence itself names the tags once, inline)
        assert row["prompt"].count("\n<candidate>\n") == 2 and row["prompt"].count("\n</candidate>") == 2
        # the teacher's reference is a candidate, whole: its own question's solution, reasoning included
        solution, candidates = dataset[row["id"]]["solution"], prompt_text(row["prompt"]).split("<candidate>\n")[1:]
        assert solution in [c.split("\n</candidate>")[0] for c in candidates]
    for row in ncq:
        assert "The following answers are all WRONG:" in row["prompt"]
        assert dataset[row["id"]]["solution"] not in row["prompt"]  # NCQ never shows a teacher text
        assert row["prompt"].count("\n<candidate>\n") >= 1

    logs = [h for h in trainer.state.log_history if "zppo/buffer_size" in h]
    assert sum(h["zppo/bcq_prompts"] for h in logs) > 0 and sum(h["zppo/ncq_prompts"] for h in logs) > 0
    assert logs[-1]["zppo/total_admitted"] == len(trainer.replay_buffer)
    assert logs[-1]["zppo/total_admitted_bin_0"] == len(trainer.replay_buffer)  # all admitted at 0/4
    # hint rollouts are scored (0 here: hard questions stay unsolved) and logged separately from plain ones
    assert all(h["zppo/bcq_accuracy"] == 0.0 for h in logs if h["zppo/bcq_prompts"] > 0)
    assert "zppo/hint/reward" in logs[0]

    # the final state is written next to the model
    payload = read_state_file(os.path.join(trainer.args.output_dir, STATE_FILE_NAME))
    assert payload["buffer"] == trainer.replay_buffer.state_dict()


def test_a_solved_hard_question_graduates_on_its_next_plain_visit(make_trainer):
    reward = ScriptedReward(flip_at_step=2)
    trainer = make_trainer(reward, replay_ratio=1.0, max_steps=4, hint_ratio=0.0)
    trainer.train()

    admitted = {r["id"] for r in reward.rows if r["kind"] in ("plain", "replay") and r["step"] < 2} & HARD
    revisited = {r["id"] for r in reward.rows if r["kind"] in ("plain", "replay") and r["step"] >= 2}
    buffer = trainer.replay_buffer
    assert admitted & revisited, "the test needs at least one hard question revisited after the flip"
    assert buffer.total_graduated == len(admitted & revisited)
    assert set(buffer.ids()) == admitted - revisited
    assert buffer.total_admitted == buffer.total_graduated + buffer.total_evicted + len(buffer)


def test_unscorable_questions_are_neither_admitted_nor_graduated(make_trainer):
    reward = ScriptedReward(unscorable={0, 2, 4, 6})
    trainer = make_trainer(reward, max_steps=4, hint_ratio=0.0)
    trainer.train()
    assert reward.ids("plain") & {0, 2, 4, 6}, "the test needs an unscorable question to be visited"
    assert not set(trainer.replay_buffer.ids()) & {0, 2, 4, 6}


def test_a_failing_teacher_degrades_to_ncq_and_is_counted(make_trainer):
    def broken_teacher(rows):
        raise RuntimeError("teacher server down")

    reward = ScriptedReward()
    trainer = make_trainer(reward, teacher=broken_teacher, hint_ratio=1.0, max_steps=3)
    with pytest.warns(UserWarning, match="teacher server down"):
        trainer.train()
    logs = [h for h in trainer.state.log_history if "zppo/teacher_failures" in h]
    assert sum(h["zppo/teacher_failures"] for h in logs) > 0
    assert reward.ids("ncq") and not reward.ids("bcq")


def test_resume_restores_the_buffer_and_ends_like_an_uninterrupted_run(make_trainer, tmp_path):
    def run(output_dir, resume=None):
        reward = ScriptedReward(flip_at_step=3)
        trainer = make_trainer(
            reward, teacher_column="solution", hint_ratio=0.5, replay_ratio=0.5, max_steps=5,
            save_strategy="steps", save_steps=2, output_dir=str(output_dir),
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-2"
    saved = read_state_file(str(checkpoint / STATE_FILE_NAME))
    assert saved["global_step"] == 2 and saved["round"] == 2
    resumed = run(tmp_path / "resumed", resume=str(checkpoint))
    assert resumed.replay_buffer.state_dict() == full.replay_buffer.state_dict()
    assert resumed.run_state.round == full.run_state.round == 5
    assert full.replay_buffer.total_graduated > 0  # the flip at step 3 happens after the resume point


def test_resume_refuses_a_corrupted_buffer_state_before_generating(make_trainer, tmp_path):
    reward = ScriptedReward()
    trainer = make_trainer(reward, max_steps=2, save_strategy="steps", save_steps=2, output_dir=str(tmp_path / "a"))
    trainer.train()
    state = tmp_path / "a" / "checkpoint-2" / STATE_FILE_NAME
    document = json.loads(state.read_text())
    document["payload"]["buffer"]["total_admitted"] += 1  # tampered: checksum no longer matches
    state.write_text(json.dumps(document))

    reward = ScriptedReward()
    again = make_trainer(reward, max_steps=4, output_dir=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="checksum"):
        again.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert reward.rows == []  # nothing was generated


def test_lora_adapters_train(make_trainer, tokenizer):
    from peft import LoraConfig

    def digit_share(completions, **kwargs):  # dense reward: groups have variance, so gradients flow
        return [sum(c.isdigit() for c in prompt_text(x)) / max(1, len(prompt_text(x))) for x in completions]

    trainer = make_trainer(
        [ScriptedReward(), digit_share], teacher_column="solution", max_steps=2,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )  # fmt: skip
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and all("lora" in n for n in before)
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("lora_B" in n for n in changed), "no LoRA B matrix moved"


def test_zppo_advantages_in_a_real_round(make_trainer):
    """The round's advantages follow the paper's formula: 0 for trivial groups, Norm w/o Zero for the others."""
    scripted = ScriptedReward()

    def noisy(completions, prompt_id, **kwargs):  # odd ids get a completion-dependent reward (non-trivial groups)
        return [(len(prompt_text(c)) % 3) / 2.0 if pid % 2 else 0.0 for c, pid in zip(completions, prompt_id)]

    noisy.__name__ = "noisy"
    trainer = make_trainer(
        [scripted, noisy], replay_ratio=0.0, hint_ratio=0.0, per_device_train_batch_size=16, max_completion_length=12
    )
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    output = trainer._generate_and_score_completions(batch)

    rewards = trainer.round_seams.latest_rewards.sum(dim=1)
    expected = zppo_advantages(rewards, 4)
    assert torch.allclose(output["advantages"], expected, atol=1e-5)
    grouped, adv = rewards.view(-1, 4), output["advantages"].view(-1, 4)
    trivial = grouped.max(1).values == grouped.min(1).values
    assert trivial.any() and (~trivial).any(), "the test needs both kinds of group"
    assert torch.all(adv[trivial] == 0)
    centred = (grouped - grouped.mean(1, keepdim=True))[~trivial]
    assert torch.allclose(adv[~trivial], (centred - centred.mean()) / (centred.std(unbiased=False) + 1e-6), atol=1e-5)


def test_grpo_estimator_keeps_trls_advantages(make_trainer):
    def noisy(completions, **kwargs):
        return [(len(prompt_text(c)) % 3) / 2.0 for c in completions]

    trainer = make_trainer(noisy, advantage_estimator="grpo", replay_ratio=0.0, hint_ratio=0.0)
    trainer.model.train()
    output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    rewards = trainer.round_seams.latest_rewards[:, 0].view(-1, 4)
    expected = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(output["advantages"], expected.view(-1), atol=1e-4)


def test_gradient_accumulation_and_steps_per_generation(make_trainer):
    reward = ScriptedReward()
    trainer = make_trainer(
        reward, teacher_column="solution", gradient_accumulation_steps=2, per_device_train_batch_size=4,
        hint_ratio=0.5, max_steps=3,
    )  # fmt: skip
    assert trainer.args.steps_per_generation == 2
    trainer.train()
    # one round per optimizer step: 2 new prompts (2 micro-batches x 4 rows / 4 generations) + 1 replay from round 1
    assert len(reward.ids("plain", step=0)) == 2 and len(reward.ids("replay", step=1)) == 1
    assert reward.ids("bcq") and set(trainer.replay_buffer.ids()) == reward.ids("plain") & HARD


def digit_share(completions, **kwargs):  # dense: every group has variance, so every loss type has a gradient
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in (prompt_text(c) for c in completions)]


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo", "bnpo"])
def test_trl_loss_types_train_with_zppo(make_trainer, loss_type):
    reward = ScriptedReward()
    trainer = make_trainer([reward, digit_share], loss_type=loss_type, teacher_column="solution", hint_ratio=1.0,
                           max_steps=2)  # fmt: skip
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert reward.ids("bcq")
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not unchanged, f"{loss_type}: parameters not trained: {unchanged[:3]}"


def test_evaluation_never_touches_the_buffer(make_trainer):
    from zppo_trl.tiny import addition_dataset

    reward = ScriptedReward()
    trainer = make_trainer(reward, per_device_eval_batch_size=8, eval_dataset=addition_dataset(8, seed=1))
    trainer.evaluate()
    assert len(trainer.replay_buffer) == 0 and trainer.run_state.round == 0
    assert reward.rows and {r["kind"] for r in reward.rows} == {"plain"}


def test_answer_format_instruction_reaches_plain_and_hint_prompts(make_trainer):
    reward = ScriptedReward()
    trainer = make_trainer(reward, answer_format_instruction="paper", teacher_column="solution", hint_ratio=1.0)
    trainer.train()
    from zppo_trl import ANSWER_FORMAT_INSTRUCTION

    assert {r["kind"] for r in reward.rows} >= {"plain", "bcq"}
    assert all(r["prompt"].endswith(ANSWER_FORMAT_INSTRUCTION) for r in reward.rows)


# The trainer wraps these GRPOTrainer methods; a TRL release that changes one must fail here, loudly.
WRAPPED = {
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["self", "inputs"],
    "_prepare_inputs": ["self", "generation_batch"],
    "_get_per_token_logps_and_entropies": [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
        "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
        "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
    ],
    "compute_loss": ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    "log": ["self", "logs", "start_time"],
    "save_model": ["self", "output_dir", "_internal_call"],
    "train": ["self", "resume_from_checkpoint", "trial", "ignore_keys_for_eval"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_wrapped_trl_methods_keep_their_signature(name):
    params = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
    assert params == WRAPPED[name], (
        f"trl.GRPOTrainer.{name} now takes {params}, ZPPOTrainer was written for {WRAPPED[name]}: "
        "update zppo_trl/trainer.py and the trl pin"
    )
    # wrapped by the trainer or one of its mixins (those before GRPOTrainer in the MRO)
    mro = ZPPOTrainer.__mro__
    assert any(name in cls.__dict__ for cls in mro[: mro.index(GRPOTrainer)])


def test_the_split_forward_knows_every_image_input_of_trls_forward():
    """The split forward declines to split (one forward, as TRL) when any image input is given; an image argument
    TRL adds later must be added to that list, or a multimodal micro-batch would be split."""
    params = list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)
    not_images = {"self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
                  "compute_aux_loss"}  # fmt: skip
    assert set(params) - not_images == set(_MULTIMODAL_FORWARD_KWARGS)


def test_split_forward_of_a_mixed_micro_batch_matches_one_forward(make_trainer, tokenizer):
    """Plain and hint rows run as two trimmed forwards: same log-probs as one padded forward."""
    trainer = make_trainer(ScriptedReward())
    model = trainer.model.eval()
    short = tokenizer(["ab", "cd"], add_special_tokens=False)["input_ids"]
    long = tokenizer(["a much longer hint prompt"], add_special_tokens=False)["input_ids"]
    width, completion = len(long[0]), [5, 6, 7]
    rows = [[tokenizer.pad_token_id] * (width - len(p)) + p + completion for p in short + long]
    input_ids = torch.tensor(rows)
    attention_mask = (input_ids != tokenizer.pad_token_id).long()
    flags = torch.tensor([False, False, True])
    with torch.no_grad():
        whole, whole_entropy, _ = trainer._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, 3, compute_entropy=True
        )
        trainer._micro_batch_hint_flags = flags
        split, split_entropy, _ = trainer._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, 3, compute_entropy=True
        )
        trainer._micro_batch_hint_flags = None
    assert torch.allclose(whole, split, atol=1e-4) and torch.allclose(whole_entropy, split_entropy, atol=1e-4)


def test_same_seed_same_buffer_states_and_hint_prompts(make_trainer, tmp_path):
    from transformers import TrainerCallback

    def run(output_dir):
        class Record(TrainerCallback):
            rounds = []

            def on_step_end(self, args, state, control, **kwargs):
                self.rounds.append((trainer.replay_buffer.state_dict(), trainer.last_round))

        def half_reward(completions, prompt_id, **kwargs):  # depends on the sampled text: hints carry real rollouts
            return [float(pid % 2 == 1 and "1" in prompt_text(c)) for c, pid in zip(completions, prompt_id)]

        record = Record()
        trainer = make_trainer(half_reward, teacher_column="solution", hint_ratio=1.0, replay_ratio=0.5, max_steps=4,
                               output_dir=str(output_dir))  # fmt: skip
        trainer.add_callback(record)
        trainer.train()
        return record.rounds

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert len(first) == 4 and first == second
    assert any(r[1]["hints"] for r in first)
