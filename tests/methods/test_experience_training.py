"""ExGRPO experience replay through `ZPPOTrainer.train()` on the tiny model (the pure pieces: test_experience.py).

The reward is scripted by question and by the completion's text, so that each kind of question exists: solved ones
(every rollout right: K/K, they retire), never-solved ones (0/K) and partially solved ones (right when the text's
character codes sum to an even number: about half of a random model's rollouts).
"""

import copy

import pytest
import torch
from scripted import grads

from zppo_trl.methods.exgrpo import shaped_weight
from zppo_trl.round.batching import take_rows
from zppo_trl.round.loss import EXPERIENCE_FLAG, EXPERIENCE_LOGPS
from zppo_trl.text import completion_text

SOLVED = frozenset({1, 5, 9, 13})
NEVER = frozenset({0, 4, 8, 12})


class PartialReward:
    """1/0 by question and text; records `(kind, id, text, score)` of every rollout it scores."""

    __name__ = "partial_reward"

    def __init__(self):
        self.scored = []

    def __call__(self, completions, prompt_id, zppo_kind, **kwargs):
        out = []
        for completion, pid, kind in zip(completions, prompt_id, zppo_kind):
            text = completion_text(completion)
            score = 1.0 if pid in SOLVED else 0.0 if pid in NEVER else float(sum(map(ord, text)) % 2 == 0)
            self.scored.append((kind, pid, text, score))
            out.append(score)
        return out


def experience_trainer(make_trainer, **overrides):
    values = dict(
        experience_ratio=1.0, experience_start_accuracy=0.0, replay_ratio=0.0, hint_ratio=0.0,
        per_device_train_batch_size=16, max_completion_length=6, max_steps=4, learning_rate=1e-3,
    )  # fmt: skip
    values.update(overrides)
    reward = PartialReward()
    return make_trainer(reward, **values), reward


def spy_rounds(trainer) -> list[dict]:
    """Every training round's output, with the buffer's candidates of each replaced row as they were when chosen
    and the policy that generated it (`policy(out)`: a copy of the model with that round's weights)."""
    rounds, generate = [], trainer._generate_and_score_completions

    def spy(inputs):
        candidates = {
            pid: list(trainer.experience_buffer.trajectories(pid)) for pid in trainer.experience_buffer.ids()
        }
        output = generate(inputs)
        if trainer.model.training:
            copy = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in output.items()}
            weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            rounds.append({**copy, "candidates": candidates, "round": dict(trainer.last_round), "weights": weights})
        return output

    trainer._generate_and_score_completions = spy
    return rounds


def policy(trainer, out):
    model = copy.deepcopy(trainer.model)
    model.load_state_dict(out["weights"])
    return model


def test_the_experience_buffer_holds_only_successes_of_partially_solved_questions(make_trainer, tokenizer):
    trainer, reward = experience_trainer(make_trainer)
    trainer.train()
    buffer = trainer.experience_buffer
    right = {(pid, text) for kind, pid, text, score in reward.scored if score == 1.0}
    assert len(buffer) > 0
    for pid in buffer.ids():
        assert pid not in SOLVED and pid not in NEVER  # partially solved only
        k, n = buffer.counts(pid)
        assert 0 < k < n
        for trajectory in buffer.trajectories(pid):
            assert (pid, tokenizer.decode(trajectory.completion_ids, skip_special_tokens=True)) in right
            assert len(trajectory.logps) == len(trajectory.completion_ids) and max(trajectory.logps) <= 0
    # every solved question that was rolled out retired (K/K) and is not in the buffer
    seen_solved = {pid for kind, pid, _, _ in reward.scored if pid in SOLVED}
    assert seen_solved and seen_solved <= set(buffer.retired)
    logged = [h for h in trainer.state.log_history if "zppo/experience/replayed" in h]
    assert sum(h["zppo/experience/replayed"] for h in logged) > 0
    assert logged[-1]["zppo/experience/buffer_size"] == len(buffer)


