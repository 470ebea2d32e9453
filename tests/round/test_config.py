"""ZPPOConfig: paper defaults, and errors that name the field, the value and the fix."""

import dataclasses

import pytest
from trl import GRPOConfig

from zppo_trl import ANSWER_FORMAT_INSTRUCTION, ZPPOConfig

BASE = dict(output_dir="unused", use_cpu=True, bf16=False, report_to="none")


def test_defaults_are_the_papers():
    c = ZPPOConfig(**BASE)
    assert (c.hard_threshold, c.replay_ratio, c.replay_capacity, c.hint_ratio) == (0.5, 0.25, 10_000, 0.25)
    assert c.use_bcq and c.use_ncq and c.advantage_estimator == "zppo" and c.epsilon_high == 0.28
    assert c.candidate_max_tokens == 512 and c.correct_threshold == 0.5 and c.teacher_column is None
    # everything else stays TRL's
    assert c.learning_rate == GRPOConfig(**BASE).learning_rate and c.loss_type == GRPOConfig(**BASE).loss_type


def test_every_new_field_has_a_help_sentence():
    own = {f.name for f in dataclasses.fields(ZPPOConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}
    assert own >= {"hard_threshold", "replay_ratio", "hint_ratio", "teacher_column", "correctness_reward"}
    for f in dataclasses.fields(ZPPOConfig):
        if f.name in own or f.name == "epsilon_high":
            assert f.metadata.get("help", "").strip().endswith("."), f.name


def test_paper_instruction_shortcut():
    assert ZPPOConfig(**BASE, answer_format_instruction="paper").answer_format_instruction == ANSWER_FORMAT_INSTRUCTION


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hard_threshold", 0.0, r"`hard_threshold` must be in \(0.0, 1.0\], got 0.0"),
        ("hard_threshold", 1.5, r"`hard_threshold` must be in \(0.0, 1.0\], got 1.5"),
        ("replay_ratio", -0.1, r"`replay_ratio` must be in \[0.0, inf\), got -0.1. Use 0.25"),
        ("hint_ratio", -1, r"`hint_ratio` must be in \[0.0, inf\), got -1"),
        ("replay_capacity", 0, r"`replay_capacity` must be a positive integer, got 0"),
        ("candidate_max_tokens", 8192, r"`candidate_max_tokens` \(8192\) must not exceed `hint_prompt_max_tokens`"),
        ("advantage_estimator", "ppo", r"`advantage_estimator` must be one of \('zppo', 'grpo'\), got 'ppo'"),
        ("num_generations", 1, r"`num_generations` must be >= 2, got 1"),
        ("teacher_column", " ", r"`teacher_column` is an empty string"),
    ],
)
def test_invalid_values_raise_naming_field_value_and_fix(field, value, message):
    with pytest.raises(ValueError, match=message):
        ZPPOConfig(**BASE, **{field: value})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"teacher_column": "solution", "teacher_model": "m"}, "choose one teacher source"),
        ({"teacher_base_url": "http://127.0.0.1:8000/v1"}, "needs `teacher_model`"),
        ({"teacher_num_samples": 0}, "`teacher_num_samples` must be a positive integer, got 0"),
        ({"teacher_timeout": 0}, r"`teacher_timeout` must be in \(0.0, inf\), got 0"),
    ],
)
def test_teacher_source_conflicts_raise(values, message):
    with pytest.raises(ValueError, match=message):
        ZPPOConfig(**BASE, **values)


def test_use_vllm_without_vllm_fails_clearly(make_trainer):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed")
    with pytest.raises(ImportError, match="`use_vllm=True` but vLLM is not installed"):
        make_trainer(lambda completions, **kw: [0.0] * len(completions), use_vllm=True)
