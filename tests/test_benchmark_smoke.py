"""CI smoke of examples/graduation_benchmark.py: a few steps of every method; the report has every field."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "graduation_benchmark.py")
FIELDS = {"graduation_rate", "admissions_by_bin", "graduations_by_bin", "heldout_accuracy_before",
          "heldout_accuracy_after", "heldout_hard_accuracy_before", "heldout_hard_accuracy_after", "bcq_accuracy",
          "ncq_accuracy", "seconds_per_completion", "peak_rss_mb", "steps", "per_seed"}  # fmt: skip


@pytest.mark.slow
def test_benchmark_smoke_fills_the_report(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--out", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["methods"]) == {"grpo", "grpo_replay", "hints_only", "zppo"}
    for method, summary in report["methods"].items():
        assert FIELDS <= set(summary), method
        assert summary["admitted"] > 0  # the buffer records admissions under every method
    assert (tmp_path / "graduation.png").read_bytes()[:4] == b"\x89PNG"
    assert report["methods"]["zppo"]["per_seed"][0]["bcq_accuracy"] is not None  # hint prompts were built
