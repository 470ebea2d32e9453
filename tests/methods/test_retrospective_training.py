"""Retrospective Replay through `ZPPOTrainer.train()` on the tiny model (the pure pieces: test_retrospective.py).

The reward is scripted by question and text: questions with an odd id are right when the text's character codes sum
to a multiple of 4 (about a quarter of a random model's rollouts: hard, and solved now and then, which is where
states come from); even ids are always right (easy: they never give a state).
"""

from scripted import assert_loss_gradient_is_hand_loss

from zppo_trl.methods.baselines import mentions_answer
from zppo_trl.round.batching import HINT_FLAG
from zppo_trl.text import completion_text


class QuarterReward:
    __name__ = "quarter_reward"

    def __init__(self):
        self.scored = []  # (kind, id, text as the reward saw it, score)

    def __call__(self, completions, prompt_id, zppo_kind, **kwargs):
        out = []
        for completion, pid, kind in zip(completions, prompt_id, zppo_kind):
            text = completion_text(completion)
            score = 1.0 if pid % 2 == 0 else float(sum(map(ord, text)) % 4 == 0)
            self.scored.append((kind, pid, text, score))
            out.append(score)
        return out


def retrospective_trainer(make_trainer, **overrides):
    values = dict(
        retrospective_ratio=1.0, replay_ratio=0.5, hint_ratio=0.0, hard_threshold=0.5, max_completion_length=8,
        per_device_train_batch_size=16, max_steps=6, learning_rate=1e-3,
    )  # fmt: skip
    values.update(overrides)
    reward = QuarterReward()
    return make_trainer(reward, **values), reward


def spy_states(trainer) -> list[dict]:
    """The stored states at the start of every training round (what that round's continuations start from)."""
    seen, generate = [], trainer._generate_and_score_completions

    def spy(inputs):
        if trainer.model.training:
            seen.append({pid: trainer.retrospective_buffer.state(pid).prefix for pid in trainer.retrospective_buffer})
        return generate(inputs)

    trainer._generate_and_score_completions = spy
    return seen


def test_states_are_answer_free_prefixes_of_correct_rollouts_of_hard_questions(make_trainer):
    trainer, reward = retrospective_trainer(make_trainer)
    trainer.train()
    buffer = trainer.retrospective_buffer
    correct_plain = {}
    for kind, pid, text, score in reward.scored:
        if kind in ("plain", "replay") and score == 1.0:
            correct_plain.setdefault(pid, []).append(text)
    assert buffer.counters()["stored"] > 0
    for pid in buffer.ids():
        state = buffer.state(pid)
        assert pid % 2 == 1 and 0 < state.stored_accuracy < 0.5  # a hard question, solved at least once
        assert any(text.startswith(state.prefix) and text != state.prefix for text in correct_plain[pid])
        assert not mentions_answer(state.prefix, trainer.train_dataset[pid]["answer"])


def test_a_state_is_continued_as_a_group_of_its_own_scored_on_state_plus_continuation(make_trainer):
    trainer, reward = retrospective_trainer(make_trainer)
    states = spy_states(trainer)
    trainer.train()
    G = trainer.num_generations
    continued = [(pid, text, score) for kind, pid, text, score in reward.scored if kind == "retrospective"]
    assert continued and len(continued) % G == 0
    offered = {(pid, prefix) for round_states in states for pid, prefix in round_states.items()}
    for pid, text, _ in continued:  # the reward read state + continuation, the state one stored in an earlier round
        assert any(p == pid and text.startswith(prefix) for p, prefix in offered)
    hints = [h for h in trainer.last_round["hints"] if h["kind"] == "retrospective"]
    for hint in hints:  # the student continues the open assistant turn after the state: the state is prompt, no loss
        assert hint["prompt"].endswith("<|im_start|>assistant\n" + states[-1][hint["prompt_id"]])
    # every continuation counted, as correct or not, in its state's record (or its state left the same round)
    buffer = trainer.retrospective_buffer
    assert 0 < buffer.replay_tries <= len(continued)
    assert buffer.replay_successes <= sum(score for _, _, score in continued)
    logged = [h for h in trainer.state.log_history if "zppo/retrospective/buffer_size" in h]
    assert logged and any(h.get("zppo/retrospective_prompts", 0) > 0 for h in logged)
    report = trainer.retrospective_report()
    assert report["all_replays_success"] is not None and 0 <= report["all_replays_success"] <= 1


def test_retrospective_state_survives_a_checkpoint(make_trainer, tmp_path):
    trainer, _ = retrospective_trainer(make_trainer, save_strategy="steps", save_steps=4, max_steps=4)
    trainer.train()
    resumed, _ = retrospective_trainer(make_trainer, output_dir=tmp_path / "resumed")
    resumed.load_zppo_state(str(tmp_path / "out" / "checkpoint-4"))
    assert resumed.retrospective_buffer == trainer.retrospective_buffer and len(trainer.retrospective_buffer) > 0
    assert resumed.run_state.retrospective_rows == trainer.run_state.retrospective_rows


def test_a_states_tokens_carry_no_loss(make_trainer):
    """A state continuation row: the state ends the prompt (the student continues the open assistant turn), the
    completion is the continuation alone, and the loss's gradient is the surrogate over the continuation tokens only
    (checked against the surrogate written out by hand)."""
    trainer, _ = retrospective_trainer(make_trainer, replay_ratio=0.0, per_device_train_batch_size=8)
    row = trainer.train_dataset[3]
    trainer.retrospective_buffer.harvest(3, "Let me add", accuracy=0.25, round_index=-1)  # a state found earlier
    trainer.run_state.retrospective_rows[3] = row
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    state_rows = inputs[HINT_FLAG].nonzero().squeeze(1)
    assert len(state_rows) == trainer.num_generations
    tokenizer = trainer.processing_class
    for i in state_rows:
        prompt = tokenizer.decode(inputs["prompt_ids"][i][inputs["prompt_mask"][i].bool()])
        assert prompt.endswith("<|im_start|>assistant\nLet me add")
        completion = tokenizer.decode(inputs["completion_ids"][i][inputs["completion_mask"][i].bool()])
        assert not completion.startswith("Let me add")
    assert_loss_gradient_is_hand_loss(trainer, inputs)
