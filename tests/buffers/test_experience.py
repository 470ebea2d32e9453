"""ExGRPO's trainer-free core alone: the experience buffer, bucket sampling, trajectory choice, the shaped weight."""

import json
import math
import random
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from saved_state_edits import replaced

from zppo_trl.buffers.experience import (
    BYTES_PER_TOKEN_IN_JSON,
    BYTES_PER_TOKEN_IN_MEMORY,
    ExperienceBuffer,
    Trajectory,
)
from zppo_trl.buffers.hard import BufferStateError
from zppo_trl.methods.exgrpo import (
    bucket_probabilities,
    delayed_start,
    lowest_entropy,
    sample_experience,
    shaped_surrogate,
    shaped_weight,
)


def traj(*ids: int, round_index: int = 0) -> Trajectory:
    return Trajectory(list(ids), [-0.5 - 0.01 * i for i in ids], round_index)


def visit(buf, pid, pattern: str, round_index: int = 0, start: int = 1000):
    """A visit from a pattern: '1' correct, '0' wrong, '-' unscorable; rollout i's completion is [start + i]."""
    correct = [None if c == "-" else c == "1" for c in pattern]
    trajectories = [traj(start + i, round_index=round_index) for i in range(len(pattern))]
    return buf.update(pid, {"prompt": f"question {pid}"}, correct, trajectories, round_index)


# ----------------------------------------------------------------------------------------------------------------------
# the buffer


def test_holds_only_the_successes_of_partially_solved_questions():
    buf = ExperienceBuffer()
    assert visit(buf, "a", "0110") == "stored"
    assert visit(buf, "b", "0000") == "ignored"  # nothing to store
    assert buf.ids() == ["a"] and buf.counts("a") == (2, 4) and buf.accuracy("a") == 0.5
    assert [t.completion_ids for t in buf.trajectories("a")] == [[1001], [1002]]  # the correct rollouts, in order
    assert buf.row("a") == {"prompt": "question a"} and buf.row("b") is None
    assert buf.counters() == {"stored_trajectories": 2, "retired": 0, "evicted": 0} and buf.stored_tokens == 2


def test_a_zero_visit_keeps_the_question_and_sets_its_latest_accuracy():
    buf = ExperienceBuffer()
    visit(buf, "a", "0110")
    assert visit(buf, "a", "00000000") == "ignored"
    assert buf.counts("a") == (0, 8) and len(buf.trajectories("a")) == 2


def test_a_full_visit_retires_and_removes_and_a_retired_question_is_never_stored_again():
    buf = ExperienceBuffer()
    visit(buf, "a", "0110")
    assert visit(buf, "a", "1111") == "retired"
    assert "a" not in buf and buf.is_retired("a") and buf.trajectories("a") == [] and buf.stored_tokens == 0
    assert visit(buf, "a", "0100") == "ignored" and "a" not in buf
    assert visit(buf, "new", "11") == "retired" and buf.retired == {"a", "new"}  # retires without being buffered
    assert buf.counters()["retired"] == 2


def test_unscorable_rollouts_do_not_count():
    buf = ExperienceBuffer()
    assert visit(buf, "a", "----") == "unscored" and len(buf) == 0
    assert visit(buf, "a", "11-0") == "stored" and buf.counts("a") == (2, 3)
    assert visit(buf, "b", "1--1") == "retired"  # 2/2 scored


def test_newest_trajectories_are_kept_and_identical_ones_replaced():
    buf = ExperienceBuffer(max_per_question=3)
    for r in range(3):  # two successes per visit, different completions each round
        visit(buf, "a", "1100", round_index=r, start=10 * r)
    assert [t.completion_ids[0] for t in buf.trajectories("a")] == [11, 20, 21]  # oldest dropped
    visit(buf, "a", "1000", round_index=7, start=20)  # completion [20] again: replaces the stored one, newest last
    held = buf.trajectories("a")
    assert [t.completion_ids[0] for t in held] == [11, 21, 20] and held[-1].round == 7
    assert buf.stored_tokens == 3 and buf.counters()["stored_trajectories"] == 7


