"""Retrospective Replay's core alone (zppo_trl/retrospective.py): where a rollout is cut into a state, which states
are stored, kept, dropped and replayed, and the buffer's state round trip. No model: a word tokenizer (words and
whitespace runs, so it round-trips text) and the tiny char tokenizer."""

import json
import random
import re

import pytest
from saved_state_edits import replaced

from zppo_trl.buffers.hard import BufferStateError
from zppo_trl.buffers.states import RetrospectiveBuffer, is_promising
from zppo_trl.methods.baselines import mentions_answer
from zppo_trl.methods.retrospective import continuation_success_vs_plain, harvest_state, rollout_state, select_states


def words(text):
    return re.findall(r"\S+|\s+", text)


def join(tokens):
    return "".join(tokens)


# ----------------------------------------------------------------------------------------------------------------------
# cut points


@pytest.mark.parametrize(
    "completion, answer, fraction, tokenize, expected",
    [
        # 15 tokens, the cut keeps 8 ("a b\nc d "): snapped back to the line break, which the state keeps
        ("a b\nc d e f\nso 42", "42", 0.5, words, "a b\n"),
        # sentence end: the state stops after the full stop; the space is left to the continuation
        ("Add 3 and 4. That gives seven so 42", "42", 0.5, words, "Add 3 and 4."),
        # the decimal point of 8.5 is not a sentence end; no boundary: the token cut is kept as it is
        ("half of 17 is 8.5 then double 42", "42", 0.7, words, "half of 17 is 8.5 then"),
        # a full stop that ends the cut counts when whitespace follows it in the rollout
        ("one two. three four five 42", "42", 0.25, words, "one two."),
        # a leading line break is a boundary with nothing before it: the state is never blank, the cut is kept
        ("\nx y z w v u 42", "42", 0.5, words, "\nx y z "),
        # the last boundary's prefix states the answer (7 + 1 = 8): an earlier boundary is used
        ("3 + 4 = 7.\nThen 7 + 1 = 8.\nSo \\boxed{8}", "8", 0.9, words, "3 + 4 = 7.\n"),
        # 18 does not state 8 (whole-number match), so the step "9 + 9 = 18." may stay
        ("9 + 9 = 18.\nminus 10 is 8.\nSo 8", "8", 0.6, words, "9 + 9 = 18.\n"),
        # the answer comes before any boundary: nothing answer-free is left
        ("42 is it.\nyes indeed it is", "42", 0.8, words, None),
        # char tokens, cut inside "18": "…is 1" would hand over half of the answer
        ("so it is 18", "18", 0.9, list, None),
        # char tokens, cut inside another word: kept
        ("we add them to get 18", "18", 0.45, list, "we add the"),
        # one token: no prefix of it is a proper part (as solution_prefix)
        ("42", "42", 0.5, words, None),
    ],
)
def test_rollout_state(completion, answer, fraction, tokenize, expected):
    state = rollout_state(completion, answer, tokenize, join, fraction)
    assert state == expected
    if state is not None:  # the invariants every case must keep
        assert completion.startswith(state) and state.strip() and not mentions_answer(state, answer)


def test_rollout_state_with_the_tiny_char_tokenizer():
    from zppo_trl.tiny import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    completion = "First, 23 + 45 = 68.\nThen 68 + 1 = 69.\nThe answer is \\boxed{69}."
    # 64 characters, the cut keeps 32 ("…= 68.\nThen 68 + 1"): snapped back to the first line break
    assert rollout_state(completion, "69", tokenize, tokenizer.decode) == "First, 23 + 45 = 68.\n"


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_state_fraction_out_of_range_raises(fraction):
    with pytest.raises(ValueError, match="state_fraction"):
        rollout_state("a b c", "x", words, join, fraction)


def test_harvest_state_takes_the_first_correct_rollout_that_has_a_state():
    completions = ["wrong.\nso 3", "42 first.\nthen 42", "step one.\nthen 42", "step two.\nthen 42"]
    # rollout 0 is wrong; rollout 1 is correct but states the answer before any boundary: rollout 2's state
    assert harvest_state(completions, [False, True, True, True], "42", words, join) == "step one.\n"
    assert (
        harvest_state(completions, [False, True, False, False], "42", words, join) is None
    )  # no state in a correct one
    assert harvest_state(completions, [False] * 4, "42", words, join) is None  # none correct


# ----------------------------------------------------------------------------------------------------------------------
# harvest and promise

HARVEST_1 = ("harvest", "s1", 0.25, 0)


