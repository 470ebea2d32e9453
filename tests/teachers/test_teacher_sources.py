"""Sampling teachers: a local HF model and an OpenAI-compatible server on loopback (a real HTTP server serving the
tiny model), including a server that hangs and one that returns malformed JSON."""

import time

import pytest
import torch
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


# --------------------------------------------------------------------------------------------------------------------
# the API key goes only where it was configured


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["other_port", "other_host", "other_scheme"])
def test_a_redirect_to_another_origin_is_refused_and_the_key_never_reaches_it(code, target, monkeypatch):
    monkeypatch.setenv("ZPPO_TEST_KEY", "sk-secret-123")
    with ChatServer("scripted") as elsewhere:
        redirect_to = {
            "other_port": f"{elsewhere.url}/chat/completions",
            "other_host": f"http://localhost:{elsewhere.port}/v1/chat/completions",  # the same machine, by name
            "other_scheme": None,  # filled below: https on the teacher's own host and port
        }[target]
        with ChatServer("redirect", redirect_code=code) as server:
            server.redirect_to = redirect_to or f"https://127.0.0.1:{server.port}/v1/chat/completions"
            teacher = OpenAITeacher(server.url, "m", num_samples=1, max_retries=1, api_key_env="ZPPO_TEST_KEY")
            call = solutions_for(teacher, ROWS)
    assert elsewhere.requests == 0 and not any(elsewhere.auth_headers)
    assert call.failures == 2 and server.requests == 2  # a failure, not retried: the server would redirect again
    assert all("not followed" in e and "sk-secret" not in e for e in teacher.last_errors)


def test_a_same_origin_redirect_is_followed(monkeypatch):
    monkeypatch.setenv("ZPPO_TEST_KEY", "sk-secret-123")
    with ChatServer("redirect", redirect_code=302) as server:
        server.redirect_to = f"{server.url}/chat/completions?again"
        teacher = OpenAITeacher(server.url, "m", num_samples=1, max_retries=0, api_key_env="ZPPO_TEST_KEY")
        call = solutions_for(teacher, ROWS)
    # followed, key and all, to the configured origin; urllib turns a redirected POST into a GET without its body,
    # which this server refuses: a counted failure
    assert server.requests == 4 and server.auth_headers == ["Bearer sk-secret-123"] * 4 and call.failures == 2


@pytest.mark.parametrize(
    "url, warns",
    [("http://10.1.2.3:8000/v1", True), ("http://teacher.example:8000/v1", True), ("https://10.1.2.3/v1", False),
     ("http://127.0.0.1:8000/v1", False), ("http://localhost:8000/v1", False), ("http://[::1]:8000/v1", False)],
)  # fmt: skip
def test_plain_http_to_a_remote_host_with_a_key_warns(url, warns, monkeypatch, recwarn):
    monkeypatch.setenv("ZPPO_TEST_KEY", "sk-secret-123")
    OpenAITeacher(url, "m", api_key_env="ZPPO_TEST_KEY")
    monkeypatch.delenv("ZPPO_TEST_KEY")
    OpenAITeacher(url, "m", api_key_env="ZPPO_TEST_KEY")  # no key, nothing to leak: no warning
    messages = [str(w.message) for w in recwarn if "unencrypted" in str(w.message)]
    assert len(messages) == (1 if warns else 0) and not any("sk-secret" in m for m in messages)


def test_a_key_the_server_echoes_back_is_in_no_error_text(monkeypatch):
    monkeypatch.setenv("ZPPO_TEST_KEY", "sk-secret-123")
    with ChatServer("echo_key") as server:
        teacher = OpenAITeacher(server.url, "m", max_retries=0, api_key_env="ZPPO_TEST_KEY")
        call = solutions_for(teacher, ROWS)
    assert server.auth_headers == ["Bearer sk-secret-123"] * 2  # it did see the key, and said it back
    assert call.failures == 2 and all("401" in e and "<api key>" in e for e in teacher.last_errors)
    assert "sk-secret" not in " ".join(teacher.last_errors) + str(call.error)


# --------------------------------------------------------------------------------------------------------------------
# teacher faults stay per question


def test_a_model_teacher_with_a_pad_less_tokenizer_samples_left_padded(tokenizer):
    from zppo_trl.evaluation import sample_completions
    from zppo_trl.tiny import build_char_tokenizer

    model = build_tiny_llama(tokenizer)
    padless = build_char_tokenizer()
    padless.pad_token = None  # as Llama-3 and Mistral ship
    padless.padding_side = "right"
    assert padless.pad_token_id is None
    teacher = ModelTeacher(model, padless, num_samples=2, max_new_tokens=4, verify=None)
    torch.manual_seed(0)
    call = solutions_for(teacher, ROWS)
    assert call.failures == 0 and teacher.last_sampled == 4  # (a random model may sample an empty text: left out)
    assert padless.pad_token is None and padless.padding_side == "right"  # the tokenizer is not changed
    # left padding: a short text batched with a long one continues as it does alone (top_k=1: greedy)
    texts = ["1+1=", "What is 40 + 2? It is"]
    batched = sample_completions(model, padless, texts, 1, max_new_tokens=4, top_k=1)
    alone = [sample_completions(model, padless, [t], 1, max_new_tokens=4, top_k=1)[0] for t in texts]
    assert [row.tolist() for row in batched] == [row.tolist() for row in alone]