def test_a_correct_rollout_needs_a_trajectory_and_lengths_must_match():
    buf = ExperienceBuffer()
    with pytest.raises(ValueError, match="without a `Trajectory`"):
        buf.update("a", {}, [True, False], [None, None], 0)
    with pytest.raises(ValueError, match="one trajectory"):
        buf.update("a", {}, [True, False], [traj(1)], 0)
    with pytest.raises(ValueError, match="logps"):
        Trajectory([1, 2], [-0.1], 0)


def test_capacity_evicts_the_oldest_inserted_question():
    buf = ExperienceBuffer(capacity=2)
    visit(buf, 1, "10")
    visit(buf, 2, "10")
    visit(buf, 1, "01")  # a refresh keeps the FIFO position
    visit(buf, 3, "10")  # evicts 1, the oldest inserted
    assert buf.ids() == [2, 3] and buf.counters()["evicted"] == 1


def test_token_cap_evicts_the_oldest_until_it_fits():
    buf = ExperienceBuffer(max_tokens=5)
    buf.update("a", {}, [True, False], [Trajectory([1, 2, 3], [-1.0] * 3, 0), None], 0)
    buf.update("b", {}, [True, False], [Trajectory([4, 5], [-1.0] * 2, 0), None], 0)
    assert buf.stored_tokens == 5 and buf.ids() == ["a", "b"]
    buf.update("c", {}, [True, False], [Trajectory([6], [-1.0], 0), None], 0)  # 6 tokens > 5: "a" goes
    assert buf.ids() == ["b", "c"] and buf.stored_tokens == 3 and buf.total_evicted == 1
    buf.update("d", {}, [True, False], [Trajectory(list(range(9)), [-1.0] * 9, 0), None], 0)  # alone over the cap
    assert len(buf) == 0 and buf.stored_tokens == 0 and buf.total_evicted == 4


def test_bytes_per_token_figures_match_a_measurement():
    rng = random.Random(0)
    n = 2000
    t = Trajectory([rng.randrange(1000, 151_000) for _ in range(n)], [-rng.expovariate(1.0) for _ in range(n)], 3)
    assert t.nbytes() / n == pytest.approx(BYTES_PER_TOKEN_IN_MEMORY, rel=0.05)
    assert len(json.dumps([t.completion_ids, t.logps, t.round])) / n == pytest.approx(BYTES_PER_TOKEN_IN_JSON, rel=0.1)


@pytest.mark.parametrize("kwargs", [{"capacity": 0}, {"max_per_question": 0}, {"max_tokens": 0}])
def test_bad_config_raises_naming_the_field(kwargs):
    with pytest.raises(ValueError, match=f"`{next(iter(kwargs))}`"):
        ExperienceBuffer(**kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# state


def filled_buffer() -> ExperienceBuffer:
    buf = ExperienceBuffer(capacity=3, max_per_question=2)
    visit(buf, 3, "1000", round_index=1)
    visit(buf, "q-7", "1100", round_index=2)
    visit(buf, 11, "1110", round_index=2)
    visit(buf, 3, "0110", round_index=3, start=50)
    visit(buf, "done", "1111")
    visit(buf, 5, "10")  # evicts 3
    return buf


def test_state_round_trips_through_json_keeping_id_types():
    buf = filled_buffer()
    restored = ExperienceBuffer(capacity=3, max_per_question=2)
    restored.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert restored == buf and restored.ids() == ["q-7", 11, 5] and 11 in restored and "11" not in restored
    assert restored.trajectories(11) == buf.trajectories(11) and restored.stored_tokens == buf.stored_tokens
    assert restored.is_retired("done") and restored.counters() == buf.counters()
    assert json.dumps(buf.state_dict()) == json.dumps(restored.state_dict())  # deterministic order


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("schema_version",), 99, "`schema_version`"),
        (("entries",), {"a": 1}, "`entries`"),
        (("retired",), "done", "`retired`"),
        (("total_evicted",), -1, "`total_evicted`"),
        (("total_stored_trajectories",), "3", "`total_stored_trajectories`"),
        (("entries", 0, 0), 1.5, "`entries[0].id`"),
        (("entries", 0, 1), 4, "`entries[0]`"),  # k == K: a buffered question cannot be solved
        (("entries", 0, 3), [], "`entries[0].row`"),
        (("entries", 0, 4), [], "`entries[0].trajectories`"),
        (("entries", 1, 4, 0, 1), [-0.1, -0.2], "`entries[1].trajectories[0].logps`"),  # mismatched lengths
        (("entries", 1, 4, 0, 0), ["x"], "`entries[1].trajectories[0].completion_ids`"),
        (("entries", 1, 4, 0, 2), -1, "`entries[1].trajectories[0].round`"),
        (("retired", 0), 11, "`retired` holds buffered ids"),
    ],
)
def test_a_corrupted_state_raises_naming_the_field_and_changes_nothing(path, value, field):
    buf = filled_buffer()
    before = buf.state_dict()
    with pytest.raises(BufferStateError, match=field.replace("[", r"\[").replace("]", r"\]")):
        buf.load_state_dict(replaced(before, path, value))
    assert buf.state_dict() == before


