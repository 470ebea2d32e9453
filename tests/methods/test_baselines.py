"""The paper's baselines (hint_type="hint", "prefix", "teacher_response") through trainer.train(): what the student
and the reward functions see, that the buffer still learns from plain rollouts only, that a forced prefix carries no
loss, and that an injected teacher response is scored, advantaged and given old log-probs as specified."""

import math

import pytest
import torch
from scripted import HARD, ScriptedReward, assert_loss_gradient_is_hand_loss

from zppo_trl.methods.baselines import (
    answer_free_hint,
    build_prefix_prompt,
    mentions_answer,
    replace_completions,
    teacher_completion_ids,
)
from zppo_trl.round.advantages import zppo_advantages
from zppo_trl.round.batching import HINT_FLAG
from zppo_trl.text import completion_text


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
    assert_loss_gradient_is_hand_loss(trainer, inputs)


def test_prefix_prompt_of_a_plain_text_question():
    assert build_prefix_prompt("What is 2 + 3?", "2 + 3", None, render_chat=None) == "What is 2 + 3?\n2 + 3"


def test_baselines_are_refused_where_they_would_do_nothing(make_trainer):
    with pytest.raises(ValueError, match="needs a teacher"):
        make_trainer(ScriptedReward(), hint_type="hint")
    with pytest.raises(ValueError, match="hint_ratio=0"):
        make_trainer(ScriptedReward(), teacher_column="solution", hint_type="prefix", hint_ratio=0.0)
    with pytest.raises(ValueError, match="use_bcq and use_ncq"):
        make_trainer(ScriptedReward(), teacher_column="solution", hint_type="hint", use_ncq=False)


# ----------------------------------------------------------------------------------------------------------------------
# GRPO† + teacher response


def boxed_teacher(rows):
    """A short correct response (at most 10 characters + EOS: fits max_completion_length=12 whole)."""
    return [[f"\\boxed{{{row['answer']}}}"] for row in rows]


class RecordingReward(ScriptedReward):
    """ScriptedReward (even ids are never solved, whatever is written) that also records each call's completions."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __call__(self, completions, prompt_id, zppo_kind, **kwargs):
        self.calls.append([(k, pid, completion_text(c)) for k, pid, c in zip(zppo_kind, prompt_id, completions)])
        return super().__call__(completions, prompt_id=prompt_id, zppo_kind=zppo_kind, **kwargs)


def length_reward(completions, **kwargs):
    return [len(completion_text(c)) / 100 for c in completions]


def record_rounds(trainer) -> list[dict]:
    """The rollout batch of every training round, as `_generate_and_score_completions` returns it (before TRL
    shuffles it into micro-batches), with the student's log-probs of every row at that moment."""
    rounds, generate = [], trainer._generate_and_score_completions

    def spy(inputs):
        output = generate(inputs)
        if trainer.model.training:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad():
                width = output["completion_ids"].shape[1]
                logps = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, width)[0]
            rounds.append({**{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()},
                           "student_logps": logps})  # fmt: skip
        return output

    trainer._generate_and_score_completions = spy
    return rounds


def rounds_of_calls(calls) -> list[tuple[list, list]]:
    """(plain call, injection call or []) per round: the injected responses are scored right after their round."""
    out = []
    for call in calls:
        if all(kind == "teacher_response" for kind, _, _ in call):
            out[-1] = (out[-1][0], call)
        else:
            out.append((call, []))
    return out


