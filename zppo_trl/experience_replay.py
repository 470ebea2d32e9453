"""ZPPOTrainer's ExGRPO experience replay: which stored questions a round replays, which of its successes are stored,
the mixed groups (one fresh rollout replaced by a stored success), and their metrics. The method's pure pieces:
`experience.py`."""

from __future__ import annotations

import torch
from accelerate.utils import gather_object
from trl.models.utils import disable_gradient_checkpointing

from .experience import Trajectory, delayed_start, lowest_entropy, sample_experience, shaped_surrogate
from .hints import HardVisit, fit_to_unit
from .replay import ratio_count, round_rng

# ExGRPO: per-row flag of a replayed stored success, and its stored (generating) per-token log-probs, in the rollout
# output next to TRL's tensors; `compute_loss` hands them to the forward, which turns the row's log-probs into the
# shaped surrogate (see `experience.shaped_surrogate`)
EXPERIENCE_FLAG = "zppo_experience"
EXPERIENCE_LOGPS = "zppo_experience_logps"


class ExperienceReplayMixin:
    """ExGRPO methods of `ZPPOTrainer` (holds no state: the trainer's `__init__` sets every attribute)."""

    def _draw_experience(self, num_new: int, unit: int, exclude: set) -> list:
        """The round's experience questions, identical on every process: `experience_ratio * N` drawn by accuracy
        bucket once the delayed start is on, cut to a multiple of `unit` (or repeated up to one unit)."""
        count = ratio_count(self.args.experience_ratio, num_new)
        if count == 0 or not self._experience_on:
            return []
        rng = round_rng(self.args.seed, self._zppo_round, "experience")
        return fit_to_unit(sample_experience(self.experience_buffer, count, rng, exclude=exclude), unit)

    def _harvest_experience(self, output: dict, visits: list[HardVisit], correct, scored, num_new: int) -> list:
        """With ExGRPO on: latch the delayed start on the new prompts' plain pass@1, then (once on, as ExGRPO's code)
        the round's visits for the experience buffer, `[(visit, correct marks, trajectories)]`: a correct rollout of a
        partially solved question comes with its token ids and generating log-probs (TRL's old log-probs when it kept
        them, else one no-grad forward over those rows)."""
        args, G = self.args, self.num_generations
        if args.experience_ratio <= 0:
            return []
        new_scored = int(scored[:num_new].sum())
        if new_scored and delayed_start(float(correct[:num_new].sum()) / new_scored, args.experience_start_accuracy):
            self._experience_on = True
        if not self._experience_on:
            return []
        k, n = correct.sum(dim=1), scored.sum(dim=1)
        wanted = [
            g * G + i for g in range(len(visits)) if 0 < k[g] < n[g] for i in correct[g].nonzero().view(-1).tolist()
        ]
        trajectories: dict[int, Trajectory] = {}
        if wanted:
            held = self._held_rows(output, wanted)
            rows = list(held.values())
            logps = output.get("old_per_token_logps")
            logps = self._student_logps(output, rows or [0]) if logps is None else logps[rows]
            lengths = output["completion_mask"][rows].sum(dim=1).tolist()
            mine = [(row, output["completion_ids"][local, :n_tok].tolist(), lp[:n_tok].tolist())
                    for (row, local), n_tok, lp in zip(held.items(), map(int, lengths), logps) if n_tok > 0]  # fmt: skip
            trajectories = {row: Trajectory(ids, lps, self._zppo_round) for row, ids, lps in gather_object(mine)}
        harvest = []
        for g, visit in enumerate(visits):
            marks = [bool(c) if s else None for c, s in zip(correct[g].tolist(), scored[g].tolist())]
            if 0 < k[g] < n[g] and any(c and g * G + i not in trajectories for i, c in enumerate(marks)):
                continue  # a correct rollout with no loss tokens (truncated and masked): nothing to replay
            harvest.append((visit, marks, [trajectories.get(g * G + i) for i in range(G)]))
        return harvest

    def _replay_experience(
        self, output: dict, plain_groups: list[dict], first: int, pids: list, rewards_per_func
    ) -> tuple[torch.Tensor, list[tuple[int, Trajectory]]]:
        """ExGRPO's mixed groups: in experience group `first + j` (question `pids[j]`), the last of its G fresh
        rollouts is replaced by the question's stored success with the lowest mean entropy under the current policy
        (each group's candidates are scored by the process that holds that row, then gathered, so every process
        chooses the same). Returns the rescored rewards and this process's `(local row, trajectory)` pairs.

        Ours: TRL rolls out G per group, so the group is G fresh rollouts of which one is replaced (one rollout more
        than ExGRPO's G-1 fresh + 1 replayed)."""
        G = self.num_generations
        targets = [((first + j) * G + G - 1, pid) for j, pid in enumerate(pids)]
        held = self._held_rows(output, [row for row, _ in targets])
        candidates = [(row, i, t.completion_ids) for row, pid in targets if row in held
                      for i, t in enumerate(self.experience_buffer.trajectories(pid))]  # fmt: skip
        entropies = self._mean_entropies(output, [(held[row], ids) for row, _, ids in candidates])
        scored = gather_object([(row, i, h) for (row, i, _), h in zip(candidates, entropies)])
        chosen = {}
        for row, pid in targets:
            stored = self.experience_buffer.trajectories(pid)
            by_index = {i: h for r, i, h in scored if r == row}
            chosen[row] = stored[lowest_entropy(stored, [by_index[i] for i in range(len(stored))])]
        plan = [(row, chosen[row].completion_ids) for row, _ in targets]
        rewards_per_func, rows = self._replace_rows(output, plain_groups, plan, "experience", rewards_per_func)
        mine = [(held[row], chosen[row]) for row, _ in targets if row in held]
        old = output.get("old_per_token_logps")
        if old is not None and mine:
            # TRL kept old log-probs (several updates per round): the replayed row's "old" value is the surrogate at
            # generation time, so its ratio is 1 on the first update and PPO-clipped around it after
            stored = experience_columns(old, mine)[EXPERIENCE_LOGPS][rows]
            old[rows] = shaped_surrogate(old[rows], stored, self.args.experience_beta).to(old.dtype)
        return rewards_per_func, mine

    def _mean_entropies(self, output: dict, items: list[tuple[int, list[int]]]) -> list[float]:
        """Mean token entropy under the current policy of each `(local row, completion ids)`: the row's prompt
        followed by the ids. One no-grad forward on every process (on row 0's own prompt when it has no item)."""
        probe = items or [(0, [int(output["completion_ids"][0, 0])])]
        width = max(len(ids) for _, ids in probe)
        completion = output["completion_ids"].new_full((len(probe), width), self._tokenizer.pad_token_id)
        mask = torch.zeros_like(completion)
        for i, (_, ids) in enumerate(probe):
            completion[i, : len(ids)] = torch.tensor(ids, dtype=completion.dtype)
            mask[i, : len(ids)] = 1
        rows = [row for row, _ in probe]
        input_ids = torch.cat([output["prompt_ids"][rows], completion], dim=1)
        attention_mask = torch.cat([output["prompt_mask"][rows], mask], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            _, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                input_ids,
                attention_mask,
                width,
                self.args.per_device_train_batch_size,
                compute_entropy=True,
            )
        means = (entropies * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return means.tolist() if items else []

    def _experience_metrics(self, replayed: int) -> dict[str, float]:
        counters = self.experience_buffer.counters()
        return {
            "zppo/experience/on": float(self._experience_on),
            "zppo/experience/replayed": float(replayed),
            "zppo/experience/buffer_size": float(len(self.experience_buffer)),
            "zppo/experience/total_stored_trajectories": float(counters["stored_trajectories"]),
            "zppo/experience/total_retired": float(counters["retired"]),
        }


def experience_columns(like: torch.Tensor, rows: list[tuple[int, Trajectory]]) -> dict[str, torch.Tensor]:
    """The ExGRPO columns of a rollout output shaped like `like` (`(rows, completion width)`): a flag per row and the
    stored per-token log-probs of each `(local row, trajectory)`, zero elsewhere."""
    flags = torch.zeros(like.shape[0], dtype=torch.bool, device=like.device)
    logps = torch.zeros(like.shape[:2], dtype=torch.float32, device=like.device)
    for row, trajectory in rows:
        values = trajectory.logps[: like.shape[1]]
        flags[row] = True
        logps[row, : len(values)] = torch.tensor(values, dtype=torch.float32)
    return {EXPERIENCE_FLAG: flags, EXPERIENCE_LOGPS: logps}
