"""Shared fixtures: a tiny char tokenizer, a tiny random Llama and a ZPPOTrainer factory, all offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may reach the Hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL pings the Hub for telemetry otherwise
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

torch.set_num_threads(1)  # 2 threads on the 2-core CI machine are slower and erratic (measured: 10-40x under load)


@pytest.fixture(scope="session")
def tokenizer():
    return build_char_tokenizer()


def tiny_config(output_dir, **overrides) -> ZPPOConfig:
    """A ZPPOConfig small enough for a CPU test; each shrunk value says why."""
    values = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,  # 2 prompts x 4 generations per round
        num_generations=4,  # smallest group that still has 5 accuracy bins
        max_completion_length=8,  # a random model never stops: keep rollouts short
        max_steps=3,
        learning_rate=1e-2,  # tiny gradients on a random model: make the update visible
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,  # CPU
        activation_checkpointing=False,  # nothing to save at this size
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return ZPPOConfig(**values)


@pytest.fixture
def make_trainer(tokenizer, tmp_path):
    """Build a ZPPOTrainer on the tiny model: make_trainer(reward_funcs, dataset=..., **config_overrides)."""

    def make(reward_funcs, dataset=None, teacher=None, model=None, peft_config=None, eval_dataset=None, **overrides):
        args = tiny_config(overrides.pop("output_dir", tmp_path / "out"), **overrides)
        return ZPPOTrainer(
            model=model if model is not None else build_tiny_llama(tokenizer),
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset if dataset is not None else addition_dataset(16),
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            teacher=teacher,
            peft_config=peft_config,
        )

    return make


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """The tiny model and tokenizer saved to a folder, as a user's local model is."""
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_char_tokenizer()
    build_tiny_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A smaller tiny Llama saved for the QLoRA tests' 4-bit loading. Hidden 64, intermediate 256: down_proj has 4
    quantisation blocks per row, so a scale put back in the wrong order changes its weights."""
    from zppo_trl.tiny import build_tiny_llama

    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_llama(tokenizer, hidden_size=64, num_layers=2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
