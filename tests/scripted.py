"""Shared by the trainer tests: a scripted correctness reward (0/1 by question id, whatever the model writes) and
the on-policy surrogate loss written out by hand."""

import torch

from zppo_trl.text import prompt_text

HARD = frozenset(range(0, 16, 2))  # even prompt ids are never solved


class ScriptedReward:
    """Reward 0/1 by question id; records every row it scores (kind, id, step, prompt text, answer)."""

    def __init__(self, hard=HARD, flip_at_step=None, unscorable=frozenset()):
        self.hard, self.flip_at_step, self.unscorable = set(hard), flip_at_step, set(unscorable)
        self.rows = []
        self.__name__ = "scripted_reward"  # TRL names reward metrics after __name__

    def __call__(self, completions, prompts, prompt_id, zppo_kind, answer, trainer_state, **kwargs):
        step = trainer_state.global_step
        out = []
        for prompt, pid, kind, gold in zip(prompts, prompt_id, zppo_kind, answer):
            self.rows.append({"kind": kind, "id": pid, "step": step, "prompt": prompt_text(prompt), "answer": gold})
            solved = pid not in self.hard or (self.flip_at_step is not None and step >= self.flip_at_step)
            out.append(None if pid in self.unscorable else float(solved))
        return out

    def ids(self, *kinds, step=None):
        return {r["id"] for r in self.rows if r["kind"] in kinds and (step is None or r["step"] == step)}


def hand_loss(model, batch, rows, normaliser):
    """The on-policy PPO surrogate's value and gradient written out: at ratio 1 the token loss is -A_i and its
    gradient -A_i * grad log p(token); summed over `rows`, divided by `normaliser` (a token count, or `None` for
    the mean over rows of per-row token means, TRL's `grpo`)."""
    ids = torch.cat([batch["prompt_ids"][rows], batch["completion_ids"][rows]], dim=1)
    attention = torch.cat([batch["prompt_mask"][rows], batch["completion_mask"][rows]], dim=1)
    width = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -width - 1 : -1]
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["completion_ids"][rows].unsqueeze(-1))[..., 0]
    mask, advantages = batch["completion_mask"][rows].float(), batch["advantages"][rows].unsqueeze(1)
    per_row = (-advantages * logps * mask).sum(1)
    value = (-advantages * mask).sum(1)
    if normaliser is None:
        counts = mask.sum(1).clamp(min=1)
        return (value / counts).mean(), (per_row / counts).mean()
    return value.sum() / normaliser, per_row.sum() / normaliser


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_loss_gradient_is_hand_loss(trainer, inputs, batch=None, rows=None, normaliser=None, scale=1.0):
    """The trainer's loss on micro-batch `inputs` has the gradient of `hand_loss` over `rows` of `batch` (default:
    every row of `inputs`, normalised by its `num_items_in_batch`), times `scale`. Returns `(loss, hand value)`."""
    batch = inputs if batch is None else batch
    if rows is None:
        rows, normaliser = torch.arange(batch["prompt_ids"].shape[0]), batch["num_items_in_batch"]
    model = trainer.model
    model.zero_grad()
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    trained = grads(model)
    model.zero_grad()
    value, surrogate = hand_loss(model, batch, rows, normaliser)
    surrogate.backward()
    for name, grad in grads(model).items():
        assert torch.allclose(trained[name], grad * scale, rtol=1e-4, atol=1e-7), name
    return loss, value