def test_a_tokenizer_with_neither_pad_nor_eos_is_refused_at_construction(tokenizer):
    from zppo_trl.tiny import build_char_tokenizer

    bare = build_char_tokenizer()
    bare.pad_token = bare.eos_token = None
    with pytest.raises(ValueError, match="neither a pad nor an eos"):
        ModelTeacher(build_tiny_llama(tokenizer), bare)


@pytest.mark.parametrize("mode", ["short", "disconnect", "reset"])
def test_a_broken_connection_fails_one_request_and_is_retried(mode):
    # each question's first request breaks (a short body: IncompleteRead; a disconnect; a reset), the retry answers
    with ChatServer(mode, fault_times=1) as server:
        call = solutions_for(OpenAITeacher(server.url, "m", num_samples=1, max_retries=1), ROWS)
    assert call.failures == 1 and call.solutions[0] == ["Worked out. The answer is \\boxed{42}."]
    assert server.requests == 4  # one retry per question
    # a question whose every request breaks fails alone; the other one is answered
    with ChatServer(mode, fault_only="40 + 2") as server:
        teacher = OpenAITeacher(server.url, "m", num_samples=1, max_retries=1, verify=None)
        call = solutions_for(teacher, ROWS)
    assert call.failures == 1 and call.solutions[0] == [] and len(call.solutions[1]) == 1
    assert server.requests == 3 and len(teacher.last_errors) == 1


@pytest.mark.parametrize("phase", ["drip_headers", "drip_body"])
@pytest.mark.parametrize("time_budget", [None, 1.0])
def test_a_slow_drip_server_is_cut_at_the_wall_clock_deadline(phase, time_budget):
    # a byte every 0.3 s for 25 bytes (7.5 s), then the rest: every socket read is well within `timeout`
    with ChatServer(phase, drip_interval=0.3, drip_bytes=25) as server:
        teacher = OpenAITeacher(server.url, "m", timeout=0.5, max_retries=1 if time_budget is None else 10,
                                time_budget=time_budget, verify=None)  # fmt: skip
        start = time.monotonic()
        call = solutions_for(teacher, ROWS)
        elapsed = time.monotonic() - start
    # per request 0.5 s (2 attempts and a 0.2 s pause: ~1.2 s), or the call's 1 s; never the server's 7.5 s
    assert call.failures == 2 and elapsed < 4
    assert all("within 0.5 s" in e or "time budget" in e for e in teacher.last_errors)
    assert server.requests <= 6


def test_a_request_timeout_longer_than_the_calls_budget_is_refused_at_construction(tmp_path):
    args = ZPPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, teacher_base_url="http://127.0.0.1:9/v1",
                      teacher_model="m", teacher_timeout=60, ddp_timeout=60)  # fmt: skip
    with pytest.raises(ValueError, match="`teacher_timeout`.*`ddp_timeout`"):
        resolve_teacher(None, args)  # 60 s > 0.8 x 60 s
    args.teacher_timeout = 30
    assert resolve_teacher(None, args).time_budget == TEACHER_TIME_SHARE * 60


def test_compressing_the_wrong_candidates_has_its_own_deadline():
    # the trainer calls `compress_texts` on its own after the solutions call: it must not inherit that call's
    # (by then spent) deadline, nor run unbounded
    with ChatServer("scripted") as server:
        teacher = OpenAITeacher(server.url, "m", num_samples=1, timeout=0.2, time_budget=0.3, verify=None)
        teacher(ROWS[:1])
        time.sleep(0.4)  # the first call's budget is long spent
        assert teacher.compress_texts(["x \\boxed{1}"]) == ["x \\boxed{1}"]  # no <summary> back: kept
    assert server.requests == 2 and teacher.last_errors == []
    with ChatServer("hang") as server:
        teacher = OpenAITeacher(server.url, "m", timeout=0.2, max_retries=10, time_budget=0.5)
        start = time.monotonic()
        assert teacher.compress_texts(["x \\boxed{1}"]) == ["x \\boxed{1}"]
        elapsed = time.monotonic() - start
    # within its 0.5 s, not 11 attempts of 0.2 s with back-off pauses (over 10 s)
    assert server.requests <= 3 and elapsed < 3 and any("time budget" in e for e in teacher.last_errors)
