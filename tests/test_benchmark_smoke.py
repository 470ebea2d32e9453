"""examples/graduation_benchmark.py: the task's pieces, and a CI smoke of every method that fills the report."""

import importlib.util
import json
import os
import random
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "graduation_benchmark.py")
FIELDS = {"graduation_rate", "admissions_by_bin", "graduations_by_bin", "heldout_accuracy_before",
          "heldout_accuracy_after", "heldout_hard_accuracy_before", "heldout_hard_accuracy_after",
          "heldout_hard_bcq_accuracy_before", "heldout_hard_bcq_accuracy_after", "heldout_hard_gold_logprob_before",
          "heldout_hard_gold_logprob_after", "bcq_accuracy", "ncq_accuracy", "seconds_per_completion",
          "seconds_per_step", "peak_rss_mb", "steps", "cost_vs_grpo", "per_seed"}  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("graduation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_answers_follow_the_rule_and_the_check_digit_names_the_true_answer(bench):
    assert bench.answer("bad", "A") == "A103" and bench.answer("bad", "B") == "B214"
    assert bench.answer("jij", "B") == "B090"  # j -> 0 under the shifted rule
    assert bench.question("bad", "h", "B") == "k=bad s=4 h?" and bench.question("bad", "", "A") == "k=bad s=3?"


def test_datasets_use_disjoint_keys_and_the_bcq_probe_shows_the_default_answer(bench):
    train, heldout = bench.make_datasets(0, 10, 5)
    key = lambda r: r["prompt"][2:5]  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in heldout}
    assert sorted({r["family"] for r in train}) == ["easy", "hard"] and len(train) == 20
    for row, hinted in zip([r for r in heldout if r["family"] == "hard"], bench.with_bcq_hint(heldout, 0)):
        rule_a = bench.answer(key(row), "A")
        assert hinted["prompt"].startswith(row["prompt"])
        assert f"<candidate>\n{row['answer']}\n</candidate>" in hinted["prompt"]
        assert f"<candidate>\n{rule_a}\n</candidate>" in hinted["prompt"]


def test_pretraining_never_shows_the_hard_rule_outside_a_hint(bench):
    rng = random.Random(0)
    examples = [bench.pretraining_example(rng) for _ in range(2000)]
    hard_plain = [(p, t) for p, t, kind in examples if kind == "plain" and p.endswith(" h?")]
    assert hard_plain and all(t.startswith("A") for _, t in hard_plain)  # the misconception
    assert not any(p.startswith("k=") and " h?" in p.split("\n")[0] for p, _, kind in examples if kind == "bcq")
    bcq = [(p, t) for p, t, kind in examples if kind == "bcq"]
    picked_by_check = [t[-1] == p.split(" s=")[1][0] for p, t in bcq]
    assert 0.85 < sum(picked_by_check) / len(bcq) < 0.95  # 10% label noise


@pytest.mark.slow
def test_benchmark_smoke_fills_the_report(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--methods", "all", "--out", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["methods"]) == {"grpo", "grpo_replay", "hints_only", "zppo", "hint", "prefix",
                                      "teacher_response", "grpo_replay_exclude", "zppo_exclude",
                                      "grpo_replay_lr_matched", "exgrpo", "retrospective",
                                      "zppo_exgrpo_retrospective"}  # fmt: skip
    for method, summary in report["methods"].items():
        assert FIELDS <= set(summary), method
        assert summary["admitted"] > 0  # the buffer records admissions under every method
    befores = {m: (s["heldout_accuracy_before"], s["heldout_hard_gold_logprob_before"])
               for m, s in report["methods"].items()}  # fmt: skip
    assert len(set(befores.values())) == 1, befores  # every method starts from the same pretrained student
    assert report["methods"]["grpo"]["cost_vs_grpo"]["seconds_per_completion"] == 1.0
    assert "zppo_vs_grpo_replay_graduation_ratio" in report and "zppo_vs_grpo_replay_bin0_graduation_ratio" in report
    assert (tmp_path / "graduation.png").read_bytes()[:4] == b"\x89PNG"
    assert all(f"| {method} |" in (tmp_path / "table.md").read_text() for method in report["methods"])
    assert report["methods"]["zppo"]["per_seed"][0]["bcq_accuracy"] is not None  # hint prompts were built
    assert report["methods"]["grpo_replay"]["per_seed"][0]["bcq_accuracy"] is None  # and only where asked for
    runs = {m: s["per_seed"][0] for m, s in report["methods"].items()}
    assert runs["prefix"]["hint_prompts"] > 0 and runs["prefix"]["bcq_accuracy"] is None  # prefix groups, no BCQ
    assert runs["hint"]["hint_prompts"] == 0 and runs["hint"]["hints_not_built"] > 0  # answers only: nothing to hint
    assert runs["teacher_response"]["injected_responses"] > 0 and runs["teacher_response"]["hint_prompts"] == 0
    assert runs["zppo"]["generated_completions"] > runs["grpo"]["generated_completions"]  # hint groups cost rollouts
    assert 0.0 <= runs["zppo"]["informative_token_share"] <= 1.0 and "plain" in runs["zppo"]["zero_variance_share"]
    # step-size-matched GRPO†: the learning rate times ZPPO's plain-token share, measured in the same seed's run
    share = runs["zppo"]["plain_token_share"]
    assert 0 < share < 1 and runs["grpo_replay"]["plain_token_share"] == 1.0
    assert runs["grpo_replay_lr_matched"]["learning_rate"] == pytest.approx(
        runs["grpo_replay"]["learning_rate"] * share
    )
    for method in ("exgrpo", "retrospective", "zppo_exgrpo_retrospective"):  # their reports are filled in
        assert {"experience_replayed", "experience_retired", "retrospective"} <= set(runs[method])
        assert {"all_replays_success", "stored"} <= set(runs[method]["retrospective"])
