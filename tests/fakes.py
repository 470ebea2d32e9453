"""A fake of `round.rollout.TRLSeams`: a round run against it needs no model and no TRL pass. The "student" is a
function of the prompt text and the sample index; its completions are turned into the tensors a TRL pass returns
(one token per character), and a reward function scores them, as TRL would, into gathered rewards per function."""

from collections import defaultdict

import torch

from zppo_trl.round.rollout import Rollout, TextTools
from zppo_trl.text import extract_boxed, prompt_text


def char_tools() -> TextTools:
    """A tokenizer of one token per character (code points), for budgets and ids."""
    return TextTools(
        tokenize=lambda text: [ord(c) for c in text],
        decode=lambda ids: "".join(map(chr, ids)),
        decode_batch=lambda batch: ["".join(map(chr, ids)) for ids in batch],
        render_prefix=lambda messages: "\n".join(m["content"] for m in messages),
        extract_answer=extract_boxed,
        pad_token_id=0,
        eos_token_id=1,
        stop_ids={0, 1},
    )


class FakeSeams:
    """What `run_round` asks of TRL and the model, answered without either (one process).

    Args:
        args: a `ZPPOConfig`.
        student: `(prompt text, sample index) -> completion text`.
        reward: `(row, completion text) -> float | None`, the correctness reward.
        teacher: `rows -> list[list[str]]` or None.
    """

    def __init__(self, args, student, reward, teacher=None):
        self.args, self.student, self.reward, self.teacher = args, student, reward, teacher
        self.num_generations, self.num_processes, self.process_index = args.num_generations, 1, 0
        self.text = char_tools()
        self.correctness_index, self.reward_weights, self.scale_rewards = 0, torch.ones(1), "group"
        self.mask_truncated_completions = False
        self.metrics = defaultdict(list)
        self.passes = []  # every pass's rows, for the test to read
        self.advantages_shown = None

    def rollout(self, groups, metrics_prefix=None, gather=False) -> Rollout:
        G = self.num_generations
        rows = [dict(g) for g in groups for _ in range(G)]
        self.passes.append(rows)
        texts = [self.student(prompt_text(r["prompt"]), i % G) for i, r in enumerate(rows)]
        scores = [self.reward(r, t) for r, t in zip(rows, texts)]
        rewards = torch.tensor([[float("nan") if s is None else s] for s in scores])
        prompts = [self.text.tokenize(prompt_text(r["prompt"])) for r in rows]
        completions = [self.text.tokenize(t) or [self.text.eos_token_id] for t in texts]
        output = {
            "prompt_ids": _pad(prompts, left=True),
            "prompt_mask": _pad([[1] * len(p) for p in prompts], left=True),
            "completion_ids": _pad(completions),
            "completion_mask": _pad([[1] * len(c) for c in completions]),
            "advantages": torch.zeros(len(rows)),
            "num_items_in_batch": torch.tensor(sum(map(len, completions))),
        }
        return Rollout(output, rewards, texts)

    def teacher_solutions(self, rows):
        solutions = self.teacher(rows) if self.teacher else [[] for _ in rows]
        return solutions, sum(not s for s in solutions)

    def compress(self, texts):
        return None

    def gather(self, tensor):
        return tensor.reshape(1, *tensor.shape) if tensor.ndim == 0 else tensor

    def gather_object(self, objects):
        return list(objects)

    def log(self, metrics):
        for key, value in metrics.items():
            self.metrics[key].append(value)

    def show_advantages(self, values):
        self.advantages_shown = values

    def nonfinite_rewards(self):
        return 0


def _pad(rows, left=False):
    width = max(map(len, rows))
    return torch.tensor([([0] * (width - len(r)) + r) if left else (r + [0] * (width - len(r))) for r in rows])