@pytest.mark.parametrize(
    "steps, expected_outcomes, expected_prefix",
    [
        ([("harvest", "s1", 0.25, 0)], ["stored"], "s1"),  # hard, solved once: stored
        ([("harvest", "s1", 0.5, 0)], ["easy"], None),  # accuracy == τ is not hard
        ([("harvest", "s1", 0.25, 0), ("harvest", "s2", 0.125, 1)], ["stored", "replaced"], "s2"),  # newest wins
        # measured 3/4 beats plain 0.25: the stored state is kept over a fresh 1-of-1 harvest
        ([HARVEST_1, ("replay", 3, 4), ("harvest", "s2", 0.25, 1)], ["stored", "updated", "kept"], "s1"),
        # measured 0/2 (promising only through the prior, 1/3 > 0.25) loses to the newer harvest
        ([HARVEST_1, ("replay", 0, 2), ("harvest", "s2", 0.25, 1)], ["stored", "updated", "replaced"], "s2"),
        # a harvest at accuracy >= τ graduates the question's state
        ([("harvest", "s1", 0.25, 0), ("harvest", "s2", 0.75, 1)], ["stored", "graduated"], None),
        # the harvest closes at `harvest_until_round` = 2
        ([("harvest", "s1", 0.25, 1), ("harvest", "s2", 0.25, 2)], ["stored", "closed"], "s1"),
        ([("harvest", "s1", 0.25, 2)], ["closed"], None),
    ],
)
def test_harvest(steps, expected_outcomes, expected_prefix):
    buf = RetrospectiveBuffer(min_tries=8, harvest_until_round=2)
    outcomes = []
    for kind, *args in steps:
        if kind == "harvest":
            prefix, accuracy, round_index = args
            outcomes.append(buf.harvest("q", prefix, accuracy, round_index))
        else:
            outcomes.append(buf.record_replay("q", *args))
    assert outcomes == expected_outcomes
    assert (buf.state("q").prefix if "q" in buf else None) == expected_prefix
    totals = buf.counters()
    left = totals["replaced"] + totals["dropped_unpromising"] + totals["dropped_graduated"] + totals["evicted"]
    assert totals["stored"] == left + len(buf)


def test_harvest_rejects_what_cannot_come_from_a_correct_rollout():
    buf = RetrospectiveBuffer()
    with pytest.raises(ValueError, match="accuracy"):
        buf.harvest("q", "a state", 0.0)  # no correct rollout, no state
    with pytest.raises(ValueError, match="prefix"):
        buf.harvest("q", "  \n", 0.25)
    with pytest.raises(ValueError, match="prompt_id"):
        buf.harvest(1.5, "a state", 0.25)
    assert len(buf) == 0 and buf.counters()["stored"] == 0


def test_promise_counts_the_harvest_as_one_success_in_one_try():
    buf = RetrospectiveBuffer(min_tries=8)
    buf.harvest("q", "s", 0.375)
    state = buf.state("q")
    assert state.continuation_success == 1.0 and is_promising(state)  # fresh: 1/1 > 0.375
    assert buf.record_replay("q", 2, 4) == "updated"
    assert (state.successes, state.tries, state.continuation_success) == (2, 4, 0.6)
    assert buf.record_replay("q", 0, 3) == "updated"  # 3/8 = 0.375, not promising, but only 7 < 8 tries
    assert not is_promising(state) and "q" in buf
    assert buf.record_replay("q", 0, 1) == "dropped"  # 3/9 after 8 tries: judged and dropped
    assert "q" not in buf and buf.counters()["dropped_unpromising"] == 1 and buf.counters()["replayed"] == 3
    assert buf.record_replay("q", 1, 1) == "absent"  # a replay finishing after its state left changes nothing
    assert buf.counters()["replayed"] == 3


def test_a_rising_plain_accuracy_makes_a_state_unpromising_and_graduation_drops_it():
    buf = RetrospectiveBuffer(hard_threshold=0.5, min_tries=4)
    buf.harvest("a", "sa", 0.125)
    buf.harvest("b", "sb", 0.125)
    buf.record_replay("a", 1, 4)  # 2/5 = 0.4 > 0.125: promising
    buf.record_replay("b", 1, 4)
    assert buf.record_plain("a", 0.375) == "updated"  # 0.4 > 0.375: still promising
    assert buf.record_plain("a", 0.4375) == "dropped"  # 0.4 < 0.4375 after 4 tries
    assert buf.record_plain("b", 0.5) == "graduated"  # accuracy reached τ
    assert buf.record_plain("c", 0.0) == "absent"  # no state, nothing kept
    assert buf.record_replay("b", 0, 0) == "absent"
    assert len(buf) == 0
    assert buf.counters() == {
        "stored": 2, "replaced": 0, "replayed": 2, "dropped_unpromising": 1, "dropped_graduated": 1, "evicted": 0
    }  # fmt: skip


