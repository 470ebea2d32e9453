"""What every method trains on stays what it was: the buffers, round records (ids, hint prompts), advantages, losses
and zppo/* metrics of each method's first four rounds on the tiny model equal the committed recording
(tests/fixtures/pinned_rounds.json, written by tests/pinned_rounds.py). A restructuring of the trainer must pass this
unchanged; a deliberate change of behaviour re-records the fixture and says why in its commit."""

import json
import os

import pytest
from paths import FIXTURES
from pinned_rounds import METHODS, assert_same, record  # tests/ is on sys.path (no package)

FIXTURE = os.path.join(FIXTURES, "pinned_rounds.json")


@pytest.fixture(scope="module")
def pinned():
    with open(FIXTURE) as f:
        return json.load(f)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_trains_on_what_it_did(pinned, method):
    recorded = json.loads(json.dumps(record(method)))  # through JSON, as the fixture was written
    assert_same(recorded, pinned[method], method)


def test_the_recording_exercises_every_path(pinned):
    kinds = {h["kind"] for rounds in pinned.values() for r in rounds["rounds"] for h in r["last"]["hints"]}
    assert {"bcq", "ncq", "hint", "prefix", "retrospective"} <= kinds
    assert any(r["last"]["replayed"] for r in pinned["zppo"]["rounds"])
    assert any(r["last"]["experience"] for r in pinned["exgrpo"]["rounds"])
    assert any(h.get("zppo/injected_responses") for h in pinned["teacher_response"]["logged"])
    assert pinned["zppo"]["rounds"][-1]["buffer"]["total_graduated"] > 0