def test_a_replayed_success_is_the_lowest_entropy_one_and_replaces_the_groups_last_rollout(make_trainer, tokenizer):
    trainer, reward = experience_trainer(make_trainer)
    rounds = spy_rounds(trainer)
    trainer.train()
    G, checked = trainer.num_generations, 0
    for out in rounds:
        model = policy(trainer, out)
        pids = out["round"]["experience"]
        first = len(out["round"]["new"]) + len(out["round"]["replayed"])
        flags = out[EXPERIENCE_FLAG].nonzero().view(-1).tolist()
        assert flags == [(first + j) * G + G - 1 for j in range(len(pids))]
        for row, pid in zip(flags, pids):
            stored = out["candidates"][pid]
            # mean token entropy of each candidate under the policy that chose (no update happened since)
            means = []
            for trajectory in stored:
                ids = torch.tensor([trajectory.completion_ids])
                prompt = out["prompt_ids"][row][out["prompt_mask"][row].bool()].unsqueeze(0)
                with torch.no_grad():
                    logits = model(input_ids=torch.cat([prompt, ids], dim=1)).logits[:, prompt.shape[1] - 1 : -1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                means.append(float(-(logp.exp() * logp).sum(-1).mean()))
            best = min(range(len(means)), key=lambda i: (means[i], -i))
            assert sorted(means)[:2] != [means[best]] * 2 or len(means) == 1  # no near-tie decides the test
            n = len(stored[best].completion_ids)
            assert out["completion_ids"][row, :n].tolist() == stored[best].completion_ids
            stored_logps = torch.tensor(stored[best].logps)
            assert torch.allclose(out[EXPERIENCE_LOGPS][row, :n], stored_logps)
            checked += 1
    assert checked > 0
    # the reward functions scored each replayed success (as kind "experience") before its advantages were computed
    assert any(kind == "experience" for kind, _, _, _ in reward.scored)


def test_a_replayed_rows_loss_gradient_is_that_of_the_shaped_weight(make_trainer):
    """The loss of a micro-batch of replayed rows, through TRL's `compute_loss`, has the gradient of
    -sum(A * f(w)) / tokens with w = pi_theta / pi_stored per token and f(w) = w / (w + 0.1), written out here."""
    trainer, _ = experience_trainer(make_trainer, max_steps=3)
    rounds = spy_rounds(trainer)
    trainer.train()
    out = next(r for r in reversed(rounds) if r[EXPERIENCE_FLAG].any())
    rows = out[EXPERIENCE_FLAG].nonzero().view(-1)
    batch = take_rows({k: v for k, v in out.items() if isinstance(v, torch.Tensor)}, rows)
    mask = batch["completion_mask"].float()
    batch["num_items_in_batch"] = mask.sum()
    batch["advantages"] = torch.linspace(0.5, 1.5, len(rows))  # any advantages: the weight is what is tested
    model = trainer.model
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    trained = grads(model)

    model.zero_grad()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    width = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -width - 1 : -1]
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["completion_ids"].unsqueeze(-1))[..., 0]
    w = torch.exp(logps - batch[EXPERIENCE_LOGPS])
    by_hand = -(batch["advantages"].unsqueeze(1) * shaped_weight(w, 0.1) * mask).sum() / mask.sum()
    by_hand.backward()
    expected = grads(model)
    assert expected and trained.keys() == expected.keys()
    for name, grad in expected.items():
        assert torch.allclose(trained[name], grad, rtol=1e-4, atol=1e-7), name
    # TRL's ratio is exactly 1 on these rows: the loss value is -sum(A) over tokens / tokens
    assert torch.allclose(loss, -(batch["advantages"].unsqueeze(1) * mask).sum() / mask.sum(), atol=1e-6)


def test_experience_state_survives_a_checkpoint(make_trainer, tmp_path):
    trainer, _ = experience_trainer(make_trainer, save_strategy="steps", save_steps=2, max_steps=2)
    trainer.train()
    resumed, _ = experience_trainer(make_trainer, output_dir=tmp_path / "resumed", max_steps=2)
    resumed.load_zppo_state(str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.experience_buffer == trainer.experience_buffer and len(trainer.experience_buffer) > 0
    assert resumed.run_state.experience_on is True


def test_exgrpo_is_refused_where_the_shaped_weight_would_be_wrong(make_trainer):
    with pytest.raises(ValueError, match=r"experience_ratio=0.5.*beta=0.04 \(set beta=0.0\)"):
        make_trainer(PartialReward(), experience_ratio=0.5, beta=0.04)
    with pytest.raises(ValueError, match="importance_sampling_level='sequence'"):
        make_trainer(PartialReward(), experience_ratio=0.5, importance_sampling_level="sequence", loss_type="grpo")


def test_with_old_logps_kept_a_replayed_rows_old_value_is_its_surrogate_at_generation(make_trainer):
    """steps_per_generation=2 > gradient_accumulation_steps=1: TRL keeps old log-probs and ratios them over two
    updates; a replayed row's "old" value is f(w) under the generating-time policy, so its ratio starts at 1."""
    trainer, _ = experience_trainer(make_trainer, steps_per_generation=2, gradient_accumulation_steps=1,
                                    per_device_train_batch_size=8, max_steps=4)  # fmt: skip
    rounds = spy_rounds(trainer)
    trainer.train()
    checked = 0
    for out in rounds:
        model = policy(trainer, out)
        for row in out[EXPERIENCE_FLAG].nonzero().view(-1).tolist():
            n = int(out["completion_mask"][row].sum())
            ids = torch.cat([out["prompt_ids"][row : row + 1], out["completion_ids"][row : row + 1]], dim=1)
            mask = torch.cat([out["prompt_mask"][row : row + 1], out["completion_mask"][row : row + 1]], dim=1)
            width = out["completion_ids"].shape[1]
            with torch.no_grad():
                logps = trainer._split_forward(model, ids, mask, width)[0][0, :n]
            w = torch.exp(logps - out[EXPERIENCE_LOGPS][row, :n])
            assert torch.allclose(out["old_per_token_logps"][row, :n], shaped_weight(w, 0.1), atol=1e-5)
            checked += 1
    assert checked > 0
