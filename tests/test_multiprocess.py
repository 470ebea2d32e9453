"""Two processes on CPU: `torchrun --standalone --nproc_per_node 2` (accelerate's CPU launcher starts only one here).
Both ranks must hold identical buffers and build identical hint prompts every round."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


@pytest.mark.slow
def test_two_processes_keep_identical_buffers_and_hints(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "multiprocess_train.py"), str(tmp_path)]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]  # a silent one-process fallback must not pass
    assert ranks[0]["rounds"] == ranks[1]["rounds"]
    rounds = ranks[0]["rounds"]
    assert len(rounds) == 5
    assert any(r["last"]["hints"] for r in rounds), "hint groups never ran"
    assert any(r["last"]["replayed"] for r in rounds), "replay never ran"
    assert rounds[-1]["buffer"]["total_graduated"] > 0
