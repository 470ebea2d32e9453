"""Replay and hint selection alone: counts, units, determinism, ranking."""

import pytest

from zppo_trl.buffers.replay import group_unit, ratio_count, replay_count, sample_replay
from zppo_trl.methods.zppo import plan_hints
from zppo_trl.round.visits import HardVisit, fit_to_unit, rank_hard


@pytest.mark.parametrize(
    "ratio, n, expected",
    [(0.25, 384, 96), (0.25, 2, 1), (0.25, 1, 1), (0.25, 6, 2), (0.0, 100, 0), (1.0, 3, 3), (0.25, 10, 3)],
)  # (0.25, 2): 0.5 rounds up to at least 1; (0.25, 10): 2.5 rounds half up to 3
def test_ratio_count(ratio, n, expected):
    assert ratio_count(ratio, n) == expected


@pytest.mark.parametrize(
    "processes, spg, G, unit",
    [(1, 1, 8, 1), (2, 1, 4, 1), (2, 2, 4, 1), (2, 4, 4, 2), (4, 1, 2, 2), (2, 1, 3, 2), (1, 4, 2, 2)],
)
def test_group_unit_keeps_rows_divisible(processes, spg, G, unit):
    assert group_unit(processes, spg, G) == unit
    assert (unit * G) % (processes * spg) == 0


def test_replay_count_rounds_up_to_the_unit_and_is_zero_for_an_empty_buffer():
    assert replay_count(0.25, 8, buffer_size=5, unit=1) == 2
    assert replay_count(0.25, 8, buffer_size=5, unit=4) == 4
    assert replay_count(0.25, 8, buffer_size=0, unit=1) == 0
    assert replay_count(0.5, 8, buffer_size=1, unit=1) == 1  # never more than the buffer holds ...
    assert replay_count(0.5, 8, buffer_size=1, unit=2) == 2  # ... unless the shapes need a whole unit


def test_sample_replay_is_deterministic_uniform_and_avoids_the_rounds_new_prompts():
    ids = list(range(20))
    a = sample_replay(ids, 5, seed=0, round_index=3, exclude={0, 1, 2})
    assert a == sample_replay(ids, 5, seed=0, round_index=3, exclude={0, 1, 2})
    assert len(set(a)) == 5 and not set(a) & {0, 1, 2}
    assert a != sample_replay(ids, 5, seed=0, round_index=4, exclude={0, 1, 2})
    assert sorted(sample_replay([7, 8], 3, 0, 0)) in ([7, 7, 8], [7, 8, 8])  # more than the pool: a new permutation
    counts = {i: 0 for i in range(4)}  # uniform: every id drawn about equally often over many rounds
    for r in range(2000):
        for pid in sample_replay(range(4), 1, 0, r):
            counts[pid] += 1
    assert all(400 < c < 600 for c in counts.values())


def test_fit_to_unit():
    assert fit_to_unit([1, 2, 3], 2) == [1, 2]
    assert fit_to_unit([1], 3) == [1, 1, 1]
    assert fit_to_unit([], 2) == []


def visit(pid, correct, position, scored=4):
    return HardVisit(pid, position, correct, scored, {"prompt_id": pid}, ["wrong"] if correct < scored else [])


def test_rank_hard_orders_by_accuracy_then_position_and_skips_easy_and_unscored():
    visits = [visit("a", 1, 0), visit("b", 0, 1), visit("c", 3, 2), visit("d", 0, 3, scored=0), visit("e", 1, 4)]
    assert [v.prompt_id for v in rank_hard(visits, 0.5)] == ["b", "a", "e"]


def test_rank_hard_keeps_the_worst_visit_of_a_question_seen_twice():
    ranked = rank_hard([visit("a", 1, 0), visit("a", 0, 5)], 0.5)
    assert len(ranked) == 1 and ranked[0].position == 5


def test_plan_hints_bcq_then_ncq_until_the_slots_run_out():
    ranked = [visit("a", 0, 0), visit("b", 0, 1), visit("c", 1, 2)]
    plan = plan_hints(ranked, [True, False, True], slots=3, use_bcq=True, use_ncq=True)
    assert [(k, v.prompt_id) for k, v in plan] == [("bcq", "a"), ("ncq", "a"), ("ncq", "b")]
    plan = plan_hints(ranked, [True, True, True], slots=3, use_bcq=True, use_ncq=True)
    assert [(k, v.prompt_id) for k, v in plan] == [("bcq", "a"), ("ncq", "a"), ("bcq", "b")]  # last slot: BCQ wins
    plan = plan_hints(ranked, [True, True, True], slots=5, use_bcq=False, use_ncq=True)
    assert [k for k, _ in plan] == ["ncq"] * 3
