"""Plain-prompt accuracy of a model on a dataset, sampling G completions per question (no hints, no buffer).

Used by `zppo-trl eval` and the graduation benchmark. Prompts get the same answer-format instruction as in
training, completions are sampled as the training rollouts are (`training_sampler`: a held-out accuracy then
measures what a graduation measures), and the reward is called as TRL calls it in training (completions as chat
messages for chat prompts, the dataset's other columns as keyword arguments), so before/after numbers compare like
with like.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .rewards import boxed_accuracy_reward
from .text import append_to_prompt

# the paper's sampler (Tab. 8: temperature 1, top-p 1) and TRL's defaults; top_k=0 because transformers' own default
# (50) would otherwise apply to an evaluation that does not name it
DEFAULT_SAMPLER = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
SAMPLER_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")  # what TRL's rollouts sample with
_LENGTH_KEYS = {"max_new_tokens", "max_length", "min_new_tokens", "min_length"}


def training_sampler(args) -> dict:
    """How a GRPO/ZPPO run's rollouts sample: its `temperature`, `top_p`, `top_k`, `min_p`, `repetition_penalty` and
    `generation_kwargs` (lengths aside), as TRL builds its generation config. Pass it to `plain_accuracy` so that
    held-out numbers and graduations are measured with one sampler."""
    sampler = {name: getattr(args, name) for name in SAMPLER_FIELDS if getattr(args, name, None) is not None}
    sampler.update(
        {k: v for k, v in (getattr(args, "generation_kwargs", None) or {}).items() if k not in _LENGTH_KEYS}
    )
    return sampler


def generation_pad_id(tokenizer) -> int:
    """The id to pad generation inputs with: the tokenizer's pad token, else its eos (Llama-3 and Mistral declare no
    pad token; eos is what their generation pads with). Raises a ValueError naming the fix when it has neither."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise ValueError(
        f"the tokenizer {type(tokenizer).__name__} has neither a pad nor an eos token, so prompts of different "
        "lengths cannot be batched for generation. Set one, e.g. `tokenizer.pad_token = tokenizer.unk_token`."
    )


@torch.no_grad()
def sample_completions(model, tokenizer, texts: list[str], num_samples: int, **generate_kwargs) -> torch.Tensor:
    """`num_samples` sampled completions of each (already templated) text, as token ids `(len(texts) * num_samples,
    new tokens)`, text by text: left-padded as decoder-only generation needs, with the pad token or, when the
    tokenizer has none, its eos (`generation_pad_id`), no special tokens added (a chat template already has them).
    The tokenizer is not changed. Shared by evaluation and the model teacher."""
    pad_id = generation_pad_id(tokenizer)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    width = max(map(len, encoded))
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(encoded):  # left padding: each text ends where generation starts
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    out = model.generate(
        input_ids=input_ids.to(model.device),
        attention_mask=attention_mask.to(model.device),
        do_sample=True,
        num_return_sequences=num_samples,
        pad_token_id=pad_id,
        **generate_kwargs,
    )
    return out[:, width:]


def plain_accuracy(
    model,
    tokenizer,
    dataset,
    num_samples: int = 4,
    max_new_tokens: int = 64,
    instruction: str | None = None,
    sampler: dict | None = None,
    batch_size: int = 8,
    reward: Callable = boxed_accuracy_reward,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Mean correctness over `num_samples` sampled completions per question.

    `sampler`: the generation settings, normally the training run's (`training_sampler(args)`); default
    `DEFAULT_SAMPLER` (temperature 1, top-p 1, no top-k: the paper's). Returns `{"accuracy": float, "per_question":
    {prompt_id: fraction correct}, "num_questions": int}`. A question whose rollouts are all unscorable (reward None)
    is left out of the mean. `progress` shows a progress bar.
    """
    from tqdm.auto import tqdm

    from .answer_metric import scored_by_metric

    reward = scored_by_metric(reward)  # this package's answer rewards score through the `evaluate` metric
    torch.manual_seed(seed)
    bar = tqdm(total=len(dataset), desc="eval", unit="question", disable=not progress)
    was_training = model.training
    model.eval()
    per_question: dict = {}
    try:
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            prompts = [append_to_prompt(r["prompt"], instruction) for r in rows]
            if isinstance(prompts[0], str):
                texts = prompts
            else:
                texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
            completion_ids = sample_completions(
                model,
                tokenizer,
                texts,
                num_samples,
                max_new_tokens=max_new_tokens,
                **{**DEFAULT_SAMPLER, **(sampler or {})},
            )
            decoded = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
            chat = not isinstance(prompts[0], str)  # TRL hands chat prompts' completions over as messages
            completions = [[{"role": "assistant", "content": t}] for t in decoded] if chat else decoded
            columns = {k: [r[k] for r in rows for _ in range(num_samples)] for k in rows[0] if k != "prompt"}
            scores = reward(
                prompts=[p for p in prompts for _ in range(num_samples)],
                completions=completions,
                completion_ids=[ids[ids != generation_pad_id(tokenizer)].tolist() for ids in completion_ids],
                zppo_kind=["plain"] * len(decoded),
                **columns,
            )
            for i, row in enumerate(rows):
                mine = [s for s in scores[i * num_samples : (i + 1) * num_samples] if s is not None]
                if mine:
                    per_question[row.get("prompt_id", start + i)] = sum(mine) / len(mine)
            bar.update(len(rows))
    finally:
        bar.close()
        model.train(was_training)
    accuracy = sum(per_question.values()) / len(per_question) if per_question else float("nan")
    return {"accuracy": accuracy, "per_question": per_question, "num_questions": len(per_question)}
