"""ZPPO's hint groups (paper Alg. 1 steps 3-5): which of a round's hardest questions get a hint prompt and of which
kind, the teacher's solutions for them, and their rows. BCQ/NCQ here; the paper's other ways of showing a solution
(`hint_type` "hint" and "prefix") build their rows in `baselines.py`. The prompt text itself: `prompts.py`.

Every choice is identical on every process: the visits come from gathered rewards, random choices from
`round_rng(seed, round, kind, question)`, and the teacher is called on the main process and broadcast (the seams).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from ..buffers.replay import ratio_count, round_rng
from ..prompts import HintNotBuilt, build_hint_prompt
from ..round.visits import HardVisit, fit_to_unit, rank_hard
from . import baselines


def plan_hints(
    ranked: Sequence[HardVisit], has_solution: Sequence[bool], slots: int, use_bcq: bool, use_ncq: bool
) -> list[tuple[str, HardVisit]]:
    """Walk hard questions hardest first, emitting each one's BCQ (when a correct solution exists) then its NCQ,
    until `slots` hint prompts are planned (paper Alg. 1 step 4: when one slot is left, BCQ wins)."""
    plan: list[tuple[str, HardVisit]] = []
    for visit, solved in zip(ranked, has_solution, strict=True):
        for kind, ok in (("bcq", use_bcq and solved), ("ncq", use_ncq)):
            if ok and len(plan) < slots:
                plan.append((kind, visit))
    return plan


def hint_groups(
    visits: list[HardVisit], num_new: int, unit: int, round_index: int, seams
) -> tuple[list, int, Counter]:
    """The round's hint groups, identical on every process: `([(kind, model-input row)], teacher failures, hints not
    built per reason)`. Up to `hint_ratio * N` prompts for the hardest questions (each takes at least one slot):
    ZPPO's BCQ then NCQ per question, or one group per question with a teacher solution for a baseline's
    `hint_type`; cut to a multiple of `unit` (`fit_to_unit`)."""
    args = seams.args
    slots = ratio_count(args.hint_ratio, num_new)
    if slots == 0 or not (args.use_bcq or args.use_ncq):
        return [], 0, Counter()
    ranked = rank_hard(visits, args.hard_threshold)[:slots]
    solutions, failures = [[] for _ in ranked], 0
    if (args.use_bcq or args.hint_type != "bcq_ncq") and ranked:
        solutions, failures = seams.teacher_solutions([v.row for v in ranked])
    if args.hint_type == "bcq_ncq":
        plan = plan_hints(ranked, [bool(s) for s in solutions], slots, args.use_bcq, args.use_ncq)
    else:  # the paper's baselines: one group per hard question with a teacher solution
        plan = [(args.hint_type, v) for v, s in zip(ranked, solutions) if s][:slots]
    by_id = {v.prompt_id: s for v, s in zip(ranked, solutions)}
    plan = compress_wrong_candidates(plan, seams)
    rows, unbuilt = [], Counter()
    for kind, visit in plan:
        rng = round_rng(args.seed, round_index, kind, visit.prompt_id)
        try:
            if kind in ("hint", "prefix"):
                rows.append((kind, baselines.hint_row(kind, visit, rng.choice(by_id[visit.prompt_id]), seams)))
            else:
                rows.append((kind, hint_row(kind, visit, by_id[visit.prompt_id], rng, seams)))
        except HintNotBuilt as err:  # this question gets no such hint this round; counted per reason
            unbuilt[err.reason] += 1
    return fit_to_unit(rows, unit), failures, unbuilt


def hint_row(kind: str, visit: HardVisit, solutions: list[str], rng, seams) -> dict:
    """One BCQ or NCQ model-input row (the prompt built by `prompts.build_hint_prompt`, the instruction already in
    it); raises `prompts.HintNotBuilt` with its reason when it cannot be built."""
    args, text = seams.args, seams.text
    prompt = build_hint_prompt(
        kind,
        visit.row["prompt"],
        visit.wrong_completions,
        rng,
        correct=rng.choice(solutions) if kind == "bcq" else None,
        instruction=args.answer_format_instruction,
        max_prompt_tokens=args.hint_prompt_max_tokens,
        max_candidate_tokens=args.candidate_max_tokens,
        count_tokens=text.count_tokens,
        extract_answer=text.extract_answer,
        match_lengths=args.bcq_match_lengths,
        special_tokens=text.special_tokens,
    )
    return {**visit.row, "prompt_id": visit.prompt_id, "prompt": prompt, "zppo_kind": kind}


def compress_wrong_candidates(plan: list[tuple[str, HardVisit]], seams) -> list[tuple[str, HardVisit]]:
    """With a compressing teacher (`teacher_compress`), the student's wrong rollouts are rewritten by the same
    teacher prompt as its own kept solutions, so that a candidate's style says nothing about which is correct
    (paper App. D.1). One call on the main process, broadcast (`seams.compress`); on a fault the rollouts stay as
    they are."""
    visits = list({id(v): v for kind, v in plan if kind in ("bcq", "ncq")}.values())
    texts = [text for v in visits for text in v.wrong_completions]
    compressed_texts = seams.compress(texts) if texts else None
    if compressed_texts is None or len(compressed_texts) != len(texts):
        return plan
    compressed, start = {}, 0
    for v in visits:
        n = len(v.wrong_completions)
        compressed[id(v)] = dataclasses.replace(v, wrong_completions=list(compressed_texts[start : start + n]))
        start += n
    return [(kind, compressed.get(id(v), v)) for kind, v in plan]
