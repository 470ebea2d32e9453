"""The CPU demo's pieces: the seeded task families, the buffer's graduation log and the end-of-run report (through
`trainer.train()` on the tiny model with a controlled reward)."""

import pytest
from datasets import Dataset

from zppo_trl.buffers.hard import Graduation, HardQuestionBuffer
from zppo_trl.callbacks import BufferReportCallback, summary_lines
from zppo_trl.demo_tasks import DEMO_MIX, FAMILIES, generate, load_demo_tasks
from zppo_trl.rewards import boxed_accuracy_reward, final_answer_reward
from zppo_trl.tiny import addition_dataset


def test_task_families_are_seeded_distinct_and_solved_by_their_own_solutions():
    # pinned: the questions of a seed must not change with the Python version (only random.random() is used)
    assert [t.question for t in generate("add_2d", 3, 0)] == ["What is 32 + 91?", "What is 73 + 91?",
                                                              "What is 83 + 23?"]  # fmt: skip
    for family in FAMILIES:
        tasks = generate(family, 12, 0)
        assert len({t.question for t in tasks}) == 12 and generate(family, 12, 0) == tasks
        solutions, golds = [t.solution for t in tasks], [str(t.answer) for t in tasks]
        assert final_answer_reward(solutions, golds) == [1.0] * 12 == boxed_accuracy_reward(solutions, golds)
    with pytest.raises(ValueError, match="unknown task family 'nope'"):
        generate("nope", 1, 0)


def test_demo_train_and_held_out_sets_are_fixed_and_disjoint():
    train, test = load_demo_tasks("train"), load_demo_tasks("test")
    assert len(train) == sum(n for n, _ in DEMO_MIX.values()) and len(test) == sum(n for _, n in DEMO_MIX.values())
    questions = lambda d: {p[0]["content"] for p in d["prompt"]}  # noqa: E731
    assert not questions(train) & questions(test)
    assert set(train["family"]) == set(test["family"]) == set(DEMO_MIX)
    assert load_demo_tasks("test")["prompt_id"] == test["prompt_id"] and len(set(test["prompt_id"])) == len(test)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_demo_tasks("validation")


def test_the_buffer_logs_each_graduation():
    buf = HardQuestionBuffer()
    buf.visit("q", correct=1, scored=4, round_index=0)
    buf.visit("q", correct=0, scored=4, round_index=1)
    assert buf.entry("q").entry_bin == 1 and buf.entry("missing") is None
    buf.visit("q", correct=3, scored=4, round_index=2)
    assert buf.graduations == [Graduation("q", entry_bin=1, admitted_round=0, graduated_round=2, correct=3, scored=4)]
    buf.load_state_dict(buf.state_dict())
    assert buf.graduations == []  # the log is this run's, not part of the saved state


class FlipReward:
    """Correct on odd prompt ids always, on even ones from `flip_at_step` on: the even ones are admitted, then
    graduate when replayed. Called without `trainer_state` (the held-out evaluation), it scores 1 on answers "0"."""

    __name__ = "flip_reward"

    def __init__(self, flip_at_step=2):
        self.flip_at_step = flip_at_step

    def __call__(self, completions, answer, prompt_id=None, trainer_state=None, **kwargs):
        if trainer_state is None:
            return [float(a == "0") for a in answer]
        late = trainer_state.global_step >= self.flip_at_step
        return [float(pid % 2 == 1 or late) for pid in prompt_id]


def test_the_end_of_run_report_tells_a_question_s_life_and_held_out_accuracy(make_trainer):
    held_out = Dataset.from_list([{"prompt_id": f"h{i}", "prompt": [{"role": "user", "content": f"Say {i}"}],
                                   "answer": str(i % 2), "family": ["even", "odd"][i % 2]}
                                  for i in range(4)])  # fmt: skip
    report = BufferReportCallback(held_out=held_out, held_out_samples=2)
    dataset = addition_dataset(16)
    if "prompt_id" not in dataset.column_names:  # the reward reads int ids 0..15
        dataset = dataset.add_column("prompt_id", list(range(16)))
    trainer = make_trainer(FlipReward(), dataset=dataset, teacher_column="solution", replay_ratio=1.0, hint_ratio=1.0,
                           max_steps=4)  # fmt: skip
    trainer.add_callback(report)
    report.trainer = trainer
    trainer.train()
    text = "\n".join(summary_lines(trainer, report))
    buf = trainer.replay_buffer
    assert buf.total_graduated >= 1 and len(buf.graduations) == buf.total_graduated
    # the reward sees global_step 0 in the first round: every question is solved from the third round on
    assert "[zppo] plain reward per step: 1: " in text and ", 3: 1.00, 4: 1.00" in text
    assert (f"[zppo] admitted {buf.total_admitted}, replayed {report.totals['replayed']}, graduated "
            f"{buf.total_graduated}, evicted 0, still in buffer {len(buf)}") in text  # fmt: skip
    life = next(g for g in buf.graduations if g.prompt_id in report.hints)  # the report tells a hinted one's life
    kinds = ", ".join(f"{kind.upper()} at step {step}" for step, kind in report.hints[life.prompt_id])
    assert (f"[zppo] one question's life: {life.prompt_id} admitted at step {life.admitted_round + 1} with 0/4 "
            f"correct, replayed {report.replays[life.prompt_id]}x, hinted {kinds}, graduated at step "
            f"{life.graduated_round + 1} with 4/4") in text  # fmt: skip
    assert "[zppo] BCQ rollouts 0% correct; the same questions' plain rollouts in the same rounds 0%" in text
    # held-out: the reward scores answer "0" as correct, so half the questions, before and after
    assert "[zppo] held-out plain accuracy before -> after: 50% (even 100%, odd 0%) -> 50% (even 100%, odd 0%)" in text
