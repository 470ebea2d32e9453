"""The paper's baselines (hint_type="hint", "prefix") through trainer.train(): what the student and the reward
functions see, that the buffer still learns from plain rollouts only, and that a forced prefix carries no loss."""

import math

import pytest
import torch
from scripted import HARD, ScriptedReward, grads, hand_loss

from zppo_trl.baselines import answer_free_hint, build_prefix_prompt, mentions_answer
from zppo_trl.batching import HINT_FLAG
from zppo_trl.prompts import completion_text


def expected_prefix(row) -> str:
    """The Prefix baseline's prefix of `worked_teacher`'s solution: 40% of its tokens (the tiny tokenizer has one
    token per character), rounded up."""
    solution = worked_teacher([row])[0][0]
    return solution[: math.ceil(0.4 * len(solution))]


def worked_teacher(rows):
    """A reference solution whose last two sentences state the answer, like GSM8K's."""
    out = []
    for row in rows:
        a, b = row["prompt"][0]["content"].removeprefix("What is ").removesuffix("?").split(" + ")
        out.append([f"Add the tens first, then the ones. {a} + {b} = {row['answer']}. The answer is "
                    f"\\boxed{{{row['answer']}}}."])  # fmt: skip
    return out


@pytest.mark.parametrize(
    "text, answer, expected",
    [("so 7 + 1 = 8.", "8", True), ("we have 18 apples", "8", False), ("8.5 kg", "8", False),
     ("\\boxed{8}", "8", True), ("x = \\frac{1}{2}", "\\frac{1}{2}", True), ("nothing", "8", False)],
)  # fmt: skip
def test_mentions_answer(text, answer, expected):
    assert mentions_answer(text, answer) is expected


def test_answer_free_hint_drops_every_sentence_with_the_answer():
    assert answer_free_hint("Count the legs. Each cat has 4. So 3 cats have 12.\nThe answer is 12.", "12") == (
        "Count the legs. Each cat has 4."
    )
    assert answer_free_hint("7 + 1 = 8. The answer is \\boxed{8}.", "8") is None  # nothing left: no hint


def test_hint_baseline_through_training(make_trainer):
    reward = ScriptedReward()
    trainer = make_trainer(reward, teacher=worked_teacher, hint_type="hint", hint_ratio=1.0, replay_ratio=0.5,
                           max_steps=3)  # fmt: skip
    trainer.train()
    hints = [r for r in reward.rows if r["kind"] == "hint"]
    assert hints and not reward.ids("bcq", "ncq")
    for row in hints:
        original = trainer.train_dataset[row["id"]]
        block = row["prompt"][row["prompt"].index("<hint>") : row["prompt"].index("</hint>")]
        assert row["answer"] == original["answer"] and "Add the tens first, then the ones." in block
        assert not mentions_answer(block, original["answer"])  # the gold answer is in no hint
    assert set(trainer.replay_buffer.ids()) == reward.ids("plain") & HARD  # plain rollouts only
    logs = [h for h in trainer.state.log_history if "zppo/hint_prompts" in h]
    assert sum(h["zppo/hint_prompts"] for h in logs) == len({(r["step"], r["id"]) for r in hints})


def test_a_hint_with_nothing_left_is_not_built_and_counted(make_trainer):
    reward = ScriptedReward()
    trainer = make_trainer(reward, teacher_column="solution", hint_type="hint", hint_ratio=1.0, max_steps=2)
    trainer.train()  # the tiny set's solutions are "a + b = c. The answer is \\boxed{c}.": every sentence has c
    assert not reward.ids("hint")
    assert sum(h["zppo/hints_not_built"] for h in trainer.state.log_history if "zppo/hints_not_built" in h) > 0


def test_prefix_baseline_rewards_see_prefix_and_continuation(make_trainer):
    seen = []

    def recording_reward(completions, zppo_kind, prompt_id, **kwargs):
        seen.extend(zip(zppo_kind, prompt_id, completions))
        return [float(pid not in HARD) for pid in prompt_id]

    trainer = make_trainer(recording_reward, teacher=worked_teacher, hint_type="prefix", hint_ratio=1.0,
                           max_steps=2)  # fmt: skip
    trainer.train()
    prefixed = [(pid, c) for kind, pid, c in seen if kind == "prefix"]
    assert prefixed and all(isinstance(c, list) and c[0]["role"] == "assistant" for _, c in prefixed)  # chat shape
    rows = {pid: trainer.train_dataset[pid] for pid, _ in prefixed}
    assert all(completion_text(c).startswith(expected_prefix(rows[pid])) for pid, c in prefixed)
    for hint in trainer.last_round["hints"]:  # the student continues the open assistant turn after the prefix
        row = trainer.train_dataset[hint["prompt_id"]]
        assert hint["prompt"].endswith("<|im_start|>assistant\n" + expected_prefix(row))


def test_prefix_tokens_carry_no_loss(make_trainer, monkeypatch):
    """The prefix is prompt the student continues: the loss and its gradient are the surrogate over the continuation
    tokens only (checked on gradients against the surrogate written out by hand)."""
    trainer = make_trainer(lambda completions, prompt_id, **kw: [float(i % 4 == 0) for i in range(len(prompt_id))],
                           teacher=worked_teacher, hint_type="prefix", hint_ratio=1.0, replay_ratio=0.0,
                           per_device_train_batch_size=8)  # fmt: skip
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    prefix_rows = inputs[HINT_FLAG].nonzero().squeeze(1)
    assert len(prefix_rows) > 0
    tokenizer = trainer.processing_class
    for i in prefix_rows:  # the prefix ends the prompt; the completion is the continuation alone
        prompt = tokenizer.decode(inputs["prompt_ids"][i][inputs["prompt_mask"][i].bool()])
        assert "<|im_start|>assistant\nAdd the tens first, then" in prompt and not prompt.endswith("<|im_end|>")
    model = trainer.model
    model.zero_grad()
    trainer.compute_loss(model, inputs).backward()
    trained = grads(model)
    model.zero_grad()
    everything = torch.arange(inputs["prompt_ids"].shape[0])
    hand_loss(model, inputs, everything, inputs["num_items_in_batch"])[1].backward()
    for name, grad in grads(model).items():
        assert torch.allclose(trained[name], grad, rtol=1e-4, atol=1e-7), name


def test_prefix_prompt_of_a_plain_text_question():
    assert build_prefix_prompt("What is 2 + 3?", "2 + 3", None, render_chat=None) == "What is 2 + 3?\n2 + 3"


def test_baselines_are_refused_where_they_would_do_nothing(make_trainer):
    with pytest.raises(ValueError, match="needs a teacher"):
        make_trainer(ScriptedReward(), hint_type="hint")
    with pytest.raises(ValueError, match="hint_ratio=0"):
        make_trainer(ScriptedReward(), teacher_column="solution", hint_type="prefix", hint_ratio=0.0)
    with pytest.raises(ValueError, match="use_bcq and use_ncq"):
        make_trainer(ScriptedReward(), teacher_column="solution", hint_type="hint", use_ncq=False)
