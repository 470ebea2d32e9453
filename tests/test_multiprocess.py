"""Two processes on CPU: `torchrun --standalone --nproc_per_node 2` (accelerate's CPU launcher starts only one here).
Both ranks must hold identical buffers and build identical hint prompts every round; the same seed twice gives the
same rounds; a resume under two processes ends like the uninterrupted run."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


def torchrun(*script_args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "multiprocess_train.py"), *map(str, script_args)]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def read_ranks(folder, tag=""):
    ranks = [json.loads((folder / f"{tag}rank{r}.json").read_text()) for r in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]  # a silent one-process fallback must not pass
    assert ranks[0]["rounds"] == ranks[1]["rounds"]  # identical buffers and hint prompts on both ranks
    return ranks[0]["rounds"]


@pytest.mark.slow
def test_two_processes_identical_deterministic_and_resumable(tmp_path):
    torchrun(tmp_path / "a")
    rounds = read_ranks(tmp_path / "a")
    assert len(rounds) == 5
    assert any(r["last"]["hints"] for r in rounds), "hint groups never ran"
    assert any(r["last"]["replayed"] for r in rounds), "replay never ran"
    assert rounds[-1]["buffer"]["total_graduated"] > 0

    torchrun(tmp_path / "b")  # same seed, fresh run: same sequence of buffer states and hint prompts
    assert read_ranks(tmp_path / "b") == rounds

    torchrun(tmp_path / "a", "resume")  # from checkpoint-2 of run a
    resumed = read_ranks(tmp_path / "a", "resumed-")
    assert [r["step"] for r in resumed] == [3, 4, 5]
    assert resumed[-1]["buffer"] == rounds[-1]["buffer"]
