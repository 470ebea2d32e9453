"""examples/graduation_benchmark.py: both tasks' pieces, the report's statistics, and a CI smoke of every method on
both tasks that fills the report."""

import json
import os
import random
import subprocess
import sys

import pytest
from example_scripts import load_example, script_path

SCRIPT = script_path("graduation_benchmark")
FIELDS = {"graduation_rate", "admissions_by_bin", "graduations_by_bin", "heldout_accuracy_before",
          "heldout_accuracy_after", "heldout_hard_accuracy_before", "heldout_hard_accuracy_after",
          "heldout_hard_bcq_accuracy_before", "heldout_hard_bcq_accuracy_after", "heldout_hard_gold_logprob_before",
          "heldout_hard_gold_logprob_after", "bcq_accuracy", "ncq_accuracy", "seconds_per_completion",
          "seconds_per_step", "peak_rss_mb", "steps", "cost_vs_grpo", "per_seed", "evicted", "exit_rate",
          "exit_rate_by_bin", "still_in_buffer", "graduations_by_family", "admissions_by_family", "heldout_family",
          "generated_tokens", "processed_tokens", "seconds_per_processed_token"}  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    return load_example("graduation_benchmark")


@pytest.fixture(scope="module")
def carry(bench):
    return bench.carry_task


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


def test_carry_procedure_is_column_addition_and_a_skipped_carry_gives_a_consistent_wrong_sum(carry):
    assert carry.solution(347, 285) == "7+5=12,4+8+1=13,3+2+1=6#632"
    assert carry.written(347, 285, set()) == "7+5=12,4+8=12,3+2=5#522"  # both carries skipped
    assert carry.written(347, 285, {1}) == "7+5=12,4+8+1=13,3+2=5#532"  # the hundreds carry skipped
    assert carry.solution(999, 999) == "9+9=18,9+9+1=19,9+9+1=19#1998"
    assert len(carry.solution(999, 999)) <= carry.MAX_COMPLETION_TOKENS
    rng = random.Random(0)
    for _ in range(500):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        assert carry.reward([carry.solution(a, b)], answer=[str(a + b)]) == [1.0]
        fam = carry.family(a, b)
        wrong = carry.written(a, b, set())
        assert (wrong == carry.solution(a, b)) == (fam == "easy")  # only a carry-free sum survives skipping carries
    assert (carry.family(111, 222), carry.family(118, 222), carry.family(150, 160), carry.family(158, 146)) == (
        "easy", "near", "far", "far")  # fmt: skip


def test_carry_pretraining_never_writes_a_hundreds_carry_plain_and_tens_carries_at_p_tens(carry):
    rng = random.Random(0)
    examples = [carry.pretraining_example(rng) for _ in range(3000)]
    plain = [(p, t) for p, t, kind in examples if kind == "plain"]
    far = [(p, t) for p, t in plain if carry.family(*carry.operands(p)) == "far"]
    assert far and not any(t == carry.solution(*carry.operands(p)) for p, t in far)  # the misconception
    near = [t == carry.solution(*carry.operands(p)) for p, t in plain if carry.family(*carry.operands(p)) == "near"]
    assert abs(sum(near) / len(near) - carry.P_TENS) < 0.06
    hinted = [(p, t, kind) for p, t, kind in examples if kind != "plain"]
    assert {kind for _, _, kind in hinted} == {"bcq", "ncq"}
    right = [t == carry.solution(*carry.operands(p.split("\n")[0])) for p, t, _ in hinted]
    assert abs(sum(right) / len(right) - (1 - carry.HINT_LABEL_NOISE)) < 0.04
    for p, _, kind in hinted:  # the NCQ list never names the right sum as wrong; a BCQ shows the right sum
        a, b = carry.operands(p.split("\n")[0])
        if kind == "ncq":
            assert f"\\boxed{{{a + b}}}" not in p and "all WRONG" in p
        else:
            assert f"#{a + b}\n</candidate>" in p


def test_carry_datasets_are_disjoint_and_balanced_and_the_bcq_probe_shows_the_right_sum(carry):
    train, heldout = carry.make_datasets(0, 5, 4)
    assert not set(train["prompt"]) & set(heldout["prompt"])
    assert sorted(train["family"]) == sorted([f for f in carry.FAMILIES for _ in range(5)])
    hinted = carry.with_bcq_hint(heldout, 0)
    assert len(hinted) == 8 and all(f in carry.HARD_FAMILIES for f in hinted["family"])
    hard = heldout.filter(lambda r: r["family"] in carry.HARD_FAMILIES)
    for row, hinted_row in zip(hard, hinted, strict=True):
        assert hinted_row["prompt"].startswith(row["prompt"] + "\n\nHere are two candidate responses")
        assert hinted_row["prompt"].count("<candidate>\n") == 2 and f"#{row['answer']}\n" in hinted_row["prompt"]


