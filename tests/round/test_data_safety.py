"""What leaves the machine and what a round may trust: a push uploads no dataset text and no
credentials, a copy of a question is one question, a column the state cannot hold fails at build, an infinite
reward degrades only its rollout, and a state saved without rows resumes from the training set."""

import warnings

import pytest
import torch
from cli_runs import one_step, upload_files, write_jsonl
from datasets import Dataset
from scripted import ScriptedReward

from zppo_trl import ZPPOConfig
from zppo_trl.cli import main
from zppo_trl.round.state import STATE_FILE_NAME, checkpoint_rows, read_state_file, write_state_file
from zppo_trl.tiny import addition_dataset

MARKER = "PRIVATE-7f3a"  # a string only the dataset holds


def test_a_cli_run_uploads_no_dataset_text(tiny_model_dir, tmp_path):
    rows = [{"question": f"{MARKER} What is {a} + 3?", "answer": a + 3, "solution": f"{MARKER}: {a} + 3 = {a + 3}."}
            for a in range(6)]  # fmt: skip
    data = write_jsonl(tmp_path / "private.jsonl", rows)
    run = tmp_path / "run"
    flags = ["--dataset_name", data, "--save_strategy", "steps", "--save_steps", "1", "--hint_ratio", "1.0",
             "--replay_ratio", "1.0", "--max_steps", "2"]  # fmt: skip
    assert main([*one_step(tiny_model_dir, run), *flags]) == 0
    state = read_state_file(str(run / STATE_FILE_NAME))
    assert state["buffer"]["entries"], "the test needs buffered questions (a random model solves none)"
    for name in upload_files(run):  # every file a push of the output folder sends, binary ones too
        assert MARKER.encode() not in (run / name).read_bytes(), f"{name} holds dataset text"
    # a local checkpoint keeps the rows: it is what a resume reads, and it is not uploaded under every_save
    assert MARKER in (run / "checkpoint-2" / STATE_FILE_NAME).read_text()


def test_credentials_in_the_teacher_url_are_refused_before_anything_is_saved(tiny_model_dir, tmp_path):
    for url in ("http://user:pw-secret@localhost:8000/v1", "http://localhost:8000/v1?api_key=pw-secret"):
        with pytest.raises(ValueError, match="OPENAI_API_KEY"):
            ZPPOConfig(str(tmp_path), use_cpu=True, bf16=False, teacher_base_url=url, teacher_model="m")
    run = tmp_path / "run"
    flags = ["--teacher_base_url", "http://user:pw-secret@localhost:8000/v1", "--teacher_model", "m"]
    try:
        code = main([*one_step(tiny_model_dir, run), *flags])
    except ValueError:  # the CLI may surface the configuration error as an exception or as an exit code
        code = 2
    assert code != 0
    leaked = [f for f in (upload_files(run) if run.exists() else []) if b"pw-secret" in (run / f).read_bytes()]
    assert not leaked


@pytest.mark.parametrize(
    "push, strategy, opted_in, keeps_rows",
    [(False, "checkpoint", False, True), (True, "every_save", False, True), (True, "end", False, True),
     (True, "checkpoint", False, False), (True, "all_checkpoints", False, False), (True, "checkpoint", True, True)],
)  # fmt: skip
def test_checkpoints_keep_rows_unless_a_push_uploads_them(tmp_path, push, strategy, opted_in, keeps_rows):
    args = ZPPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none", push_dataset_rows=opted_in)
    args.push_to_hub, args.hub_strategy = push, strategy  # set after __post_init__: no Hub repo is created here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert checkpoint_rows(args) is keeps_rows
    assert any("push_dataset_rows=True" in str(w.message) for w in caught) is (not keeps_rows)


def test_a_state_saved_without_rows_resumes_from_the_training_set(make_trainer, tmp_path):
    def run(output_dir, resume=None):
        trainer = make_trainer(ScriptedReward(flip_at_step=3), teacher_column="solution", hint_ratio=0.5,
                               replay_ratio=0.5, max_steps=5, save_strategy="steps", save_steps=2,
                               output_dir=str(output_dir), retrospective_ratio=0.5)  # fmt: skip
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-2"
    saved = read_state_file(str(checkpoint / STATE_FILE_NAME))
    assert saved["rows"] and saved["buffer"]["entries"]
    rowless = {**saved, "rows": [], "retrospective_rows": []}  # as a checkpoint uploaded to the Hub is written
    write_state_file(str(checkpoint / STATE_FILE_NAME), rowless)
    resumed = run(tmp_path / "resumed", resume=str(checkpoint))
    assert resumed.zppo_state() == {**full.zppo_state()}
    # a training set without those questions: refused before any generation, naming the fix
    with pytest.raises(ValueError, match="holds no dataset rows for buffered question"):
        make_trainer(ScriptedReward(), dataset=addition_dataset(16, seed=5).map(lambda r: {"prompt_id": r["prompt_id"] + 100}),
                     max_steps=5, output_dir=str(tmp_path / "other")).train(resume_from_checkpoint=str(checkpoint))  # fmt: skip


def test_copies_of_a_question_are_one_visit_per_round_and_reported(make_trainer):
    copies = Dataset.from_list([dict(addition_dataset(1, ids=False)[0]) for _ in range(4)])

    def second_group_right(completions, **kwargs):  # rows 0-3 are one group, 4-7 the other: both the same question
        return [float(i >= 4) for i in range(len(completions))]

    with pytest.warns(UserWarning, match="4 row\\(s\\)|3 row\\(s\\) that repeat a question"):
        trainer = make_trainer(second_group_right, dataset=copies, max_steps=3, hint_ratio=0.0, replay_ratio=0.0)
    trainer.train()
    # unmerged, each round would admit the question (0/4) and graduate it (4/4): one visit of 4/8 is not hard
    assert trainer.replay_buffer.counters() == {"admitted": 0, "graduated": 0, "evicted": 0}


def test_a_column_the_state_cannot_hold_fails_when_the_trainer_is_built(make_trainer):
    data = addition_dataset(8).map(lambda r: {"raw": b"\x00\x01"})
    with pytest.raises(ValueError, match="`raw` \\(bytes\\).*remove_columns"):
        make_trainer(ScriptedReward(), dataset=data)


def test_an_infinite_reward_degrades_only_its_rollouts_and_is_counted(make_trainer):
    def with_infinity(completions, prompt_id, **kwargs):  # question 0: +inf; the others: right on every other row
        return [float("inf") if pid == 0 else float(i % 2) for i, pid in enumerate(prompt_id)]

    trainer = make_trainer(with_infinity, dataset=addition_dataset(2), max_steps=1, hint_ratio=0.0)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logs = [h for h in trainer.state.log_history if "zppo/nonfinite_rewards" in h]
    assert logs[0]["zppo/nonfinite_rewards"] == 4  # question 0's group of 4
    # question 1's group still has advantages: the model changed (an inf would have zeroed every advantage)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))
    assert torch.isfinite(torch.tensor(trainer.state.log_history[0]["loss"]))


def test_resume_accepts_the_clis_spellings_of_the_newest_complete_checkpoint(make_trainer, tmp_path):
    first = make_trainer(ScriptedReward(), max_steps=2, save_strategy="steps", save_steps=2, output_dir=str(tmp_path))
    first.train()
    for spelling in ("true", "LAST"):
        again = make_trainer(ScriptedReward(), max_steps=3, output_dir=str(tmp_path))
        again.train(resume_from_checkpoint=spelling)
        assert again.state.global_step == 3 and again.run_state.round == 3
