"""Two processes on CPU: `torchrun --standalone --nproc_per_node 2` (accelerate's CPU launcher starts only one here).
Both ranks must hold identical buffers and build identical hint prompts every round, equal to the committed record
(tests/fixtures/pinned_two_process_rounds.json); the same seed twice gives the same rounds; a run whose rank 0 is killed resumes under two processes to the uninterrupted run's end."""

import json
import os
import subprocess
import sys

import pytest
from paths import TESTS
from pinned_rounds import assert_same  # tests/ is on sys.path (no package)

HERE = TESTS


def torchrun(*script_args, expect_kill=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(HERE, "multiprocess_train.py"), *map(str, script_args)]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    # matched in lower case: torch's libuv store writes "address already in use", older launchers capitalise it
    launcher_fault = ("address already in use", "eaddrinuse", "rendezvousconnectionerror", "distnetworkerror",
                      "connection reset by peer")  # fmt: skip
    if result.returncode != 0 and not expect_kill and any(f in result.stderr.lower() for f in launcher_fault):
        # a port or rendezvous fault of the launcher, not of ZPPO: try once more, and say so if it fails again
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if expect_kill:  # the launcher reports the killed worker and stops the other one
        assert result.returncode != 0 and "SIGKILL" in result.stderr, result.stderr[-4000:]
        return
    assert result.returncode == 0, result.stderr[-4000:]


def first_difference(a, b):
    """Where two round records first differ, for a readable failure message."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            keys = [k for k in x["last"] if x["last"][k] != y["last"].get(k)]
            return f"round {i}: buffer equal={x['buffer'] == y['buffer']}, last_round keys differing={keys}"
    return f"lengths {len(a)} vs {len(b)}"


def read_ranks(folder, tag=""):
    ranks = [json.loads((folder / f"{tag}rank{r}.json").read_text()) for r in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]  # a silent one-process fallback must not pass
    # identical buffers and hint prompts on both ranks
    assert ranks[0]["rounds"] == ranks[1]["rounds"], first_difference(ranks[0]["rounds"], ranks[1]["rounds"])
    return ranks[0]["rounds"]


@pytest.mark.slow
def test_two_processes_identical_deterministic_and_resumable(tmp_path):
    torchrun(tmp_path / "a")
    rounds = read_ranks(tmp_path / "a")
    assert len(rounds) == 5
    assert any(r["last"]["hints"] for r in rounds), "hint groups never ran"
    assert any(r["last"]["replayed"] for r in rounds), "replay never ran"
    assert rounds[-1]["buffer"]["total_graduated"] > 0

    with open(os.path.join(HERE, "fixtures", "pinned_two_process_rounds.json")) as f:  # and the committed record
        assert_same(json.loads(json.dumps(rounds)), json.load(f), "two-process rounds")

    torchrun(tmp_path / "b")  # same seed, fresh run: same sequence of buffer states and hint prompts
    again = read_ranks(tmp_path / "b")
    assert again == rounds, first_difference(rounds, again)

    torchrun(tmp_path / "c", "kill", expect_kill=True)  # rank 0 killed after step 3: checkpoint-2 is the newest
    assert not list((tmp_path / "c").glob("rank*.json"))
    torchrun(tmp_path / "c", "resume")  # the newest complete checkpoint, chosen on rank 0 and broadcast
    resumed = read_ranks(tmp_path / "c", "resumed-")
    assert [r["step"] for r in resumed] == [3, 4, 5]
    assert resumed[-1]["buffer"] == rounds[-1]["buffer"] and resumed[-1]["last"] == rounds[-1]["last"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant", ["prefix_exclude", "teacher_response", "experience", "retrospective", "next_round"]
)
def test_two_processes_agree_on_the_baselines_and_the_normaliser(tmp_path, variant):
    torchrun(tmp_path, variant)
    rounds = read_ranks(tmp_path, f"{variant}-")  # identical buffers, hint prompts and logged zppo/* on both ranks
    assert len(rounds) == 5
    if variant == "experience":  # ExGRPO: identical experience buffers (stored successes, log-probs) on both ranks
        assert sum(r["logged"].get("zppo/experience/replayed", 0) for r in rounds) > 0
        assert any(r["experience"]["entries"] for r in rounds)  # (from step 3 every question is solved: retired)
    elif variant == "retrospective":  # identical stored states and continuation counts on both ranks
        assert any(h["kind"] == "retrospective" for r in rounds for h in r["last"]["hints"]), "no state was continued"
        assert rounds[-1]["retrospective"]["totals"]["stored"] > 0
    elif variant == "next_round":  # hints planned in one round, rolled out in the next, identically on both ranks
        assert any(r["last"].get("pending") for r in rounds) and any(r["last"]["hints"] for r in rounds[1:])
        assert not rounds[0]["last"]["hints"]
    elif variant == "prefix_exclude":
        assert any(h["kind"] == "prefix" for r in rounds for h in r["last"]["hints"]), "no prefix groups ran"
        logged = [r["logged"] for r in rounds if r["logged"]]  # on_step_end sees the previous step's log
        normalisers = [log["zppo/loss_normalizer_tokens"] for log in logged]
        shares = [log["zppo/informative_token_share"] for log in logged]
        assert any(n > 0 for n in normalisers) and any(s < 1 for s in shares)  # zero-variance groups were left out
    else:
        assert sum(r["logged"].get("zppo/injected_responses", 0) for r in rounds) > 0