def test_t_interval_and_exit_rate(bench):
    low, high = bench.t_interval([1.0, 2.0, 3.0])
    assert (low + high) / 2 == pytest.approx(2.0) and high - 2.0 == pytest.approx(4.303 / 3**0.5)
    assert bench.t_interval([0.5]) is None
    assert bench.exit_rate(3, 0) is None and bench.exit_rate(3, 1) == 0.75


@pytest.mark.slow
def test_benchmark_smoke_fills_the_report_for_both_tasks(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--methods", "all", "--out", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["tasks"]) == {"tags", "carry"}
    for name, task in report["tasks"].items():
        assert set(task["methods"]) == {"grpo", "grpo_replay", "hints_only", "zppo", "hint", "prefix",
                                        "teacher_response", "grpo_replay_exclude", "zppo_exclude",
                                        "grpo_replay_lr_matched", "exgrpo", "retrospective",
                                        "zppo_exgrpo_retrospective"}  # fmt: skip
        for method, summary in task["methods"].items():
            assert FIELDS <= set(summary), (name, method)
            assert summary["admitted"] > 0  # the buffer records admissions under every method
            assert summary["admitted"] == summary["graduated"] + summary["evicted"] + summary["still_in_buffer"]
            assert sum(summary["admissions_by_family"].values()) == summary["admitted"]
            assert summary["processed_tokens"] > summary["generated_tokens"] > 0
        befores = {m: (s["heldout_accuracy_before"], s["heldout_hard_gold_logprob_before"])
                   for m, s in task["methods"].items()}  # fmt: skip
        assert len(set(befores.values())) == 1, befores  # every method starts from the same pretrained student
        assert task["methods"]["grpo"]["cost_vs_grpo"]["seconds_per_completion"] == 1.0
        verdict = task["zppo_vs_grpo_replay"]
        assert {"graduation_rate", "hard_heldout_gain_difference", "criterion_met"} <= set(verdict)
        assert verdict["hard_heldout_gain_difference_ci95"] is None  # one seed: no interval
        assert (tmp_path / f"graduation-{name}.png").read_bytes()[:4] == b"\x89PNG"
        runs = {m: s["per_seed"][0] for m, s in task["methods"].items()}
        assert runs["zppo"]["bcq_accuracy"] is not None  # hint prompts were built
        assert runs["grpo_replay"]["bcq_accuracy"] is None  # and only where asked for
        assert runs["zppo"]["generated_completions"] > runs["grpo"]["generated_completions"]  # hint groups cost
        assert runs["teacher_response"]["injected_responses"] > 0 and runs["teacher_response"]["hint_prompts"] == 0
        share = runs["zppo"]["plain_token_share"]  # step-size-matched GRPO†: lr x ZPPO's plain-token share
        assert 0 < share < 1 and runs["grpo_replay"]["plain_token_share"] == 1.0
        assert runs["grpo_replay_lr_matched"]["learning_rate"] == pytest.approx(
            runs["grpo_replay"]["learning_rate"] * share
        )
        for method in ("exgrpo", "retrospective", "zppo_exgrpo_retrospective"):  # their reports are filled in
            assert {"experience_replayed", "experience_retired", "retrospective"} <= set(runs[method])
            assert {"all_replays_success", "stored"} <= set(runs[method]["retrospective"])
    table = (tmp_path / "table.md").read_text()
    assert "## tags" in table and "## carry" in table and "pre-registered criterion met" in table
    tags = {m: s["per_seed"][0] for m, s in report["tasks"]["tags"]["methods"].items()}
    assert tags["prefix"]["hint_prompts"] > 0 and tags["prefix"]["bcq_accuracy"] is None  # prefix groups, no BCQ
    assert tags["hint"]["hint_prompts"] == 0 and tags["hint"]["hints_not_built"] > 0  # answers only: no hint
    assert tags["zppo"]["ncq_accuracy"] is None  # NCQ off on the tag task
    carry = report["tasks"]["carry"]["methods"]
    assert carry["zppo"]["per_seed"][0]["ncq_accuracy"] is not None  # and on on the procedure task
    assert set(carry["zppo"]["heldout_family"]) == {"easy", "near", "far", "hard", "all"}