def test_a_state_that_does_not_fit_this_config_is_refused():
    state = filled_buffer().state_dict()
    with pytest.raises(BufferStateError, match="capacity"):
        ExperienceBuffer(capacity=2, max_per_question=2).load_state_dict(state)
    with pytest.raises(BufferStateError, match="max_per_question"):
        ExperienceBuffer(capacity=3, max_per_question=1).load_state_dict(state)
    with pytest.raises(BufferStateError, match="max_tokens"):
        ExperienceBuffer(capacity=3, max_per_question=2, max_tokens=2).load_state_dict(state)


visits = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 3, "a", "b", "c"]),
        st.lists(st.sampled_from("01-"), min_size=1, max_size=6).map("".join),
        st.integers(0, 3),  # completion offset: identical completions recur
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(visits)
def test_invariants_and_state_round_trip_under_random_visits(sequence):
    buf = ExperienceBuffer(capacity=3, max_per_question=2, max_tokens=5)
    for r, (pid, pattern, offset) in enumerate(sequence):
        outcome = visit(buf, pid, pattern, round_index=r, start=offset)
        scored = [c for c in pattern if c != "-"]
        if outcome == "stored":
            assert 0 < scored.count("1") < len(scored)
        if outcome == "retired":
            assert set(scored) == {"1"} and pid not in buf
        for held in buf.ids():
            k, K = buf.counts(held)
            assert 0 <= k < K and 1 <= len(buf.trajectories(held)) <= 2 and not buf.is_retired(held)
        assert len(buf) <= 3 and buf.stored_tokens == sum(len(t) for p in buf.ids() for t in buf.trajectories(p))
        assert buf.stored_tokens <= 5
    restored = ExperienceBuffer(capacity=3, max_per_question=2, max_tokens=5)
    restored.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert restored == buf


# ----------------------------------------------------------------------------------------------------------------------
# sampling


def by_hand(accuracies):
    """The paper's bucket probability written out: N(acc; 0.5, 1) without its constant, renormalised."""
    weights = {acc: math.exp(-((acc - 0.5) ** 2) / 2) for acc in set(accuracies)}
    return {acc: w / sum(weights.values()) for acc, w in weights.items()}


def bucketed_buffer(size_per_count: dict[int, int], K: int = 8) -> ExperienceBuffer:
    """A buffer with `size_per_count[k]` questions of accuracy k/K."""
    buf = ExperienceBuffer()
    for k, size in size_per_count.items():
        for j in range(size):
            visit(buf, f"k{k}-{j}", "1" * k + "0" * (K - k))
    return buf