def test_unscored_replays_change_nothing_and_bad_counts_raise():
    buf = RetrospectiveBuffer()
    buf.harvest(7, "s", 0.25)
    assert buf.record_replay(7, 0, 0) == "unscored" and buf.state(7).tries == 0 and buf.counters()["replayed"] == 0
    for successes, tries in [(3, 2), (-1, 2), (1.0, 2)]:
        with pytest.raises(ValueError, match="successes"):
            buf.record_replay(7, successes, tries)
    with pytest.raises(ValueError, match="accuracy"):
        buf.record_plain(7, 1.5)


# ----------------------------------------------------------------------------------------------------------------------
# selection, capacity, report


def _buffer_for_selection():
    buf = RetrospectiveBuffer(min_tries=4)
    for pid, accuracy in [(5, 0.25), ("q-a", 0.125), (3, 0.25), (9, 0.25), ("q-b", 0.25), (1, 0.375)]:
        buf.harvest(pid, f"state of {pid}", accuracy)
    return buf


def test_selection_is_hardest_first_and_deterministic_for_a_seed():
    buf = _buffer_for_selection()
    picks = {seed: select_states(buf, 3, random.Random(seed)) for seed in range(20)}
    assert picks[0] == select_states(buf, 3, random.Random(0))  # same seed, same buffer: same choice
    for chosen in picks.values():
        assert chosen[0] == "q-a" and len(set(chosen)) == 3  # the hardest first, no repeats
        assert set(chosen[1:]) <= {5, 3, 9, "q-b"}  # then two of the four tied at 0.25, never 1 (0.375)
    assert len({tuple(chosen) for chosen in picks.values()}) > 1  # the rng breaks the ties
    # the order is built from the sorted ids, so it does not depend on the order of the harvests
    reordered = RetrospectiveBuffer(min_tries=4)
    for pid in reversed(buf.ids()):
        reordered.harvest(pid, f"state of {pid}", buf.state(pid).accuracy)
    assert select_states(reordered, 3, random.Random(4)) == picks[4]


def test_selection_respects_n_exclude_and_eligibility():
    buf = _buffer_for_selection()
    assert select_states(buf, 0, random.Random(0)) == []
    assert sorted(map(str, select_states(buf, 100, random.Random(0)))) == sorted(map(str, buf.ids()))  # all, once
    assert "q-a" not in select_states(buf, 6, random.Random(0), exclude={"q-a", 1})
    assert len(select_states(buf, 6, random.Random(0), exclude={"q-a", 1})) == 4
    buf.record_replay(9, 0, 3)  # 1/4 = 0.25, not > 0.25, but 3 < min_tries: still eligible, to reach a verdict
    assert 9 in select_states(buf, 6, random.Random(0))
    # resumed with a lower `min_tries`: an unpromising state with enough tries is held but not replayed
    stricter = RetrospectiveBuffer(min_tries=2)
    stricter.load_state_dict(buf.state_dict())
    assert 9 in stricter and 9 not in select_states(stricter, 6, random.Random(0))


def test_capacity_evicts_the_oldest_stored_state():
    buf = RetrospectiveBuffer(capacity=2)
    buf.harvest(1, "s1", 0.25)
    buf.harvest(2, "s2", 0.25)
    buf.harvest(1, "s1 again", 0.25)  # replaced: a new state, so it moves to the tail
    assert buf.ids() == [2, 1]
    assert buf.harvest(3, "s3", 0.25) == "stored"
    assert buf.ids() == [1, 3] and buf.counters()["evicted"] == 1 and buf.counters()["replaced"] == 1


def test_continuation_success_vs_plain():
    buf = RetrospectiveBuffer(min_tries=8)
    buf.harvest("a", "sa", 0.125)
    buf.harvest("b", "sb", 0.25)
    buf.harvest("c", "sc", 0.25)  # never replayed
    buf.record_replay("a", 3, 4)
    buf.record_plain("b", 0.125)
    buf.record_replay("b", 1, 4)
    report = continuation_success_vs_plain(buf)
    assert report["prompt_ids"] == ["a", "b"] and report["unreplayed"] == 1
    assert report["continuation_success"] == [0.75, 0.25] and report["plain_accuracy"] == [0.125, 0.125]
    assert report["mean_continuation_success"] == 0.5 and report["mean_plain_accuracy"] == 0.125
    buf.record_replay("b", 0, 4)  # 2/9 > 0.125: kept
    buf.record_plain("a", 0.5)  # graduates: its replays still count in the run-long figures
    report = continuation_success_vs_plain(buf)
    assert report["prompt_ids"] == ["b"] and report["all_replays_success"] == 4 / 12
    assert report["all_replays_plain_accuracy"] == pytest.approx((4 * 0.125 + 4 * 0.125 + 4 * 0.125) / 12)
    assert continuation_success_vs_plain(RetrospectiveBuffer())["mean_continuation_success"] is None


