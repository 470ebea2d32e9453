"""Sampling teachers: a local HF model and an OpenAI-compatible server on loopback (a real HTTP server serving the
tiny model), including a server that hangs and one that returns malformed JSON."""

import time

import pytest
from accelerate import PartialState
from openai_server import ChatServer

from zppo_trl import ZPPOConfig
from zppo_trl.rewards import extract_final_answer
from zppo_trl.teachers import (
    TEACHER_ANSWER_INSTRUCTION,
    TEACHER_TIME_SHARE,
    ModelTeacher,
    OpenAITeacher,
    extract_summary,
    gold_answer_verifier,
    resolve_teacher,
    solutions_for,
    use_answer_extractor,
)
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
    solutions, failures, *_ = solutions_for(strict, ROWS)
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
        solutions, failures, *_ = solutions_for(OpenAITeacher(server.url, "m", num_samples=2), ROWS)
    assert solutions[0] == ["Worked out. The answer is \\boxed{42}."] * 2 and solutions[1] == [] and failures == 1


@pytest.mark.parametrize("mode", ["hang", "malformed"])
def test_a_hanging_or_malformed_server_degrades_to_no_solution(mode):
    with ChatServer(mode) as server:
        teacher = OpenAITeacher(server.url, "m", timeout=0.5, max_retries=1, max_concurrency=2)
        start = time.monotonic()
        solutions, failures, *_ = solutions_for(teacher, ROWS)
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


def test_a_server_teacher_is_asked_for_the_answer_format_and_reports_its_acceptance_rate():
    with ChatServer("scripted", scripted_answer="42") as server:
        teacher = OpenAITeacher(server.url, "m", num_samples=2)  # no instruction configured: the default
        call = solutions_for(teacher, ROWS)
        assert call.acceptance_rate == 0.5  # 2 of 4 samples answer the row's gold answer
        # the requests run concurrently, so they reach the server in either order
        assert sorted(m[-1]["content"] for m in server.messages) == [
            f"What is 1 + 1?\n\n{TEACHER_ANSWER_INSTRUCTION}", f"What is 40 + 2?\n\n{TEACHER_ANSWER_INSTRUCTION}"
        ]  # fmt: skip
        server.messages.clear()
        configured = OpenAITeacher(server.url, "m", num_samples=2, instruction="Answer in \\boxed{}.", compress=True)
        assert solutions_for(configured, ROWS).solutions[0] == ["Worked out. The answer is \\boxed{42}."] * 2
    assert {m[-1]["content"].split("\n\n")[-1] for m in server.messages[:2]} == {"Answer in \\boxed{}."}
    # compression goes through the same server, one request per kept sample; no <summary> back: originals kept
    assert len(server.messages) == 4 and all(m[0]["content"].startswith("Compress the") for m in server.messages[2:])


def test_the_answer_instruction_follows_the_rewards_extractor_unless_configured():
    def extract(text):
        return text.split("ANSWER:")[-1].strip() or None

    extract.format_instruction = "End with ANSWER: <number>."
    default, configured = (
        OpenAITeacher("http://127.0.0.1:9/v1", "m"),
        OpenAITeacher("http://x/v1", "m", instruction="Mine."),
    )
    use_answer_extractor(default, extract), use_answer_extractor(configured, extract)
    assert default.instruction == extract.format_instruction and configured.instruction == "Mine."
    plain = OpenAITeacher("http://127.0.0.1:9/v1", "m")
    assert use_answer_extractor(plain, extract_final_answer).instruction == TEACHER_ANSWER_INSTRUCTION


def test_a_server_teacher_call_stops_within_its_time_budget():
    with ChatServer("hang") as server:
        teacher = OpenAITeacher(server.url, "m", timeout=0.4, max_retries=10, max_concurrency=1, time_budget=1.0)
        start = time.monotonic()
        call = solutions_for(teacher, ROWS * 3)
        elapsed = time.monotonic() - start
    # 2 requests (0.4 s each, 0.2 s back-off) spend the 1 s budget and the other 5 questions fail without one, not
    # 6 questions x 11 attempts x 0.4 s; the request count is the tight check, the time bound a loose one for load
    assert call.failures == 6 and server.requests <= 3 and elapsed < 5
    assert any("time budget" in e for e in teacher.last_errors)


def test_a_model_teacher_named_by_path_loads_on_its_first_call_on_the_process_device(tokenizer, tmp_path):
    build_tiny_llama(tokenizer).save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    args = ZPPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False,
                      teacher_model=str(tmp_path / "teacher"), teacher_num_samples=2, teacher_max_new_tokens=4,
                      answer_format_instruction="Box it.")  # fmt: skip
    teacher = resolve_teacher(None, args)
    assert isinstance(teacher, ModelTeacher) and isinstance(teacher.model, str)  # nothing loaded at construction
    assert teacher.time_budget == TEACHER_TIME_SHARE * args.ddp_timeout and teacher.instruction == "Box it."
    call = solutions_for(teacher, ROWS)
    assert teacher.model.device == PartialState().device and teacher.last_sampled == 4
    assert call.acceptance_rate == 0.0 and call.failures == 2  # a random model is never right
    with pytest.raises(OSError):
        ModelTeacher(str(tmp_path / "no-such-teacher"))  # a wrong path fails at construction, not mid-training


def test_training_logs_the_teachers_acceptance_rate(make_trainer, tokenizer):
    def reward(completions, **kwargs):
        return [0.0] * len(completions)

    teacher = ModelTeacher(build_tiny_llama(tokenizer), tokenizer, num_samples=2, max_new_tokens=4, verify=None)
    trainer = make_trainer(reward, teacher=teacher, hint_ratio=1.0, max_steps=2)
    trainer.train()
    rates = [
        h["zppo/teacher_acceptance_rate"] for h in trainer.state.log_history if "zppo/teacher_acceptance_rate" in h
    ]
    assert rates and all(rate == 1.0 for rate in rates)  # every sample kept: no verifier
    assert teacher.last_sampled == 2 * len(trainer.last_round["hints"]) > 0
