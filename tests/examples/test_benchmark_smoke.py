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
def test_benchmark_smoke_fills_the_report_for_both_tasks(tmp_path, bench):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--methods", "all", "--out", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=3600)  # fmt: skip
    # (about 5 min idle, 14 min on a shared machine: the limit only catches a hang, not a slow host)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["tasks"]) == {"tags", "carry"}
    for name, task in report["tasks"].items():
        assert set(task["methods"]) == {"grpo", "grpo_replay", "hints_only", "zppo", "hint", "prefix",
                                        "teacher_response", "grpo_replay_exclude", "zppo_exclude",
                                        "grpo_replay_lr_matched", "exgrpo", "retrospective",
                                        "zppo_exgrpo_retrospective", "zppo_next_round"}  # fmt: skip
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
    lines = table.splitlines()
    for i, line in enumerate(lines):  # every table's delimiter row has as many cells as its header
        if line.startswith("|---"):
            assert line.count("|") == lines[i - 1].count("|"), lines[i - 1]
    tags = {m: s["per_seed"][0] for m, s in report["tasks"]["tags"]["methods"].items()}
    assert tags["prefix"]["hint_prompts"] > 0 and tags["prefix"]["bcq_accuracy"] is None  # prefix groups, no BCQ
    assert tags["hint"]["hint_prompts"] == 0 and tags["hint"]["hints_not_built"] > 0  # answers only: no hint
    assert tags["zppo"]["ncq_accuracy"] is None  # NCQ off on the tag task
    carry = report["tasks"]["carry"]["methods"]
    assert carry["zppo"]["per_seed"][0]["ncq_accuracy"] is not None  # and on on the procedure task
    assert set(carry["zppo"]["heldout_family"]) == {"easy", "near", "far", "hard", "all"}
    from transformers import LlamaForCausalLM

    from zppo_trl.tiny import build_char_tokenizer

    for name in ("tags", "carry"):  # "before" is measured once per student: measuring the saved student again agrees
        folder = tmp_path / name / "student-seed0"
        zone = json.loads((folder / "zone.json").read_text())
        student = LlamaForCausalLM.from_pretrained(folder)
        task = bench.TASKS[name]
        heldout = task.make_datasets(0, *task.profiles["smoke"][3:])[1]
        sampler = bench.task_sampler(task)  # as the run samples (min_p on the tag and carry tasks)
        assert bench.measure_student(task, student, build_char_tokenizer(), heldout, 0, sampler) == zone
        assert report["tasks"][name]["methods"]["zppo"]["heldout_hard_bcq_accuracy_before"] == zone["hard_bcq"]


def _run(seed, graduated, admitted, hard_before, hard_after, by_bin):
    """A per-seed run record with what `summarise` and the criterion read (by_bin: {bin: (admitted, graduated,
    evicted)}; the families' counts put every admission in `near`)."""
    evicted = sum(e for _, _, e in by_bin.values())
    family = {"easy": 0.9, "near": hard_before, "far": hard_before, "all": 0.5, "hard": hard_before}
    return {
        "seed": seed, "graduated": graduated, "admitted": admitted, "evicted": evicted,
        "still_in_buffer": admitted - graduated - evicted, "graduation_rate": graduated / admitted,
        "admissions_by_bin": {b: a for b, (a, _, _) in by_bin.items()},
        "graduations_by_bin": {b: g for b, (_, g, _) in by_bin.items()},
        "evictions_by_bin": {b: e for b, (_, _, e) in by_bin.items()},
        "admissions_by_family": {"easy": 0, "near": admitted, "far": 0},
        "graduations_by_family": {"easy": 0, "near": graduated, "far": 0},
        "evictions_by_family": {"easy": 0, "near": evicted, "far": 0},
        "still_by_family": {"easy": 0, "near": admitted - graduated - evicted, "far": 0},
        "heldout_family_accuracy_before": family, "heldout_family_accuracy_after": family | {"hard": hard_after},
        "heldout_accuracy_before": 0.5, "heldout_accuracy_after": 0.5, "heldout_hard_accuracy_before": hard_before,
        "heldout_hard_accuracy_after": hard_after, "heldout_hard_bcq_accuracy_before": None,
        "heldout_hard_bcq_accuracy_after": None, "heldout_hard_gold_logprob_before": -1.0,
        "heldout_hard_gold_logprob_after": -1.0, "bcq_accuracy": None, "ncq_accuracy": None,
        "seconds_per_completion": 1.0, "seconds_per_step": 1.0, "seconds_per_processed_token": 1.0,
        "peak_rss_mb": 1.0, "generated_completions": 1, "generated_tokens": 1, "processed_tokens": 2, "steps": 3,
        "informative_token_share": None,
    }  # fmt: skip


