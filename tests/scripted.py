"""A scripted correctness reward shared by the trainer tests: 0/1 by question id, whatever the model writes."""

from zppo_trl.prompts import prompt_text

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