def test_bucket_probabilities_equal_the_formula():
    buf = bucketed_buffer({1: 3, 4: 1, 6: 2, 7: 5})
    accuracies = [buf.accuracy(pid) for pid in buf.ids()]
    probabilities = bucket_probabilities(accuracies)
    assert list(probabilities) == [1 / 8, 4 / 8, 6 / 8, 7 / 8]  # one bucket per accuracy, ascending
    expected = by_hand(accuracies)
    assert probabilities == pytest.approx(expected, abs=1e-12) and sum(probabilities.values()) == pytest.approx(1)
    # ExGRPO's code: N(k; K/2, 1) on the count, i.e. sigma = 1/K in accuracy units
    code = bucket_probabilities(accuracies, sigma=1 / 8)
    weights = {k / 8: math.exp(-((k - 4) ** 2) / 2) for k in (1, 4, 6, 7)}
    assert code == pytest.approx({a: w / sum(weights.values()) for a, w in weights.items()}, abs=1e-12)
    assert bucket_probabilities([]) == {}


def test_ten_thousand_single_draws_match_the_bucket_probabilities():
    """Each draw picks one question from the full buffer; bucket frequencies must lie within 4 standard errors
    sqrt(p (1 - p) / N) of the probabilities (a false alarm about once in 16,000 runs per bucket)."""
    sizes = {1: 3, 3: 1, 4: 2, 7: 6}
    buf = bucketed_buffer(sizes)
    rng = random.Random(1234)
    draws = 20_000
    counts = Counter(buf.accuracy(sample_experience(buf, 1, rng)[0]) for _ in range(draws))
    probabilities = bucket_probabilities([k / 8 for k in sizes])
    for acc, p in probabilities.items():
        standard_error = math.sqrt(p * (1 - p) / draws)
        assert abs(counts[acc] / draws - p) < 4 * standard_error, (acc, counts[acc] / draws, p)
    # uniform within a bucket: the 6 questions of accuracy 7/8
    within = Counter(pid for pid in (sample_experience(buf, 1, rng)[0] for _ in range(draws)) if pid.startswith("k7"))
    total = sum(within.values())
    for pid in (f"k7-{j}" for j in range(6)):
        assert abs(within[pid] / total - 1 / 6) < 4 * math.sqrt((1 / 6) * (5 / 6) / total)


def test_draws_without_replacement_never_repeat_and_stop_when_the_pool_is_empty():
    buf = bucketed_buffer({1: 3, 4: 2, 6: 1})
    rng = random.Random(0)
    for _ in range(200):
        drawn = sample_experience(buf, 4, rng)
        assert len(drawn) == len(set(drawn)) == 4
    everything = sample_experience(buf, 100, rng)
    assert sorted(everything) == sorted(buf.ids())  # fewer than asked: all there are, each once
    assert set(sample_experience(buf, 100, rng, exclude=["k1-0", "k6-0"])) == set(buf.ids()) - {"k1-0", "k6-0"}
    assert sample_experience(buf, 0, rng) == [] and sample_experience(ExperienceBuffer(), 3, rng) == []


def test_an_emptied_bucket_leaves_and_the_rest_renormalise():
    """Two buckets of one question each: the second draw is always the other question, and which comes first
    follows the bucket probabilities."""
    buf = bucketed_buffer({1: 1, 4: 1})
    rng = random.Random(7)
    draws = 10_000
    first = Counter(sample_experience(buf, 2, rng)[0] for _ in range(draws))
    p = bucket_probabilities([1 / 8, 4 / 8])[4 / 8]
    assert abs(first["k4-0"] / draws - p) < 4 * math.sqrt(p * (1 - p) / draws)


def test_draws_are_deterministic_for_a_seed_whatever_the_insertion_order():
    forward = bucketed_buffer({1: 3, 4: 2, 6: 4})
    backward = ExperienceBuffer()
    for pid in reversed(forward.ids()):
        k = int(pid[1])
        visit(backward, pid, "1" * k + "0" * (8 - k))
    assert forward.ids() != backward.ids()
    assert sample_experience(forward, 5, random.Random(3)) == sample_experience(backward, 5, random.Random(3))
    assert sample_experience(forward, 5, random.Random(3)) != sample_experience(forward, 5, random.Random(4))


