"""The answer-accuracy `evaluate` metric shipped in the package: loaded offline from its path, scoring exactly as the
correctness rewards do with their own answer extractors, and results saved in `evaluate.save`'s layout."""

import json
import os
import re
import socket

import pytest

from zppo_trl import answer_metric
from zppo_trl.answer_metric import ANSWER_ACCURACY_PATH, load_answer_accuracy, save_results, scored_by_metric
from zppo_trl.evaluation import plain_accuracy
from zppo_trl.rewards import answer_extractor, boxed_accuracy_reward, final_answer_reward
from zppo_trl.tiny import addition_dataset, build_tiny_llama

# completions that tell the two extractors apart, an unscorable (empty) gold answer, chat-form completions
COMPLETIONS = [
    "so \\boxed{\\frac{1}{2}}",
    "\\boxed{3}",
    "8 boxes * 4 books = 32 books",
    "\\boxed{31}, not 32",
    "no answer at all",
    "\\boxed{5}",
    [{"role": "assistant", "content": "it is 12"}],
]
ANSWERS = ["0.5", "4", "32", "32", "1", "", "12"]


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection or name lookup raises, and is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # a Hub lookup would try the network, and be caught
    return attempts


def test_metric_loads_from_the_package_without_the_network(no_network):
    assert os.path.isfile(ANSWER_ACCURACY_PATH) and os.path.dirname(ANSWER_ACCURACY_PATH).startswith(
        os.path.dirname(os.path.abspath(__import__("zppo_trl").__file__))
    )
    metric = load_answer_accuracy()
    assert type(metric).__name__ == "AnswerAccuracy" and "math-verify" in metric.description
    result = metric.compute(
        predictions=["so \\boxed{\\frac{1}{2}}", "\\boxed{3}", "no box"], references=["0.5", "4", "1"]
    )
    assert result == {"accuracy": pytest.approx(1 / 3), "num_scored": 3, "num_unscorable": 0}
    assert no_network == []


@pytest.mark.parametrize("reward", [boxed_accuracy_reward, final_answer_reward], ids=lambda r: r.__name__)
def test_metric_scores_as_the_reward_with_its_extractor(reward):
    texts = [c if isinstance(c, str) else c[0]["content"] for c in COMPLETIONS]
    expected = reward(COMPLETIONS, ANSWERS)
    metric = load_answer_accuracy()
    for text, gold in zip(texts, ANSWERS, strict=True):  # the HF way: add, then compute
        metric.add(predictions=text, references=gold)
    result = metric.compute(extract_answer=answer_extractor(reward), return_scores=True)
    assert result["scores"] == expected
    scored = [s for s in expected if s is not None]
    assert result["num_unscorable"] == 1 and result["num_scored"] == len(scored) == 6
    assert result["accuracy"] == pytest.approx(sum(scored) / len(scored))
    # the two extractors really differ on these completions, so the parameter matters
    assert boxed_accuracy_reward(COMPLETIONS, ANSWERS) != final_answer_reward(COMPLETIONS, ANSWERS)


def test_package_answer_rewards_score_through_the_metric_and_others_are_kept():
    through = scored_by_metric(final_answer_reward)
    assert through is not final_answer_reward and through.extract_answer is final_answer_reward.extract_answer
    kwargs = {"prompts": ["q"] * len(ANSWERS), "zppo_kind": ["plain"] * len(ANSWERS)}  # what TRL passes besides
    assert through(completions=COMPLETIONS, answer=ANSWERS, **kwargs) == final_answer_reward(COMPLETIONS, ANSWERS)

    def exact_match(completions, answer, **kwargs):  # not a math answer reward: must be scored by itself
        return [float(c == a) for c, a in zip(completions, answer, strict=True)]

    exact_match.extract_answer = str.strip
    assert scored_by_metric(exact_match) is exact_match


def test_plain_accuracy_is_unchanged_by_scoring_through_the_metric(tokenizer, monkeypatch):
    """The held-out / `zppo-trl eval` accuracy through the metric equals the one from the reward called directly."""
    metric, calls = answer_metric._shared_metric(), []
    compute = metric.compute
    monkeypatch.setattr(metric, "compute", lambda **kwargs: calls.append(1) or compute(**kwargs))
    model = build_tiny_llama(tokenizer)
    # one-digit gold answers: the random model's last number matches one now and then (~6% of samples), so the two
    # accuracies compared below are not both zero
    data = addition_dataset(16).map(lambda row, i: {"answer": str(i % 10)}, with_indices=True)

    def same_reward_outside_the_package(completions, answer, **kwargs):
        return final_answer_reward(completions, answer)

    kwargs = dict(num_samples=6, max_new_tokens=8, seed=3)
    via_metric = plain_accuracy(model, tokenizer, data, reward=final_answer_reward, **kwargs)
    batches = len(calls)
    direct = plain_accuracy(model, tokenizer, data, reward=same_reward_outside_the_package, **kwargs)
    assert batches == 2 and len(calls) == 2  # 16 questions in batches of 8 through the metric, then none
    assert via_metric == direct and via_metric["num_questions"] == 16
    assert via_metric["accuracy"] > 0, "no sample was right: the comparison above proves nothing"


def test_results_are_saved_next_to_the_run_in_evaluate_save_layout(tmp_path, monkeypatch):
    import evaluate

    monkeypatch.chdir(tmp_path)  # outside any git repository: no commit hash, nothing printed by git
    results = {"accuracy": 0.25, "num_questions": 4}
    path = save_results(str(tmp_path / "run"), results, model="tiny", num_samples=4)
    assert re.fullmatch(r"result-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\.json", os.path.basename(path))
    assert os.path.dirname(path) == str(tmp_path / "run" / "eval_results")
    saved = json.loads(open(path).read())
    reference = json.loads(
        evaluate.save(str(tmp_path / "by_evaluate"), **results, model="tiny", num_samples=4).read_text()
    )
    assert saved.keys() == reference.keys()
    assert {k: saved[k] for k in ("accuracy", "num_questions", "model", "num_samples", "_git_commit_hash")} == {
        "accuracy": 0.25, "num_questions": 4, "model": "tiny", "num_samples": 4, "_git_commit_hash": None,
    }  # fmt: skip
