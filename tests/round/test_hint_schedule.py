"""`hint_schedule="next_round"` through `trainer.train()`: one generation pass per round, the planned hints saved in
checkpoints so a resume in the middle of the schedule ends exactly where an uninterrupted run ends."""

import os

from scripted import HARD, ScriptedReward

from zppo_trl.round.state import STATE_FILE_NAME, read_state_file


def test_one_generation_pass_per_round_and_hints_rolled_out_a_round_later(make_trainer):
    trainer = make_trainer(ScriptedReward(), teacher_column="solution", hint_ratio=1.0, replay_ratio=0.5,
                           hint_schedule="next_round", max_steps=4)  # fmt: skip
    passes, rounds = [], []
    rollout = trainer.round_seams.rollout

    def counted(groups, **kwargs):
        passes.append((trainer.run_state.round, [g["zppo_kind"] for g in groups]))
        return rollout(groups, **kwargs)

    trainer.round_seams.rollout = counted
    original = trainer._generate_and_score_completions

    def recorded(inputs):
        output = original(inputs)
        rounds.append(trainer.last_round)
        return output

    trainer._generate_and_score_completions = recorded
    trainer.train()
    assert [r for r, _ in passes] == [0, 1, 2, 3]  # one pass per round
    assert rounds[0]["hints"] == [] and rounds[0]["pending"]
    for before, now in zip(rounds, rounds[1:]):  # what a round planned is what the next one rolled out
        assert [(h["kind"], h["prompt_id"]) for h in now["hints"]] == [
            (p["kind"], p["prompt_id"]) for p in before["pending"]
        ]
        assert {h["prompt_id"] for h in now["hints"]} <= HARD
    assert any(kinds.count("bcq") for _, kinds in passes[1:]) and "bcq" not in passes[0][1]


def test_a_resume_in_the_middle_of_the_schedule_ends_like_an_uninterrupted_run(make_trainer, tmp_path):
    def run(output_dir, resume=None):
        trainer = make_trainer(ScriptedReward(flip_at_step=3), teacher_column="solution", hint_ratio=0.5,
                               replay_ratio=0.5, hint_schedule="next_round", max_steps=5, save_strategy="steps",
                               save_steps=2, output_dir=str(output_dir))  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert read_state_file(os.path.join(checkpoint, STATE_FILE_NAME))["pending"], "hints planned at step 2 are saved"
    resumed = run(tmp_path / "resumed", resume=str(checkpoint))
    assert resumed.zppo_state() == full.zppo_state() and resumed.last_round == full.last_round
    assert full.replay_buffer.total_graduated > 0


def test_state_rows_riding_in_a_text_pass_are_scored_on_prefix_and_continuation(make_trainer):
    """A text dataset: a Retrospective Replay row (rendered text) rides in the plain pass; its reward still reads the
    state before the continuation, row by row, whatever the pass's first row is."""
    from zppo_trl.tiny import addition_dataset

    seen = []

    def reward(completions, zppo_kind, **kwargs):
        seen.extend((k, c) for k, c in zip(zppo_kind, completions))
        return [0.0] * len(completions)

    trainer = make_trainer(reward, dataset=addition_dataset(16, chat=False), retrospective_ratio=0.5, hint_ratio=0.0,
                           hint_schedule="next_round", max_steps=2)  # fmt: skip
    trainer.retrospective_buffer.harvest(3, "Let me add", accuracy=0.25, round_index=-1)  # a state found earlier
    trainer.run_state.retrospective_rows[3] = dict(trainer.train_dataset[3])
    trainer.train()
    continued = [c for kind, c in seen if kind == "retrospective"]
    assert continued and all(c.startswith("Let me add") for c in continued)
    assert any(kind == "plain" for kind, _ in seen[: len(seen) // 2])  # plain rows shared the pass


def test_a_saved_plan_is_checked_kept_or_dropped_on_resume(tmp_path):
    import warnings

    import pytest

    from zppo_trl import ZPPOConfig
    from zppo_trl.buffers.hard import BufferStateError
    from zppo_trl.round.state import RunState

    def args(schedule):
        return ZPPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none", hint_schedule=schedule)

    saved = RunState.new(args("next_round"), 4)
    saved.pending = [("bcq", {"prompt": "q", "prompt_id": 1})]
    payload = saved.to_dict(global_step=2)
    assert RunState.from_dict(payload, args("next_round"), 4).pending == saved.pending
    with pytest.warns(UserWarning, match="dropped"):  # nothing would ever roll them out
        assert RunState.from_dict(payload, args("same_round"), 4).pending == []
    with pytest.warns(UserWarning, match="left out"):  # a state saved without rows says what it lost
        assert RunState.from_dict(saved.to_dict(2, include_rows=False), args("next_round"), 4).pending == []
    with pytest.raises(BufferStateError, match="`pending`"):
        RunState.from_dict({**payload, "pending": [["bcq"]]}, args("next_round"), 4)
    next_round = args("next_round")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunState.from_dict(payload, next_round, 4)  # a full state resumes silently


def test_a_replay_is_credited_only_to_the_state_that_was_continued():
    import torch

    from zppo_trl.buffers.states import RetrospectiveBuffer
    from zppo_trl.methods.baselines import PREFIX_KEY
    from zppo_trl.methods.retrospective import record_replays

    class State:
        retrospective = RetrospectiveBuffer(min_tries=8)

    state = State()
    state.retrospective.harvest(7, "First idea.", accuracy=0.25)
    planned = [("retrospective", {"prompt_id": 7, PREFIX_KEY: ["First idea.", True]})]
    state.retrospective.harvest(7, "Second idea.", accuracy=0.125)  # replaced before the continuations came back
    correct, scored = torch.tensor([[True, False]]), torch.tensor([[True, True]])
    assert record_replays(state, planned, correct, scored) == (1, 2)  # the round's counts
    assert state.retrospective.state(7).tries == 0  # but the new state is not credited with the old one's