# ----------------------------------------------------------------------------------------------------------------------
# state round trip


def test_state_dict_round_trips_through_json_keeping_id_types():
    buf = RetrospectiveBuffer(capacity=3, min_tries=4)
    for pid in [3, "q-7", 11, "3"]:  # 4 harvests into 3 slots: one eviction
        buf.harvest(pid, f"step for {pid}.\n", 0.25, round_index=2)
    buf.record_replay(11, 2, 3)
    restored = RetrospectiveBuffer(capacity=3, min_tries=4)
    restored.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert restored == buf and restored.ids() == ["q-7", 11, "3"] and "3" in restored and 3 not in restored
    assert restored.state(11).successes == 2 and restored.counters() == buf.counters()


def _saved():
    buf = RetrospectiveBuffer(capacity=4)
    buf.harvest(1, "a state.\n", 0.25)
    buf.harvest("q", "another", 0.125)
    buf.record_replay(1, 1, 2)
    return json.loads(json.dumps(buf.state_dict()))


def _with(path, value):
    return replaced(_saved(), path, value)


@pytest.mark.parametrize(
    "state, field",
    [
        (_with(["schema_version"], 2), "schema_version"),
        (_with(["states"], {"1": []}), "states"),
        (_with(["states", 0], [1, "a state"]), "states[0]"),
        (_with(["states", 1, 0], True), "states[1].prompt_id"),
        (_with(["states", 1, 0], 1), "states[1].prompt_id"),  # repeated id
        (_with(["states", 0, 1], " "), "states[0].prefix"),
        (_with(["states", 0, 2], 3), "states[0].successes"),  # 3 successes in 2 tries
        (_with(["states", 0, 3], -1), "states[0].tries"),
        (_with(["states", 0, 5], 1.5), "states[0].accuracy"),
        (_with(["states", 0, 4], "0.25"), "states[0].stored_accuracy"),
        (_with(["states", 0, 6], 0.5), "states[0].stored_round"),
        (_with(["totals"], None), "totals"),
        (_with(["totals", "stored"], 5), "totals"),  # does not add up
        (_with(["totals", "evicted"], -1), "totals.evicted"),
        (_with(["replay_tries"], "2"), "replay_tries"),
        (_with(["replay_successes"], 3), "replay_successes"),  # more than the tries
        (_with(["replay_plain_expected"], 9.0), "replay_plain_expected"),
    ],
)
def test_a_bad_state_raises_naming_the_field_and_changes_nothing(state, field):
    buf = RetrospectiveBuffer(capacity=4)
    buf.harvest(5, "kept state", 0.25)
    before = buf.state_dict()
    with pytest.raises(BufferStateError, match=re.escape(f"`{field}`")):
        buf.load_state_dict(state)
    assert buf.state_dict() == before


def test_a_state_larger_than_the_capacity_raises():
    small = RetrospectiveBuffer(capacity=1)
    with pytest.raises(BufferStateError, match="capacity"):
        small.load_state_dict(_saved())


def test_totals_add_up_over_a_random_walk():
    """Every operation in random order: the totals identity holds and the state round-trips after each."""
    rng = random.Random(0)
    buf = RetrospectiveBuffer(capacity=5, min_tries=3, harvest_until_round=30)
    for step in range(400):
        pid = rng.choice([0, 1, 2, 3, 4, 5, 6, "x", "y"])
        kind = rng.random()
        if kind < 0.4:
            buf.harvest(pid, f"state {step}", rng.choice([0.125, 0.25, 0.375, 0.5, 1.0]), round_index=step // 10)
        elif kind < 0.7:
            tries = rng.randint(0, 4)
            buf.record_replay(pid, rng.randint(0, tries), tries)
        else:
            buf.record_plain(pid, rng.choice([0.0, 0.125, 0.25, 0.5]))
        totals = buf.counters()
        assert totals["stored"] == sum(v for k, v in totals.items() if k not in ("stored", "replayed")) + len(buf)
        assert len(buf) <= 5
        copy = RetrospectiveBuffer(capacity=5, min_tries=3, harvest_until_round=30)
        copy.load_state_dict(json.loads(json.dumps(buf.state_dict())))
        assert copy == buf
    assert all(buf.counters()[k] > 0 for k in ("stored", "replaced", "dropped_unpromising", "dropped_graduated"))
