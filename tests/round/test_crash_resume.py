"""Crash and resume: SIGKILL a training process at fixed points, resume from the last complete checkpoint, and end
exactly where an uninterrupted run ends (buffer state, running totals, round counter and weights)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from paths import TESTS

from zppo_trl.round.state import STATE_FILE_NAME

SCRIPT = os.path.join(TESTS, "crash_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def run(out, mode):
    return subprocess.run([sys.executable, SCRIPT, str(out), mode], env=ENV, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    result = run(out, "full")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, resumes_from",
    [
        ("kill_after_step3", "checkpoint-2"),
        ("kill_during_save4", "checkpoint-2"),
        ("kill_before_trainer_state4", "checkpoint-2"),
        ("kill_after_save4", "checkpoint-4"),
    ],
)
def test_killed_run_resumes_to_the_same_end(tmp_path, uninterrupted, mode, resumes_from):
    killed = run(tmp_path, mode)
    assert killed.returncode == -9, f"expected SIGKILL, got {killed.returncode}: {killed.stderr[-2000:]}"
    assert not (tmp_path / "result.json").exists()
    if mode == "kill_during_save4":  # killed inside the write: only the temporary file exists, never a partial state
        folder = tmp_path / "run" / "checkpoint-4"
        assert not (folder / STATE_FILE_NAME).exists() and list(folder.glob(".zppo_state.*.tmp"))
    resumed = run(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"RESUME {resumes_from}\n" in resumed.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["state"] == uninterrupted["state"]  # buffer, totals, round counter, step
    assert result["weights_sha"] == uninterrupted["weights_sha"]  # the weights, bit for bit
    assert uninterrupted["state"]["buffer"]["total_graduated"] > 0  # the flip at step 3 was exercised
    # and ExGRPO's buffer (every question retired by the end) and Retrospective Replay's states
    assert uninterrupted["state"]["experience"]["total_stored_trajectories"] > 0
    assert uninterrupted["state"]["retrospective"]["totals"]["replayed"] > 0


def test_last_complete_checkpoint_skips_partial_ones(tmp_path):
    from zppo_trl.round.state import last_complete_checkpoint, write_state_file

    def checkpoint(step, zppo_state=True, trainer_state=True):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if zppo_state:
            write_state_file(str(folder / STATE_FILE_NAME), {"round": step, "global_step": step})
        if trainer_state:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))

    assert last_complete_checkpoint(str(tmp_path)) is None
    checkpoint(2)
    checkpoint(4)
    checkpoint(6, zppo_state=False)
    (tmp_path / "checkpoint-6" / STATE_FILE_NAME).write_text('{"schema_version": 1, "chec')  # cut mid-write
    checkpoint(8, trainer_state=False)  # ZPPO's state is written early (before an upload); transformers' last
    with pytest.warns(UserWarning, match="checkpoint-8") as record:
        assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert any("checkpoint-6" in str(w.message) for w in record)
    shutil.rmtree(tmp_path / "checkpoint-4")
    assert last_complete_checkpoint(str(tmp_path)).endswith("checkpoint-2")