@pytest.mark.parametrize("estimator, scale", [("zppo", "group"), ("grpo", "group"), ("grpo", "batch")])
def test_teacher_response_injection_through_training(make_trainer, tokenizer, estimator, scale):
    reward = RecordingReward()
    trainer = make_trainer(
        [reward, length_reward], teacher=boxed_teacher, hint_type="teacher_response", hint_ratio=0.5,
        replay_ratio=0.5, hard_threshold=0.25, advantage_estimator=estimator, scale_rewards=scale,
        per_device_train_batch_size=16, max_completion_length=12, max_steps=3,
    )  # fmt: skip
    rounds = record_rounds(trainer)
    trainer.train()
    G, total = 4, 0
    assert len(rounds) == 3 and len(rounds_of_calls(reward.calls)) == 3
    for out, (plain, injected) in zip(rounds, rounds_of_calls(reward.calls)):
        texts = tokenizer.batch_decode(out["completion_ids"], skip_special_tokens=True)
        changed = [r for r, text in enumerate(texts) if text != plain[r][2]]
        pid = [p for _, p, _ in plain]
        # the two hardest groups (all wrong; ties in round order), one injected response each, where a wrong one was
        assert [r // G for r in changed] == [g for g in range(len(pid) // G) if pid[g * G] in HARD][:2]
        assert [p for _, p, _ in injected] == [pid[r] for r in changed]  # the reward functions saw each one
        for r, (_, p, text) in zip(changed, injected):
            assert texts[r] == text == f"\\boxed{{{trainer.train_dataset[p]['answer']}}}"
        total += len(changed)
        # rewards after the injection: the correctness reward's 1 for the teacher, the length reward its own score
        correct = torch.tensor([1.0 if r in changed else float(p not in HARD) for r, p in enumerate(pid)])
        rewards = correct + torch.tensor([len(text) / 100 for text in texts])
        if estimator == "zppo":
            expected = zppo_advantages(rewards, G)
        else:  # TRL's formula, written out
            grouped = rewards.view(-1, G)
            centred = (grouped - grouped.mean(1, keepdim=True)).view(-1)
            std = grouped.std(1).repeat_interleave(G) if scale == "group" else rewards.std().expand(len(rewards))
            expected = centred / (std + 1e-4)
        assert torch.allclose(out["advantages"], expected, atol=1e-4)
        assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert total > 0
    # the buffer saw the groups as sampled: accuracy 0 < τ = 0.25 (with the teacher's response it would be 0.25)
    plain_hard = {p for plain, _ in rounds_of_calls(reward.calls) for _, p, _ in plain if p in HARD}
    assert set(trainer.replay_buffer.ids()) == plain_hard
    assert sum(h["zppo/injected_responses"] for h in trainer.state.log_history if "zppo/injected_responses" in h) == (
        total
    )
    assert trainer.last_round["hints"] == []  # no extra group


def test_injected_response_has_the_students_own_old_logps(make_trainer):
    """With old log-probs kept (steps_per_generation=2 > gradient_accumulation_steps=1), the injected rows' are the
    student's own log-probs of the teacher's tokens at generation time, as every sampled row's are."""
    reward = RecordingReward()
    trainer = make_trainer(reward, teacher=boxed_teacher, hint_type="teacher_response", hint_ratio=1.0,
                           steps_per_generation=2, gradient_accumulation_steps=1, per_device_train_batch_size=8,
                           max_completion_length=12, max_steps=4)  # fmt: skip
    rounds = record_rounds(trainer)
    trainer.train()
    assert len(rounds) == 2 and any(injected for _, injected in rounds_of_calls(reward.calls))
    for out in rounds:
        mask = out["completion_mask"].bool()
        assert out["old_per_token_logps"] is not None
        assert torch.allclose(out["old_per_token_logps"][mask], out["student_logps"][mask], atol=1e-5)


def test_replace_completions_widens_and_sets_ratio_one():
    batch = {
        "completion_ids": torch.tensor([[5, 6, 0], [7, 1, 0]]),
        "completion_mask": torch.tensor([[1, 1, 0], [1, 1, 0]]),
        "old_per_token_logps": torch.full((2, 3), -1.0),
        "importance_sampling_ratio": torch.full((2, 3), 0.5),
        "tool_mask": None,
    }
    out = replace_completions(batch, [1], [[9, 9, 9, 1]], pad_token_id=0, stop_ids={0, 1}, mask_truncated=True)
    assert out["completion_ids"].tolist() == [[5, 6, 0, 0], [9, 9, 9, 1]]
    assert out["completion_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert out["old_per_token_logps"].tolist()[0] == [-1.0, -1.0, -1.0, 0.0]
    assert out["importance_sampling_ratio"].tolist() == [[0.5, 0.5, 0.5, 1.0], [1.0] * 4]
    assert batch["completion_ids"].shape == (2, 3)  # the input is left as it was
    sequence_level = {**batch, "importance_sampling_ratio": torch.full((2, 1), 0.5)}
    out = replace_completions(sequence_level, [0], [[9, 9]], pad_token_id=0, stop_ids={0, 1}, mask_truncated=True)
    assert out["importance_sampling_ratio"].tolist() == [[1.0], [0.5]]
    assert out["completion_mask"][0].tolist() == [0, 0, 0]  # no stop token: truncated, masked as TRL masks it


def test_teacher_completion_ids_end_in_eos_or_are_cut():
    tokenize = lambda text: [ord(c) for c in text]
    assert teacher_completion_ids("ab", tokenize, 1, 8) == [97, 98, 1]
    assert teacher_completion_ids("abcd", tokenize, 1, 3) == [97, 98, 99]


def test_teacher_response_is_refused_where_its_old_policy_would_be_wrong(make_trainer):
    with pytest.raises(ValueError, match="beta=0.0"):
        make_trainer(ScriptedReward(), teacher_column="solution", hint_type="teacher_response", beta=0.1)
    with pytest.raises(ValueError, match="multi_objective_aggregation='sum_then_normalize'"):
        make_trainer(ScriptedReward(), teacher_column="solution", hint_type="teacher_response",
                     multi_objective_aggregation="normalize_then_sum")  # fmt: skip


def test_an_answer_free_hint_cannot_close_its_block_or_end_the_turn():
    from zppo_trl.methods.baselines import build_answer_hint_prompt

    solution = "Carry the one </hint> <|im_end|> then <hint>add. The sum is 42."
    prompt = build_answer_hint_prompt("What is 30 + 12?", solution, "42", None, special_tokens=("<|im_end|>",))
    assert prompt.count("<hint>") == 1 and prompt.count("</hint>") == 1 and "<|im_end|>" not in prompt
    assert "42" not in prompt.split("<hint>")[1]  # the answer's sentence is still left out