def test_summary_pools_counts_over_seeds_and_exit_rates_by_bin(bench):
    s = bench.summarise([_run(0, 1, 10, 0.1, 0.2, {"0": (8, 0, 2), "3": (2, 1, 0)}),
                         _run(1, 6, 10, 0.1, 0.4, {"0": (10, 6, 4)})])  # fmt: skip
    assert s["graduated"] == 7 and s["admitted"] == 20 and s["graduation_rate"] == 7 / 20  # pooled
    assert s["graduation_rate_seed_mean"] == pytest.approx((0.1 + 0.6) / 2)
    assert s["admissions_by_bin"] == {"0": 18, "3": 2} and s["evictions_by_bin"] == {"0": 6, "3": 0}
    assert s["exit_rate"] == 7 / 13 and s["exit_rate_by_bin"] == {"0": 6 / 12, "3": 1.0}  # bin 3: all exits graduated
    assert list(s["admissions_by_family"]) == ["easy", "near", "far"]  # the task's order
    change = s["heldout_family"]["hard"]["change_ci95"]
    assert (change[0] + change[1]) / 2 == pytest.approx(0.2)  # changes +0.1 and +0.3


def test_criterion_needs_twice_the_graduation_rate_and_a_gain_interval_above_zero(bench):
    def method(runs):
        return bench.summarise(runs)

    base = method([_run(s, 2, 10, 0.1, 0.2, {"0": (10, 2, 0)}) for s in range(3)])
    better = method([_run(s, 5, 10, 0.1, 0.2 + 0.05 + 0.01 * s, {"0": (10, 5, 0)}) for s in range(3)])
    assert bench.zppo_vs_grpo_replay(base, better)["criterion_met"]  # 2.5x and +5..+7 points
    worse_gain = method([_run(s, 5, 10, 0.1, 0.2 + 0.02, {"0": (10, 5, 0)}) for s in range(3)])
    assert not bench.zppo_vs_grpo_replay(base, worse_gain)["criterion_met"]  # +2 points only
    noisy = method([_run(s, 5, 10, 0.1, 0.2 + (0.3 if s == 0 else -0.05), {"0": (10, 5, 0)}) for s in range(3)])
    verdict = bench.zppo_vs_grpo_replay(base, noisy)
    assert verdict["hard_heldout_gain_difference"] > 0.03 and verdict["hard_heldout_gain_difference_ci95"][0] < 0
    assert not verdict["criterion_met"]  # the interval spans 0
    few = method([_run(s, 3, 10, 0.1, 0.3, {"0": (10, 3, 0)}) for s in range(3)])
    assert not bench.zppo_vs_grpo_replay(base, few)["criterion_met"]  # 1.5x the graduation rate
    nothing = method([_run(s, 0, 10, 0.1, 0.1, {"0": (10, 0, 0)}) for s in range(3)])
    assert bench.zppo_vs_grpo_replay(nothing, better)["criterion_met"]  # GRPO† graduating nothing: any rate > 0
    assert not bench.zppo_vs_grpo_replay(nothing, nothing)["criterion_met"]


@pytest.fixture(scope="module")
def shift(bench):
    return bench.shift_task


