"""Plain-prompt accuracy of a model on a dataset, sampling G completions per question (no hints, no buffer).

Used by `zppo-trl eval` and the graduation benchmark. Prompts get the same answer-format instruction as in
training, so before/after numbers compare like with like.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .prompts import append_to_prompt
from .rewards import boxed_accuracy_reward


@torch.no_grad()
def plain_accuracy(
    model,
    tokenizer,
    dataset,
    num_samples: int = 4,
    max_new_tokens: int = 64,
    instruction: str | None = None,
    temperature: float = 1.0,
    batch_size: int = 8,
    reward: Callable = boxed_accuracy_reward,
    seed: int = 0,
) -> dict:
    """Mean correctness over `num_samples` sampled completions per question.

    Returns `{"accuracy": float, "per_question": {prompt_id: fraction correct}, "num_questions": int}`. A question
    whose rollouts are all unscorable (reward None) is left out of the mean.
    """
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    per_question: dict = {}
    try:
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            prompts = [append_to_prompt(r["prompt"], instruction) for r in rows]
            if isinstance(prompts[0], str):
                texts = prompts
            else:
                texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(
                **batch, do_sample=True, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens,
                num_return_sequences=num_samples, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            completions = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            answers = [r["answer"] for r in rows for _ in range(num_samples)]
            scores = reward(completions=completions, answer=answers)
            for i, row in enumerate(rows):
                mine = [s for s in scores[i * num_samples : (i + 1) * num_samples] if s is not None]
                if mine:
                    per_question[row.get("prompt_id", start + i)] = sum(mine) / len(mine)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    accuracy = sum(per_question.values()) / len(per_question) if per_question else float("nan")
    return {"accuracy": accuracy, "per_question": per_question, "num_questions": len(per_question)}
