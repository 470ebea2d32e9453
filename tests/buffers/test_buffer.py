"""HardQuestionBuffer alone: a table of visits, then a hypothesis state machine for its invariants."""

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from zppo_trl.buffers.hard import BufferStateError, HardQuestionBuffer, exit_rate
from zppo_trl.round.state import read_state_file, write_state_file


@pytest.mark.parametrize(
    "visits, expected_ids, expected_outcomes",
    [
        ([("a", 0, 8)], ["a"], ["admitted"]),  # 0/8 < 0.5: hard
        ([("a", 4, 8)], [], ["easy"]),  # 4/8 == τ is not hard (admit only below τ)
        ([("a", 3, 8)], ["a"], ["admitted"]),  # 3/8 < 0.5
        ([("a", 0, 8), ("a", 4, 8)], [], ["admitted", "graduated"]),  # reaching τ graduates
        ([("a", 0, 8), ("a", 2, 8)], ["a"], ["admitted", "updated"]),  # still hard: stays, accuracy refreshed
        ([("a", 0, 0)], [], ["unscored"]),  # nothing scorable: neither admitted nor graduated
        ([("a", 0, 8), ("b", 0, 8), ("a", 1, 8)], ["a", "b"], ["admitted", "admitted", "updated"]),  # FIFO kept
        ([("a", 0, 8), ("a", 8, 8), ("a", 0, 8)], ["a"], ["admitted", "graduated", "admitted"]),  # re-admission
    ],
)
def test_visits(visits, expected_ids, expected_outcomes):
    buf = HardQuestionBuffer(capacity=10)
    outcomes = [buf.visit(pid, correct, scored) for pid, correct, scored in visits]
    assert outcomes == expected_outcomes
    assert buf.ids() == expected_ids


def test_fifo_eviction_and_bins():
    buf = HardQuestionBuffer(capacity=2)
    buf.visit(1, 0, 8)
    buf.visit(2, 1, 8)
    buf.visit(3, 2, 8)  # evicts 1, the oldest
    assert buf.ids() == [2, 3] and buf.total_evicted == 1 and buf.evicted_by_bin == {0: 1}
    buf.visit(2, 7, 8)
    assert buf.graduated_by_bin == {1: 1} and buf.graduation_rate(1) == 1.0 and buf.graduation_rate(0) == 0.0
    assert buf.graduation_rate() == pytest.approx(1 / 3)


def test_state_dict_round_trips_through_json_keeping_id_types():
    buf = HardQuestionBuffer(capacity=5, hard_threshold=0.25)
    for pid in [3, "q-7", 11]:
        buf.visit(pid, 0, 4, round_index=2)
    buf.visit(11, 2, 4)
    restored = HardQuestionBuffer(capacity=5, hard_threshold=0.25)
    restored.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert restored == buf and restored.ids() == [3, "q-7"] and 3 in restored and "3" not in restored


def test_a_bad_state_changes_nothing():
    buf = HardQuestionBuffer()
    buf.visit(1, 0, 8)
    state = buf.state_dict()
    for broken in ({**state, "schema_version": 99}, {**state, "total_admitted": 5}, {**state, "entries": [[1.5]]}):
        with pytest.raises(BufferStateError):
            buf.load_state_dict(broken)
    assert buf.ids() == [1] and buf.total_admitted == 1
    with pytest.raises(BufferStateError, match="replay_capacity"):
        HardQuestionBuffer(capacity=1).load_state_dict({**state, "entries": [[1, 0, 0, 0], [2, 0, 0, 0]],
                                                        "total_admitted": 2})  # fmt: skip


def test_state_file_detects_truncation_and_tampering(tmp_path):
    path = tmp_path / "state.json"
    write_state_file(str(path), {"x": 1})
    assert read_state_file(str(path)) == {"x": 1}
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(BufferStateError, match="corrupted or truncated"):
        read_state_file(str(path))
    path.write_text(text.replace('"x": 1', '"x": 2'))
    with pytest.raises(BufferStateError, match="checksum"):
        read_state_file(str(path))
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("kwargs", [{"capacity": 0}, {"hard_threshold": 0.0}, {"hard_threshold": 1.5}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        HardQuestionBuffer(**kwargs)


class BufferMachine(RuleBasedStateMachine):
    """Random visit sequences against a plain-Python model of the rules."""

    def __init__(self):
        super().__init__()
        self.buf = HardQuestionBuffer(capacity=3)
        self.model: list = []  # ids in FIFO order
        self.graduated: set = set()

    @rule(pid=st.integers(0, 6), correct=st.integers(0, 4), scored=st.integers(0, 4))
    def visit(self, pid, correct, scored):
        correct = min(correct, scored)
        outcome = self.buf.visit(pid, correct, scored)
        if scored == 0:
            assert outcome == "unscored"
        elif correct / scored >= 0.5:
            if pid in self.model:
                self.model.remove(pid)
                assert outcome == "graduated"
            else:
                assert outcome == "easy"
        elif pid in self.model:
            assert outcome == "updated"
        else:
            assert outcome == "admitted"
            self.model.append(pid)
            self.model = self.model[-3:]  # FIFO eviction of the oldest

    @invariant()
    def matches_model(self):
        assert self.buf.ids() == self.model
        assert len(self.buf) <= self.buf.capacity
        b = self.buf
        assert b.total_admitted == b.total_graduated + b.total_evicted + len(b)
        assert sum(b.admitted_by_bin.values()) == b.total_admitted


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_exit_rate_needs_an_eviction_and_takes_the_buffer_s_for_one_entry_bin():
    buf = HardQuestionBuffer(capacity=1)
    buf.visit("a", 0, 8)
    buf.visit("a", 8, 8)  # graduates: no eviction yet, so the rate says nothing
    assert buf.exit_rate() is None and exit_rate(1, 0) is None
    buf.visit("b", 0, 8)
    buf.visit("c", 0, 8)  # evicts b
    assert buf.exit_rate() == exit_rate(1, 1) == 0.5
    assert exit_rate(2, 0, buffer_evicted=True) == 1.0  # a bin whose exits all graduated, in a buffer that evicted
    assert exit_rate(0, 0, buffer_evicted=True) is None  # a bin nothing left