def test_shift_answers_write_the_key_then_the_shifted_digits_and_the_reward_reads_the_digits(shift):
    assert shift.written("472", 8) == "8" and shift.row("k", "472", "hard")["answer"] == str(shift.KEYS["k"])
    assert shift.reward(["8", " 8\n", "8x", "3"], answer=["8"] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert shift.reward.extract_answer("1\n") == "1"  # what NCQ lists as wrong: what the reward reads
    for op, wrong in shift.MISCONCEPTIONS.items():  # three wrong keys per hard operator, never its true key
        assert len(set(wrong)) == 3 and shift.KEYS[op] not in wrong


def test_shift_pool_is_one_pass_of_disjoint_questions(bench, shift):
    task = bench.TASKS["shift"]
    _, rounds, new_prompts, pool, per_op = task.profiles["default"]
    assert pool == rounds * new_prompts  # one pass: no question is new twice
    train, heldout = shift.make_datasets(0, pool, per_op)
    assert len(set(train["prompt_id"])) == pool and not set(train["prompt_id"]) & set(heldout["prompt_id"])
    assert sum(f == "hard" for f in train["family"]) == pool // 2
    assert len(heldout) == per_op * (len(shift.EASY_OPS) + len(shift.HARD_OPS))
    for r in train:
        assert shift.reward([r["solution"]], answer=[r["answer"]]) == [1.0]


def test_shift_pretraining_shows_hint_formats_only_on_practice_operators(shift):
    rng = random.Random(0)
    examples = [shift.pretraining_example(rng) for _ in range(4000)]
    hinted = [(p, t) for p, t, kind in examples if kind != "plain"]
    assert hinted and all(shift.parse(p)[0] in shift.PRACTICE_OPS for p, _ in hinted)  # never a target family
    assert not any("WRONG" in p for p, _ in hinted)  # NCQ is untaught
    assert all(f"<candidate>\n{t}\n</candidate>" in p for p, t in hinted)  # the target is one of the candidates
    plain = [(p, t) for p, t, kind in examples if kind == "plain" and shift.parse(p)[0] in shift.HARD_OPS]
    right = [t == shift.written(shift.parse(p)[1], shift.KEYS[shift.parse(p)[0]]) for p, t in plain]
    assert abs(sum(right) / len(right) - shift.P_HARD_RIGHT) < 0.02  # a few percent of labels use the true key


def test_shift_probes_sham_bcq_shows_no_right_answer(shift):
    _, heldout = shift.make_datasets(0, 8, 1)
    bcq, probes = shift.with_bcq_hint(heldout, 0), shift.hint_probes(heldout, 0)
    hard = heldout.filter(lambda r: r["family"] == "hard")
    for r, real, sham, ncq in zip(hard, bcq, probes["hard_bcq_sham"], probes["hard_ncq"], strict=True):
        own = shift.own_wrong(*shift.parse(r["prompt"]))
        assert f"\n{r['solution']}\n" in real["prompt"] and f"\n{own}\n" in real["prompt"]
        assert f"\n{r['solution']}\n" not in sham["prompt"] and f"\n{own}\n" in sham["prompt"]
        assert f"WRONG: \\boxed{{{own}}}." in ncq["prompt"] and f"\n{r['answer']}\n" not in ncq["prompt"]


def test_seeds_needed_and_the_decision(bench):
    assert bench.seeds_needed(0.1, 0.1) == 10  # (t_.975 + t_.80)^2 ~ 9.3 at 9 degrees of freedom
    assert bench.seeds_needed(0.05, 0.1) < bench.seeds_needed(0.1, 0.1) < bench.seeds_needed(0.2, 0.1)

    def runs(rate0, accuracy):
        return {"per_seed": [{"admissions_by_bin": {"0": 10}, "graduations_by_bin": {"0": round(10 * r)},
                              "per_question_after": {"hard": {"a": a, "b": a},
                                                     "hard_gold_logprob_per_token": {"a": -1.0, "b": -1.0}}}
                             for r, a in zip(rate0, accuracy, strict=True)]}  # fmt: skip

    base = runs([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1])
    met = bench.decide(base, runs([0.3, 0.4, 0.3, 0.4], [0.2, 0.25, 0.2, 0.25]))
    assert met["verdict"] == "met" and met["endpoints"]["bin0_graduation_rate"]["pooled"] == [0.35, 0.1]
    refuted = bench.decide(base, runs([0.1, 0.1, 0.2, 0.1], [0.1, 0.11, 0.1, 0.11]))
    assert refuted["endpoints"]["hard_heldout_accuracy"]["verdict"] == "refuted" and refuted["verdict"] == "refuted"
    noisy = bench.decide(base, runs([0.1, 0.9, 0.1, 0.9], [0.1, 0.5, 0.1, 0.5]))
    assert noisy["verdict"] == "open"


@pytest.mark.slow
def test_benchmark_smoke_on_the_shift_task_records_the_recipe_and_the_decision(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    command = [sys.executable, SCRIPT, "--smoke", "--tasks", "shift", "--seeds", "0,1", "--no-core", "--methods",
               "grpo_replay,zppo", "--jobs", "1", "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    task = json.loads((tmp_path / "report.json").read_text())["tasks"]["shift"]
    for method, summary in task["methods"].items():
        assert FIELDS - {"cost_vs_grpo"} <= set(summary), method
        for run in summary["per_seed"]:
            recipe = run["recipe"]
            assert recipe["updates_per_rollout"] == 4 and recipe["lr_scheduler_type"] == "constant"
            assert recipe["weight_decay"] == 0.1 and recipe["sampler"]["temperature"] == 1.0
            assert "min_p" not in recipe["sampler"] and recipe["hint_schedule"] == "same_round"
            assert set(run["clip_fractions"]) == {"region", "low", "high"}
            assert run["admitted"] == sum(run["admissions_by_family"].values())
            assert set(run["per_question_after"]["hard"]) == set(run["per_question_before"]["hard"])
            assert {"hard_bcq_sham", "hard_ncq", "hard_gold_logprob_per_token"} <= set(run["heldout_probes_before"])
    zppo = task["methods"]["zppo"]["per_seed"][0]
    assert zppo["bcq_accuracy"] is not None and zppo["ncq_accuracy"] is not None  # both hint kinds were built
    assert zppo["recipe"]["hint_ratio"] == 3.0 and zppo["recipe"]["replay_ratio"] == 1.0
    decision = task["decision"]["zppo"]
    assert decision["verdict"] in ("met", "refuted", "open")
    # the smoke's few pretraining steps may leave a student outside the zone: it is left out, with its reason
    assert decision["seeds"] + len(decision["excluded"]) == 2
    assert all(why and all(isinstance(w, str) for w in why) for why in decision["excluded"].values())
    if decision["seeds"]:
        assert set(decision["endpoints"]) == {
            "bin0_graduation_rate",
            "hard_heldout_accuracy",
            "hard_gold_logprob_per_token",
        }
    assert "Decision, zppo - GRPO†" in (tmp_path / "table.md").read_text()


def test_shift_zone_check_and_the_decision_leave_out_students_outside_the_zone(bench, shift):
    assert shift.zone_failures(0.053, 0.203, 0.061, 0.041) == []  # seed 0 of the pilot
    assert shift.zone_failures(0.041, 0.068, 0.068, 0.070) == ["BCQ 0.068 < plain + 0.10"]  # reads no candidate
    assert len(shift.zone_failures(0.0, 0.5, 0.5, 0.0)) == 2  # no plain chance, and a switch

    def run(seed, bcq, rate0, accuracy):
        return {"seed": seed, "heldout_hard_accuracy_before": 0.05, "admissions_by_bin": {"0": 10},
                "graduations_by_bin": {"0": round(10 * rate0)},
                "heldout_probes_before": {"hard_bcq": bcq, "hard_bcq_sham": 0.05, "hard_ncq": 0.05},
                "per_question_after": {"hard": {"a": accuracy},
                                       "hard_gold_logprob_per_token": {"a": -1.0}}}  # fmt: skip

    base = {"per_seed": [run(s, 0.3 if s else 0.05, 0.1, 0.1) for s in range(4)]}
    zppo = {"per_seed": [run(s, 0.3 if s else 0.05, 0.9 if s == 0 else 0.3, 0.2) for s in range(4)]}
    decision = bench.decide(base, zppo, shift.run_zone_failures)
    assert list(decision["excluded"]) == [0] and decision["seeds"] == 3  # seed 0's student reads no candidate
    assert decision["endpoints"]["bin0_graduation_rate"]["per_seed"] == pytest.approx([0.2, 0.2, 0.2])
