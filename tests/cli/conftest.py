"""Fixtures of the QLoRA tests (precision and quantization)."""

import pytest


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A saved tiny Llama for 4-bit loading. Hidden 64, intermediate 256: down_proj has 4 quantisation blocks per row,
    so a scale put back in the wrong order changes its weights."""
    from zppo_trl.tiny import build_tiny_llama

    folder = tmp_path_factory.mktemp("tiny")
    build_tiny_llama(tokenizer, hidden_size=64, num_layers=2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
