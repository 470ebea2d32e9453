"""examples/transfer_gate.py: the CI smoke really trains both arms with TRL's GRPOTrainer on the tiny student and
fills every field of gate.json with finite numbers and the paper's update recipe; a rerun resumes from the cache."""

import json
import math

import pytest
from example_scripts import load_example

ARM_FIELDS = {"held_out_gold_logprob_before", "held_out_gold_logprob_after", "held_out_accuracy_before",
              "held_out_accuracy_after", "held_out_gold_answer_logprob_before", "held_out_gold_answer_logprob_after",
              "num_questions", "per_seed", "gold_logprob_change", "gold_answer_logprob_change", "accuracy_change",
              "clip_fractions", "gold_logprob_change_per_question"}  # fmt: skip


@pytest.fixture(scope="module")
def gate():
    return load_example("transfer_gate")


@pytest.fixture(scope="module")
def smoke(gate, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate")
    gate.main(["--smoke", "--out", str(out)])
    with open(out / "gate.json") as f:
        return out, json.load(f)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_the_smoke_records_the_papers_update_recipe_and_one_sampler(smoke):
    _, report = smoke
    recipe = report["recipe"]
    assert recipe["updates_per_rollout"] == 4 and recipe["lr_scheduler_type"] == "constant"
    assert recipe["weight_decay"] == 0.1 and recipe["max_grad_norm"] == 1.0 and recipe["beta"] == 0.0
    assert (recipe["epsilon"], recipe["epsilon_high"]) == (0.2, 0.28) and finite(recipe["learning_rate"])
    assert recipe["sampler"] | {"min_p": None} == {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": None,
                                                    "repetition_penalty": 1.0}  # fmt: skip


def test_the_smoke_fills_every_field_with_finite_numbers(smoke):
    _, report = smoke
    assert report["student"] == "tiny" and report["seeds"] == [0, 1]
    assert {"plain_accuracy", "bcq_accuracy"} <= set(report["zone"]["hard"])
    for arm in ("bcq", "plain"):
        summary = report["arms"][arm]
        assert ARM_FIELDS <= set(summary), ARM_FIELDS - set(summary)
        assert summary["num_questions"] == report["held_out_before"]["questions"] > 0
        for key in ("held_out_gold_logprob_before", "held_out_gold_logprob_after", "held_out_accuracy_before",
                    "held_out_accuracy_after", "held_out_gold_answer_logprob_before",
                    "held_out_gold_answer_logprob_after"):  # fmt: skip
            assert finite(summary[key]), (arm, key)
        for change in (summary["gold_logprob_change"], summary["gold_answer_logprob_change"],
                       summary["accuracy_change"]):  # fmt: skip
            assert finite(change["mean"]) and all(finite(x) for x in change["ci95"]) and change["n"] == 2
        assert set(summary["per_seed"]) == {"0", "1"}
        for run in summary["per_seed"].values():
            assert run["optimizer_steps"] == 4 * report["recipe"]["rollout_steps"]
            assert len(run["train_reward_per_rollout_step"]) == report["recipe"]["rollout_steps"]
            assert all(finite(v) for v in run["after"]["gold_logprob_per_question"].values())
            assert len(run["clip_fractions"]["per_update_region"]) == run["optimizer_steps"]
        assert all(finite(summary["clip_fractions"][k]) for k in ("region_mean", "low_mean", "high_mean"))
    for key in ("gold_logprob", "gold_answer_logprob", "accuracy"):
        assert finite(report["difference"][key]["mean"]) and len(report["difference"][key]["per_seed"]) == 2


def test_training_moved_the_weights_and_the_bcq_prompts_hold_the_teachers_solution(smoke):
    out, report = smoke
    runs = [r for arm in ("bcq", "plain") for r in report["arms"][arm]["per_seed"].values()]
    assert any(r["gold_logprob_change"] != 0 for r in runs)  # the dense smoke reward gives a real gradient
    assert report["arms"]["bcq"]["num_training_prompts"] > 0
    assert set(report["arms"]["bcq"]["training_prompts_by_family"]) == {"three_digit_sum"}  # hard questions only
    assert set(report["arms"]["plain"]["training_prompts_by_family"]) == {"three_digit_sum", "two_digit_sum"}


def test_bcq_prompts_carry_the_whole_teacher_solution_and_a_wrong_rollout(gate, smoke):
    out, _ = smoke
    args = gate.parse_args(["--smoke"])
    student = gate.STUDENTS[args.student](args)
    with open(out / "start.json") as f:
        start = json.load(f)
    _, tokenizer = student.load()
    rows, data = gate.arm_dataset(student, tokenizer, start, "bcq", seed=0)
    solutions = {r["prompt_id"]: r["solution"] for r in student.train_questions}
    for row in rows:
        text = row["prompt"][-1]["content"]
        assert text.count("<candidate>\n") == 2 and solutions[row["prompt_id"]] in text
        assert text.endswith(student.instruction)


def test_a_rerun_resumes_from_the_cache_and_refuses_another_configuration(gate, smoke):
    out, report = smoke
    again = gate.main(["--smoke", "--out", str(out)])  # every seed and arm is cached: no training
    assert again["arms"]["bcq"]["per_seed"] == report["arms"]["bcq"]["per_seed"]
    with pytest.raises(SystemExit, match="another configuration"):
        gate.main(["--smoke", "--steps", "1", "--out", str(out)])


def test_the_answer_tokens_are_where_the_last_step_computes_the_answer(gate):
    solution = "19 + 13 = 32, and 32 - 2 = 30. The answer is \\boxed{30}."
    start, end = gate.answer_span(solution, "30")
    assert solution[start:end] == "30" and solution[start - 2 : start] == "= "
    # an answer equal to an operand copied from the question is found where it is computed, not where it is copied
    copied = "5 + 7 = 12, and 12 - 7 = 5. The answer is \\boxed{5}."
    start, _ = gate.answer_span(copied, "5")
    assert copied[start - 2 : start + 2] == "= 5."
    assert gate.answer_span("no number here", "5") is None


def test_t_interval_matches_the_table(gate):
    summary = gate.interval([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["sd"] == 1.0
    assert summary["ci95"] == pytest.approx([2.0 - 4.303 / 3**0.5, 2.0 + 4.303 / 3**0.5], abs=1e-3)
    assert gate.interval([1.0])["ci95"] is None
