"""`run_round` with a fake rollout and no model (tests/fakes.py): what a round plans, rolls out, learns and trains
on, read off its record, its state and the rows each pass was given."""

import torch
from fakes import FakeSeams

from zppo_trl import ZPPOConfig
from zppo_trl.prompts import BCQ_TEMPLATE
from zppo_trl.round.advantages import zppo_advantages
from zppo_trl.round.run import run_round
from zppo_trl.round.state import RunState
from zppo_trl.text import extract_boxed, prompt_text
from zppo_trl.tiny import addition_dataset

DATA = [dict(row) for row in addition_dataset(8)]  # prompt_id 0..7; even ids are the hard ones below


def student(prompt: str, sample: int) -> str:
    """Solves odd questions plain; even ones only with a BCQ hint, and then only its first sample copies the right
    candidate."""
    question = prompt.split("\n")[0]
    row = next(r for r in DATA if prompt_text(r["prompt"]) == question)
    if row["prompt_id"] % 2 or (BCQ_TEMPLATE in prompt and sample == 0):
        return row["solution"]
    return "I think it is \\boxed{0}."


def correct(row, text):
    return float(extract_boxed(text) == row["answer"])


def make(tmp_path, **overrides):
    values = dict(per_device_train_batch_size=8, num_generations=4, replay_ratio=0.5, hint_ratio=1.0,
                  use_cpu=True, bf16=False, report_to="none", seed=0)  # fmt: skip
    args = ZPPOConfig(str(tmp_path), **{**values, **overrides})
    teacher = lambda rows: [[row["solution"]] for row in rows]  # noqa: E731
    return args, FakeSeams(args, student, correct, teacher), RunState.new(args, 4)


def test_a_round_admits_hints_and_trains_on_the_hint_groups(tmp_path):
    args, seams, state = make(tmp_path)
    result = run_round([DATA[0], DATA[1]], state, seams)  # a hard and an easy question

    record = result.record
    assert record["admitted_ids"] == [0] and record["new"] == [0, 1] and record["replayed"] == []
    assert [h["kind"] for h in record["hints"]] == ["bcq", "ncq"] and state.rows == {0: DATA[0]}
    bcq = record["hints"][0]["prompt"][0]["content"]
    assert (
        DATA[0]["solution"] in bcq and "I think it is \\boxed{0}." in bcq
    )  # the teacher's whole, the student's wrong
    # two passes: the plain groups, then the hint groups, each row G times
    assert [len(p) for p in seams.passes] == [8, 8] and {r["zppo_kind"] for r in seams.passes[1]} == {"bcq", "ncq"}
    # advantages: only the BCQ group has variance (1 of 4 right), the paper's estimator over the whole round
    rewards = torch.tensor([0.0] * 4 + [1.0] * 4 + [1.0, 0.0, 0.0, 0.0] + [0.0] * 4)
    assert torch.allclose(result.output["advantages"], zppo_advantages(rewards, 4))
    assert result.output["zppo_has_variance"].tolist() == [False] * 8 + [True] * 4 + [False] * 4
    assert result.output["zppo_is_hint"].tolist() == [False] * 8 + [True] * 8
    assert seams.metrics["zppo/bcq_accuracy"] == [0.25] and state.round == 1


def test_the_next_round_replays_the_hard_question_and_it_graduates_only_plain(tmp_path):
    args, seams, state = make(tmp_path)
    run_round([DATA[0], DATA[1]], state, seams)
    result = run_round([DATA[2], DATA[3]], state, seams)
    assert result.record["replayed"] == [0]  # ratio 0.5 x 2 new prompts: one replay, drawn from the buffer
    assert set(state.buffer.ids()) == {0, 2}  # hinted rollouts never graduate a question: only plain ones could
    assert state.buffer.total_graduated == 0 and result.record["graduated_ids"] == []


def test_without_a_teacher_only_ncq_and_with_hints_off_grpo_with_the_buffer(tmp_path):
    args, seams, state = make(tmp_path)
    seams.teacher = None
    record = run_round([DATA[0], DATA[1]], state, seams).record
    assert [h["kind"] for h in record["hints"]] == ["ncq"]
    args, seams, state = make(tmp_path, hint_ratio=0.0)
    result = run_round([DATA[0], DATA[1]], state, seams)
    assert result.record["hints"] == [] and len(seams.passes) == 1 and result.record["admitted_ids"] == [0]


def test_next_round_rolls_the_hints_out_with_the_next_plain_prompts_in_one_pass(tmp_path):
    args, seams, state = make(tmp_path, hint_schedule="next_round")
    first = run_round([DATA[0], DATA[1]], state, seams)
    # round 0: the hints are planned from its plain rollouts but not rolled out: one pass, plain rows only
    assert len(seams.passes) == 1 and first.record["hints"] == []
    assert [kind for kind, _ in state.pending] == ["bcq", "ncq"] and first.record["pending"][0]["prompt_id"] == 0
    assert not first.output["zppo_is_hint"].any() and seams.metrics["zppo/bcq_prompts"] == [0.0]

    second = run_round([DATA[2], DATA[3]], state, seams)
    # round 1: one pass holds its plain groups (2 new + 1 replay) and last round's two hint groups, fresh samples
    assert len(seams.passes) == 2 and len(seams.passes[1]) == (3 + 2) * 4
    assert [r["zppo_kind"] for r in seams.passes[1][::4]] == ["plain", "plain", "replay", "bcq", "ncq"]
    assert [h["kind"] for h in second.record["hints"]] == ["bcq", "ncq"]
    assert second.output["zppo_is_hint"].tolist() == [False] * 12 + [True] * 8
    # scored against the original gold, trained with the round (the BCQ group: 1 right of 4), never a plain visit
    rewards = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0, 0.0, 0.0, 0.0] + [0.0] * 4)
    assert torch.allclose(second.output["advantages"], zppo_advantages(rewards, 4))
    assert state.buffer.ids() == [0, 2] and seams.metrics["zppo/bcq_accuracy"][-1] == 0.25
    # for round 2: the hardest question's BCQ and NCQ (hint_ratio 1.0 x 2 new prompts = 2 slots; q2 is new, q0 a
    # replay, both 0/4: the tie goes to the round's first group)
    assert [(kind, row["prompt_id"]) for kind, row in state.pending] == [("bcq", 2), ("ncq", 2)]


def test_next_round_rolls_a_text_row_of_another_form_apart(tmp_path):
    args, seams, state = make(tmp_path, hint_schedule="next_round")
    text_row = {**DATA[2], "prompt": prompt_text(DATA[2]["prompt"]) + "\nSo far:", "zppo_kind": "retrospective"}
    state.pending = [("retrospective", text_row)]
    run_round([DATA[0], DATA[1]], state, seams)
    # the chat plain rows and the rendered-text row cannot share TRL's pass: two passes, the text one apart
    assert [len(p) for p in seams.passes] == [8, 4] and seams.passes[1][0]["zppo_kind"] == "retrospective"
