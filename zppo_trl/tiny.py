"""A tiny offline model, tokenizer and arithmetic task, built in code: for tests, smoke runs and examples.

Nothing here is downloaded. The tokenizer is character-level (printable ASCII, newline, a few specials) with a
ChatML template; the model is a random `LlamaForCausalLM` of about 0.2M-1M parameters (a Llama config, because
transformers maps a saved Qwen2 config to a tokenizer class that drops spaces, seen with transformers 5.23).
"""

from __future__ import annotations

import random

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]


def build_char_tokenizer():
    """A character-level `PreTrainedTokenizerFast` with pad `<|pad|>`, eos `<|im_end|>` and left padding."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars + ["<unk>"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
        padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_llama(tokenizer, hidden_size: int = 64, num_layers: int = 2, seed: int = 0):
    """A random `LlamaForCausalLM` sized for CPU tests (hidden 64, 2 layers: ~0.16M parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config)


def addition_dataset(n: int = 32, seed: int = 0, chat: bool = True, ids: bool = True):
    """`n` questions "What is a + b?" with columns `prompt_id` (0..n-1, unless `ids=False`), `prompt`, `answer` and
    `solution` (a worked reference)."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        question = f"What is {a} + {b}?"
        rows.append(
            {
                **({"prompt_id": i} if ids else {}),
                "prompt": [{"role": "user", "content": question}] if chat else question,
                "answer": str(a + b),
                "solution": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.",
            }
        )
    return Dataset.from_list(rows)
