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
