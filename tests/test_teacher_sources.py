"""Sampling teachers: a local HF model and an OpenAI-compatible server on loopback (a real HTTP server serving the
tiny model), including a server that hangs and one that returns malformed JSON."""

import time

import pytest
from openai_server import ChatServer

from zppo_trl.teachers import ModelTeacher, OpenAITeacher, extract_summary, gold_answer_verifier, solutions_for
from zppo_trl.tiny import build_tiny_llama

ROWS = [{"prompt": [{"role": "user", "content": "What is 40 + 2?"}], "answer": "42"},
        {"prompt": "What is 1 + 1?", "answer": "2"}]  # fmt: skip


def test_gold_answer_verifier_and_summary_extraction():
    assert gold_answer_verifier({"answer": "42"}, ["\\boxed{42}", "\\boxed{41}", "no"]) == ["\\boxed{42}"]
    assert gold_answer_verifier({}, ["a", "b"]) == ["a", "b"]
    assert extract_summary("blah <summary>1+1=2, \\boxed{2}</summary>") == "1+1=2, \\boxed{2}"
    assert extract_summary("no summary here") is None and extract_summary("<summary> </summary>") is None


def test_model_teacher_samples_and_filters(tokenizer):
    model = build_tiny_llama(tokenizer)
    everything = ModelTeacher(model, tokenizer, num_samples=3, max_new_tokens=8, verify=None)
    samples = everything(ROWS)
    assert [len(s) for s in samples] == [3, 3] and all(isinstance(x, str) for s in samples for x in s)
    strict = ModelTeacher(model, tokenizer, num_samples=3, max_new_tokens=8)  # a random model is never right
    solutions, failures, _ = solutions_for(strict, ROWS)
    assert solutions == [[], []] and failures == 2
    compressing = ModelTeacher(model, tokenizer, num_samples=2, max_new_tokens=8, verify=None, compress=True)
    assert [len(s) for s in compressing(ROWS)] == [2, 2]  # no <summary> from a random model: originals kept


def test_openai_teacher_against_a_loopback_server_serving_the_tiny_model(tokenizer, monkeypatch):
    monkeypatch.setenv("ZPPO_TEST_KEY", "sk-secret-123")
    with ChatServer("model", build_tiny_llama(tokenizer), tokenizer) as server:
        teacher = OpenAITeacher(server.url, "tiny", num_samples=2, max_tokens=8, verify=None,
                                api_key_env="ZPPO_TEST_KEY")  # fmt: skip
        samples = teacher(ROWS)
    assert [len(s) for s in samples] == [2, 2] and server.requests == 2
    assert server.auth_headers == ["Bearer sk-secret-123"] * 2
    assert "sk-secret" not in repr(teacher) and "sk-secret" not in str(vars(teacher))


def test_openai_teacher_keeps_only_correct_samples():
    with ChatServer("scripted", scripted_answer="42") as server:
        solutions, failures, _ = solutions_for(OpenAITeacher(server.url, "m", num_samples=2), ROWS)
    assert solutions[0] == ["Worked out. The answer is \\boxed{42}."] * 2 and solutions[1] == [] and failures == 1


@pytest.mark.parametrize("mode", ["hang", "malformed"])
def test_a_hanging_or_malformed_server_degrades_to_no_solution(mode):
    with ChatServer(mode) as server:
        teacher = OpenAITeacher(server.url, "m", timeout=0.5, max_retries=1, max_concurrency=2)
        start = time.monotonic()
        solutions, failures, _ = solutions_for(teacher, ROWS)
        elapsed = time.monotonic() - start
    assert solutions == [[], []] and failures == 2 and len(teacher.last_errors) == 2
    assert server.requests == 4  # one retry per question
    assert elapsed < 5  # bounded by timeout x attempts, in parallel


def test_trainer_with_a_hanging_server_teacher_counts_failures_and_keeps_training(make_trainer):
    def reward(completions, **kwargs):
        return [0.0] * len(completions)

    with ChatServer("hang") as server:
        trainer = make_trainer(reward, teacher=OpenAITeacher(server.url, "m", timeout=0.3, max_retries=0),
                               hint_ratio=1.0, max_steps=2)  # fmt: skip
        trainer.train()
    logs = [h for h in trainer.state.log_history if "zppo/teacher_failures" in h]
    assert sum(h["zppo/teacher_failures"] for h in logs) >= 2 and trainer.state.global_step == 2
    assert {h["kind"] for h in trainer.last_round["hints"]} == {"ncq"}