def test_mixed_id_types_sample_without_error():
    buf = ExperienceBuffer()
    for pid in [3, "b", 1, "a"]:
        visit(buf, pid, "10")
    assert sorted(map(str, sample_experience(buf, 4, random.Random(0)))) == ["1", "3", "a", "b"]


# ----------------------------------------------------------------------------------------------------------------------
# trajectory choice, shaping, delayed start


def test_lowest_entropy_picks_the_most_confident_trajectory_newest_on_ties():
    held = [traj(1), traj(2), traj(3), traj(4)]
    assert lowest_entropy(held, [0.9, 0.3, 0.5, 0.4]) == 1
    assert lowest_entropy(held, [0.9, 0.3, 0.5, 0.3]) == 3
    assert lowest_entropy(held[:1], [2.0]) == 0
    with pytest.raises(ValueError):
        lowest_entropy(held, [0.1])
    with pytest.raises(ValueError):
        lowest_entropy(held, [0.1, float("nan"), 0.2, 0.3])


def test_shaped_weight_on_floats_and_tensors():
    assert shaped_weight(1.0) == pytest.approx(1 / 1.1) and shaped_weight(0.1) == pytest.approx(0.5)
    assert shaped_weight(3.0, beta=1.0) == pytest.approx(0.75)
    w = torch.tensor([0.0, 0.1, 1.0, 10.0])
    assert torch.allclose(shaped_weight(w), w / (w + 0.1))
    with pytest.raises(ValueError, match="`beta`"):
        shaped_weight(1.0, beta=0.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), beta=st.sampled_from([0.1, 0.3, 1.0]))
def test_shaped_surrogate_in_trls_ratio_gives_the_gradient_of_the_shaped_objective(seed, beta):
    generator = torch.Generator().manual_seed(seed)
    shape = (3, 7)
    logps = (-torch.rand(shape, generator=generator, dtype=torch.float64) * 4).requires_grad_()
    stored = -torch.rand(shape, generator=generator, dtype=torch.float64) * 4
    advantages = torch.randn(3, 1, generator=generator, dtype=torch.float64)

    X = shaped_surrogate(logps, stored, beta)
    w = torch.exp(logps - stored)
    assert torch.allclose(X, w / (w + beta), atol=1e-12)  # value: f(w)
    coef = torch.exp(X - X.detach())  # TRL: exp(per_token_logps - old_per_token_logps)
    assert torch.equal(coef, torch.ones(shape, dtype=torch.float64))  # exactly 1 in value
    (grad_trl,) = torch.autograd.grad((coef * advantages).sum(), logps)

    w_direct = torch.exp(logps - stored)
    (grad_shaped,) = torch.autograd.grad((shaped_weight(w_direct, beta) * advantages).sum(), logps)
    assert torch.allclose(grad_trl, grad_shaped, atol=1e-6)
    # and by hand: f'(w) w = beta w / (w + beta)^2
    by_hand = advantages * beta * w.detach() / (w.detach() + beta) ** 2
    assert torch.allclose(grad_trl, by_hand, atol=1e-6)


def test_shaped_surrogate_is_finite_for_extreme_log_probs_and_ignores_stored_gradients():
    logps = torch.tensor([0.0, -200.0, -0.001], requires_grad=True)
    stored = torch.tensor([-200.0, 0.0, -0.001], requires_grad=True)
    X = shaped_surrogate(logps, stored)
    assert torch.isfinite(X).all() and X[0].item() == pytest.approx(1.0) and X[1].item() == pytest.approx(0.0)
    assert X[2].item() == pytest.approx(1 / 1.1)
    X.sum().backward()
    assert stored.grad is None and torch.isfinite(logps.grad).all()


def test_delayed_start_switches_on_above_the_threshold():
    assert not delayed_start(0.35) and delayed_start(0.36) and not delayed_start(0.1)
    assert delayed_start(0.6, threshold=0.5) and not delayed_start(0.5, threshold=0.5)
    with pytest.raises(ValueError, match="`threshold`"):
        delayed_start(0.5, threshold=1.5)
