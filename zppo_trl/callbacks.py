"""`BufferReportCallback`: a one-line-per-step account of the replay buffer, and an end-of-run summary."""

from __future__ import annotations

from transformers import TrainerCallback


class BufferReportCallback(TrainerCallback):
    """Prints, on the main process, what each generation round did to the buffer, and keeps the first BCQ and the
    first NCQ prompt as the student saw them. HF callbacks are not handed the trainer: set
    `callback.trainer = trainer` (a `ZPPOTrainer`, whose `last_round` it reads) after building the trainer."""

    def __init__(self, trainer=None):
        self.trainer = trainer
        self.examples: dict[str, dict] = {}  # kind -> first hint prompt of that kind
        self.totals = {"replayed": 0, "bcq": 0, "ncq": 0}
        self._seen_round = -1

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer is None or not trainer.last_round or trainer.last_round["round"] == self._seen_round:
            return
        last = trainer.last_round
        self._seen_round = last["round"]
        kinds = [h["kind"] for h in last["hints"]]
        self.totals["replayed"] += len(last["replayed"])
        self.totals["bcq"] += kinds.count("bcq")
        self.totals["ncq"] += kinds.count("ncq")
        for hint in last["hints"]:
            self.examples.setdefault(hint["kind"], hint)
        if state.is_world_process_zero:
            print(
                f"[zppo] step {state.global_step}: buffer {last['buffer_size']} | admitted {last['admitted']}, "
                f"graduated {last['graduated']}, evicted {last['evicted']} | replayed {len(last['replayed'])} | "
                f"hints bcq {kinds.count('bcq')} ncq {kinds.count('ncq')} | teacher failures {last['teacher_failures']}"
            )

    @staticmethod
    def print_summary(trainer) -> None:
        report = next((c for c in trainer.callback_handler.callbacks if isinstance(c, BufferReportCallback)), None)
        buf = trainer.replay_buffer
        print("[zppo] ---- buffer life ----")
        print(f"[zppo] admitted {buf.total_admitted}, graduated {buf.total_graduated}, evicted {buf.total_evicted}, "
              f"in buffer {len(buf)}")  # fmt: skip
        if report is not None:
            t = report.totals
            print(f"[zppo] replayed {t['replayed']} prompts; built {t['bcq']} BCQ and {t['ncq']} NCQ prompts")
        for k in sorted(buf.admitted_by_bin):
            rate = buf.graduation_rate(k)
            print(f"[zppo] entry bin {k}/{trainer.num_generations}: admitted {buf.admitted_by_bin[k]}, graduated "
                  f"{buf.graduated_by_bin.get(k, 0)} ({rate:.0%})")  # fmt: skip
        for hint in report.examples.values() if report is not None else []:
            prompt = hint["prompt"]
            text = prompt if isinstance(prompt, str) else "\n".join(f"[{m['role']}] {m['content']}" for m in prompt)
            print(f"[zppo] one {hint['kind'].upper()} prompt as the student saw it (question {hint['prompt_id']}):")
            print(text)
