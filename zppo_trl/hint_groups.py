"""ZPPOTrainer's hint groups: which of a round's hardest questions get a hint prompt, the rows of BCQ/NCQ prompts and
of the paper's baselines (Hint, Prefix), the teacher's solutions (one call on the main process, broadcast), and the
rollout pass that runs them. The pure pieces: `hints.py` (planning), `prompts.py` (BCQ/NCQ text), `baselines.py`."""

from __future__ import annotations

import dataclasses
import warnings

from accelerate.utils import broadcast_object_list

from .baselines import build_answer_hint_prompt, build_prefix_prompt, solution_prefix
from .hints import HardVisit, fit_to_unit, plan_hints, rank_hard
from .prompts import HintNotBuilt, build_hint_prompt
from .replay import ratio_count, round_rng
from .teachers import solutions_for

# on Prefix rows until the rewards are computed: [prefix text, chat dataset?]; taken off before TRL's rewards see the row
PREFIX_KEY = "zppo_prefix"


class HintGroupsMixin:
    """Hint-group methods of `ZPPOTrainer` (holds no state: the trainer's `__init__` sets every attribute)."""

    def _plan_hints(self, visits: list[HardVisit], num_new: int, unit: int) -> tuple[list[tuple[str, dict]], int]:
        """The round's hint prompts, identical on every process: `[(kind, model-input row), ...]`."""
        args = self.args
        slots = ratio_count(args.hint_ratio, num_new)
        if slots == 0 or not (args.use_bcq or args.use_ncq):
            return [], 0
        ranked = rank_hard(visits, args.hard_threshold)[:slots]  # each question takes at least one slot
        solutions, failures = [[] for _ in ranked], 0
        if (args.use_bcq or args.hint_type != "bcq_ncq") and ranked:
            solutions, failures = self._teacher_solutions([v.row for v in ranked])
        if args.hint_type == "bcq_ncq":
            plan = plan_hints(ranked, [bool(s) for s in solutions], slots, args.use_bcq, args.use_ncq)
        else:  # the paper's baselines: one group per hard question with a teacher solution
            plan = [(args.hint_type, v) for v, s in zip(ranked, solutions) if s][:slots]
        by_id = {v.prompt_id: s for v, s in zip(ranked, solutions)}
        plan = self._compress_wrong_candidates(plan)
        rows = []
        for kind, visit in plan:
            try:
                rows.append((kind, self._hint_row(kind, visit, by_id[visit.prompt_id])))
            except HintNotBuilt as err:  # this question gets no such hint this round; counted per reason
                self._unbuilt_hints[err.reason] += 1
        return fit_to_unit(rows, unit), failures

    def _compress_wrong_candidates(self, plan: list[tuple[str, HardVisit]]) -> list[tuple[str, HardVisit]]:
        """With a compressing teacher (`teacher_compress`), the student's wrong rollouts are rewritten by the same
        teacher prompt as its own kept solutions, so that a candidate's style says nothing about which is correct
        (paper App. D.1). One call on the main process, broadcast; on a fault the rollouts stay as they are."""
        if not getattr(self.teacher, "compress", False) or not hasattr(self.teacher, "compress_texts"):
            return plan
        visits = list({id(v): v for kind, v in plan if kind in ("bcq", "ncq")}.values())
        texts = [text for v in visits for text in v.wrong_completions]
        box = [None]
        if self.accelerator.is_main_process and texts:
            try:
                box = [self.teacher.compress_texts(texts)]
            except Exception as err:  # a teacher fault degrades to uncompressed candidates, never stops the run
                warnings.warn(f"ZPPO teacher could not compress the wrong candidates, using them as sampled: {err}",
                              stacklevel=2)  # fmt: skip
        if self.accelerator.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        if box[0] is None or len(box[0]) != len(texts):
            return plan
        compressed, start = {}, 0
        for v in visits:
            n = len(v.wrong_completions)
            compressed[id(v)] = dataclasses.replace(v, wrong_completions=list(box[0][start : start + n]))
            start += n
        return [(kind, compressed.get(id(v), v)) for kind, v in plan]

    def _teacher_solutions(self, rows: list[dict]) -> tuple[list[list[str]], int]:
        # one call on the main process, broadcast: a sampling or remote teacher cannot make ranks disagree
        box = [None]
        if self.accelerator.is_main_process:
            box = [solutions_for(self.teacher, rows)]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        solutions, failures, error, acceptance_rate = box[0]
        if acceptance_rate is not None:  # a sampling teacher: its samples kept / drawn, this round
            self._metrics["train"]["zppo/teacher_acceptance_rate"].append(acceptance_rate)
        if error and not self._teacher_warned:
            warnings.warn(f"ZPPO teacher fault, the questions concerned get NCQ prompts only: {error}", stacklevel=2)
            self._teacher_warned = True
        return solutions, failures

    def _hint_row(self, kind: str, visit: HardVisit, solutions: list[str]) -> dict:
        """One hint model-input row: BCQ or NCQ (built in `prompts.build_hint_prompt`), or a baseline's (built in
        `baselines.py`). Raises `prompts.HintNotBuilt` with its reason when it cannot be built."""
        args = self.args
        rng = round_rng(args.seed, self._zppo_round, kind, visit.prompt_id)
        if kind in ("hint", "prefix"):
            return self._baseline_row(kind, visit, rng.choice(solutions))
        prompt = build_hint_prompt(
            kind, visit.row["prompt"], visit.wrong_completions, rng,
            correct=rng.choice(solutions) if kind == "bcq" else None, instruction=args.answer_format_instruction,
            max_prompt_tokens=args.hint_prompt_max_tokens, max_candidate_tokens=args.candidate_max_tokens,
            count_tokens=self._count_tokens, extract_answer=self._extract_answer, match_lengths=args.bcq_match_lengths,
        )  # fmt: skip
        # the instruction is already in the prompt
        return {**visit.row, "prompt_id": visit.prompt_id, "prompt": prompt, "zppo_kind": kind}

    def _baseline_row(self, kind: str, visit: HardVisit, solution: str) -> dict:
        row, instruction = visit.row, self.args.answer_format_instruction
        extra = {"prompt_id": visit.prompt_id, "zppo_kind": kind}
        if kind == "hint":
            prompt = build_answer_hint_prompt(row["prompt"], solution, str(row.get("answer", "")), instruction)
            if prompt is None:
                raise HintNotBuilt("no_answer_free_hint", "every sentence of the solution states the answer")
            return {**row, **extra, "prompt": prompt}
        prefix = solution_prefix(solution, self.args.prefix_fraction, self._tokenize, self._tokenizer.decode)
        return self._prefix_row(row, visit.prompt_id, kind, prefix)

    def _prefix_row(self, row: dict, prompt_id, kind: str, prefix: str) -> dict:
        """A row whose answer starts with `prefix` (the Prefix baseline's teacher prefix, a Retrospective Replay
        state): the student continues it, the prefix is prompt (no loss), the rewards read prefix + continuation."""
        render = lambda messages: self._tokenizer.apply_chat_template(
            messages, continue_final_message=True, tokenize=False, **self.chat_template_kwargs
        )
        prompt = build_prefix_prompt(row["prompt"], prefix, self.args.answer_format_instruction, render)
        extra = {"prompt_id": prompt_id, "zppo_kind": kind, PREFIX_KEY: [prefix, not isinstance(row["prompt"], str)]}
        return {**row, **extra, "prompt": prompt}

    def _hint_pass(self, hint_groups: list[dict]) -> dict:
        """TRL's rollout on the hint rows. Its metrics move to `zppo/hint/*`, so `reward`, `completions/*` keep
        describing plain rollouts (the completions table marks every row with its `zppo_kind`)."""
        metrics = self._metrics["train"]
        sizes = {k: len(v) for k, v in metrics.items()}
        hint_output = self._rollout(hint_groups)
        for key in list(metrics):
            if key.startswith("zppo/"):
                continue
            new = metrics[key][sizes.get(key, 0) :]
            if new and key != "num_tokens":
                del metrics[key][sizes.get(key, 0) :]
                metrics[f"zppo/hint/{key}"].extend(new)
        return hint_output
