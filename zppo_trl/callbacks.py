"""`BufferReportCallback`: a one-line-per-step account of the replay buffer, and an end-of-run summary that shows
ZPPO's effect: plain reward per step, the buffer's life, one question's life, hint accuracy next to the plain
accuracy of the same questions, and plain accuracy on a fixed held-out set before and after training."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from transformers import TrainerCallback


class BufferReportCallback(TrainerCallback):
    """Prints, on the main process, what each generation round did to the buffer, and keeps what the end-of-run
    summary needs. HF callbacks are not handed the trainer: set `callback.trainer = trainer` (a `ZPPOTrainer`, whose
    `last_round` and `replay_buffer` it reads) after building the trainer.

    Args:
        trainer: the `ZPPOTrainer` (or set the attribute later).
        held_out (`datasets.Dataset`, *optional*): a fixed held-out set (`prompt`, `answer`, optional `family`);
            its plain accuracy is measured before training starts and after it ends, with the trainer's
            correctness reward, answer-format instruction and completion length.
        held_out_samples (`int`, defaults to `4`): completions sampled per held-out question.
    """

    def __init__(self, trainer=None, held_out=None, held_out_samples: int = 4):
        self.trainer = trainer
        self.held_out, self.held_out_samples = held_out, held_out_samples
        self.held_out_accuracy: dict[str, dict] = {}  # "before" / "after" -> evaluation.plain_accuracy's result
        self.examples: dict[str, dict] = {}  # kind -> first hint prompt of that kind
        self.totals = {"replayed": 0, "bcq": 0, "ncq": 0}
        self.round_steps: dict[int, int] = {}  # generation round -> optimizer step it ended in
        self.replays: Counter = Counter()  # prompt_id -> plain replays
        self.hints: dict = defaultdict(list)  # prompt_id -> [(step, kind), ...]
        self.hinted_plain_accuracy: dict[str, list[float]] = {"bcq": [], "ncq": []}  # per hint prompt
        self._seen_round = -1

    # ----------------------------------------------------------------------------------------------------------------
    # held-out accuracy before and after

    def _evaluate_held_out(self, when: str) -> None:
        trainer = self.trainer
        if trainer is None or self.held_out is None:
            return
        from .evaluation import plain_accuracy, training_sampler

        args = trainer.args
        result = plain_accuracy(
            trainer.model,
            trainer.processing_class,
            self.held_out,
            num_samples=self.held_out_samples,
            max_new_tokens=args.max_completion_length,
            instruction=args.answer_format_instruction,
            sampler=training_sampler(args),
            reward=trainer.correctness_reward,
            seed=args.seed,
        )
        self.held_out_accuracy[when] = result
        if trainer.is_world_process_zero():
            print(f"[zppo] held-out plain accuracy {when} training: {_held_out_line(result, self.held_out)}")

    def on_train_begin(self, args, state, control, **kwargs):
        self._evaluate_held_out("before")

    def on_train_end(self, args, state, control, **kwargs):
        self._evaluate_held_out("after")

    # ----------------------------------------------------------------------------------------------------------------
    # per round

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer is None or not trainer.last_round or trainer.last_round["round"] == self._seen_round:
            return
        last, step, buffer = trainer.last_round, state.global_step, trainer.replay_buffer
        self._seen_round = last["round"]
        self.round_steps[last["round"]] = step
        kinds = [h["kind"] for h in last["hints"]]
        self.totals["replayed"] += len(last["replayed"])
        self.totals["bcq"] += kinds.count("bcq")
        self.totals["ncq"] += kinds.count("ncq")
        self.replays.update(last["replayed"])
        for hint in last["hints"]:
            self.examples.setdefault(hint["kind"], hint)
            self.hints[hint["prompt_id"]].append((step, hint["kind"]))
            entry = buffer.entry(hint["prompt_id"])  # a hinted question failed this round: its entry has the score
            if entry is not None:
                self.hinted_plain_accuracy[hint["kind"]].append(entry.accuracy)
        if state.is_world_process_zero:
            print(
                f"[zppo] step {step}: buffer {last['buffer_size']} | admitted {last['admitted']}, "
                f"graduated {last['graduated']}, evicted {last['evicted']} | replayed {len(last['replayed'])} | "
                f"hints bcq {kinds.count('bcq')} ncq {kinds.count('ncq')} | teacher failures {last['teacher_failures']}"
            )

    # ----------------------------------------------------------------------------------------------------------------
    # the end-of-run summary

    @staticmethod
    def print_summary(trainer) -> None:
        report = next((c for c in trainer.callback_handler.callbacks if isinstance(c, BufferReportCallback)), None)
        for line in summary_lines(trainer, report):
            print(line)


def summary_lines(trainer, report: BufferReportCallback | None) -> list[str]:
    """The end-of-run summary as lines (what `print_summary` prints)."""
    buf, G = trainer.replay_buffer, trainer.num_generations
    history = trainer.state.log_history
    lines = []
    rewards = [(h["step"], h["reward"]) for h in history if "reward" in h and "step" in h]
    if rewards:
        lines.append("[zppo] plain reward per step: " + ", ".join(f"{s}: {r:.2f}" for s, r in rewards))
    lines.append("[zppo] ---- buffer life ----")
    replayed = f"replayed {report.totals['replayed']}, " if report is not None else ""
    lines.append(
        f"[zppo] admitted {buf.total_admitted}, {replayed}graduated {buf.total_graduated}, evicted "
        f"{buf.total_evicted}, still in buffer {len(buf)}"
    )
    if report is not None:
        lines.append(f"[zppo] hint prompts: {report.totals['bcq']} BCQ, {report.totals['ncq']} NCQ")
    for k, admitted, graduated, rate in buf.by_entry_bin():
        lines.append(f"[zppo] entry bin {k}/{G}: admitted {admitted}, graduated {graduated} ({rate:.0%})")
    if report is not None:
        lines += _hint_accuracy_lines(history, report)
        lines += _question_life_lines(buf, report, G)
        before, after = report.held_out_accuracy.get("before"), report.held_out_accuracy.get("after")
        if before and after:
            lines.append(
                f"[zppo] held-out plain accuracy before -> after: {_held_out_line(before, report.held_out)}"
                f" -> {_held_out_line(after, report.held_out)}"
            )
        for hint in report.examples.values():
            prompt = hint["prompt"]
            text = prompt if isinstance(prompt, str) else "\n".join(f"[{m['role']}] {m['content']}" for m in prompt)
            lines.append(
                f"[zppo] one {hint['kind'].upper()} prompt as the student saw it (question {hint['prompt_id']}):"
            )
            lines.append(text)
    return lines


def _hint_accuracy_lines(history: list[dict], report: BufferReportCallback) -> list[str]:
    """Hint-rollout accuracy (weighted by the number of hint prompts per logged round) next to the plain accuracy
    the same questions had in the same rounds."""
    lines = []
    for kind in ("bcq", "ncq"):
        weighted = [
            (h[f"zppo/{kind}_accuracy"], h[f"zppo/{kind}_prompts"])
            for h in history
            if _number(h.get(f"zppo/{kind}_accuracy"))
        ]
        prompts = sum(n for _, n in weighted)
        plain = report.hinted_plain_accuracy[kind]
        if prompts and plain:
            accuracy = sum(a * n for a, n in weighted) / prompts
            plain_accuracy = sum(plain) / len(plain)
            lines.append(
                f"[zppo] {kind.upper()} rollouts {accuracy:.0%} correct; the same questions' plain "
                f"rollouts in the same rounds {plain_accuracy:.0%} ({len(plain)} prompts)"
            )
    return lines


def _number(value) -> bool:
    # a round without hints of a kind logs NaN, which the log history may hold as None
    return isinstance(value, (int, float)) and not math.isnan(value)


def _question_life_lines(buf, report: BufferReportCallback, G: int) -> list[str]:
    """One graduated question's life in a line (the first that was hinted, else the first), or, with no graduation,
    the most-hinted question still in the buffer."""
    steps = report.round_steps

    def hinted(pid) -> str:
        events = report.hints.get(pid, [])
        if not events:
            return "never hinted"
        return "hinted " + ", ".join(f"{kind.upper()} at step {step}" for step, kind in events)

    def replayed(pid) -> str:
        return f"replayed {report.replays[pid]}x"

    if buf.graduations:
        life = next((g for g in buf.graduations if g.prompt_id in report.hints), buf.graduations[0])
        return [
            f"[zppo] one question's life: {life.prompt_id} admitted at step {steps.get(life.admitted_round, '?')} "
            f"with {life.entry_bin}/{G} correct, {replayed(life.prompt_id)}, {hinted(life.prompt_id)}, graduated "
            f"at step {steps.get(life.graduated_round, '?')} with {life.correct}/{life.scored}"
        ]
    if len(buf):
        pid = max(buf.ids(), key=lambda p: len(report.hints.get(p, [])))
        entry = buf.entry(pid)
        return [
            f"[zppo] no graduation; one question's life: {pid} admitted at step "
            f"{steps.get(entry.admitted_round, '?')} with {entry.entry_bin}/{G} correct, {replayed(pid)}, "
            f"{hinted(pid)}, latest plain accuracy {entry.accuracy:.0%}"
        ]
    return []


def _held_out_line(result: dict, dataset) -> str:
    """`38% (24 questions x 4 samples; add_1d 75%, add_2d 12%)`: overall and, when the set has a `family` column,
    per family."""
    text = f"{result['accuracy']:.0%}"
    if dataset is not None and "family" in dataset.column_names and "prompt_id" in dataset.column_names:
        by_family = defaultdict(list)
        for pid, family in zip(dataset["prompt_id"], dataset["family"]):
            if pid in result["per_question"]:
                by_family[family].append(result["per_question"][pid])
        text += " (" + ", ".join(f"{f} {sum(v) / len(v):.0%}" for f, v in by_family.items()) + ")"
    return text
