"""examples/benchmark_overhead.py: one short run per method that checks what the benchmark counts, not its timings."""

import os

import pytest
from example_scripts import load_example

LENGTH, PROMPTS, G = 8, 4, 4


@pytest.fixture(scope="module")
def bench():
    return load_example("benchmark_overhead")


@pytest.fixture(scope="module")
def results(bench):
    # steps=2: step 2 is the measured one, and ZPPO's round 2 holds new, replayed and hint groups
    return {
        m: bench.run_one(m, LENGTH, 2, "1m", PROMPTS, G, profile=True) for m in ("grpo", "zppo", "zppo_one_forward")
    }


def test_every_completion_is_exactly_the_requested_length_and_tokens_add_up(results):
    for r in results.values():
        assert r["completion_length_min"] == r["completion_length_max"] == LENGTH
        assert r["completion_tokens_per_step"] == r["completions_per_step"] * LENGTH
        assert r["processed_tokens_per_step"] == r["prompt_tokens_per_step"] + r["completion_tokens_per_step"]
        # the loss forward sees exactly the counted tokens as unpadded positions
        profile = r["profile"]
        unpadded = profile["loss_forward_positions_per_step"] * (1 - profile["loss_forward_padding_share"])
        assert unpadded == pytest.approx(r["processed_tokens_per_step"])


def test_round_shapes_and_hint_prompt_length(results):
    grpo, zppo = results["grpo"], results["zppo"]
    assert grpo["completions_per_step"] == PROMPTS * G and grpo["hint_completions_per_step"] == 0
    # 4 new + 1 replayed (0.25 x 4) + 1 hint prompt (0.25 x 4), G rollouts each
    assert zppo["completions_per_step"] == (PROMPTS + 1 + 1) * G and zppo["hint_completions_per_step"] == G
    # the plain prompt measured from the masks is the one the script sized the hint budget from
    assert zppo["plain_prompt_tokens"] == pytest.approx(zppo["plain_prompt_tokens_dataset"], abs=1)
    assert zppo["plain_prompt_tokens"] == pytest.approx(grpo["plain_prompt_tokens"], abs=1)
    # short completions make short wrong candidates: the hint prompt is long, but under the 10x budget
    assert 5 < zppo["hint_to_plain_ratio"] <= 10.5


def test_profile_splits_the_step_and_the_one_forward_pads(results):
    grpo, zppo, one = results["grpo"], results["zppo"], results["zppo_one_forward"]
    assert grpo["profile"]["generation_hint_s"] == 0 and zppo["profile"]["generation_hint_s"] > 0
    for r in results.values():
        parts = [v for k, v in r["profile"].items() if k.endswith("_s") and k != "step_other_s"]
        assert all(v >= 0 for v in parts) and sum(parts) <= r["seconds_per_step"]
    assert one["profile"]["loss_forward_padding_share"] > max(0.3, zppo["profile"]["loss_forward_padding_share"])


def test_ratios_tables_and_figure(bench, results, tmp_path):
    rows = list(results.values())
    bench.add_ratios(rows)
    assert results["grpo"]["x_grpo_per_step"] == 1.0 and "x_grpo_replay_per_step" not in results["zppo"]
    expected = results["zppo"]["seconds_per_processed_token"] / results["grpo"]["seconds_per_processed_token"]
    assert results["zppo"]["x_grpo_per_processed_token"] == pytest.approx(expected)
    header, table = bench.table_rows(rows)
    assert "| 8 | zppo |" in bench.markdown(header, table) and len(table) == 3
    bench.plot(rows, tmp_path / "overhead.png")
    assert 0 < os.path.getsize(tmp_path / "overhead.png") < 100_000
