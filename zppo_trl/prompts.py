"""Hint-augmented prompts: BCQ and NCQ (paper App. D.1, Figs. 8, 16–18). Pure strings in, strings out.

- **BCQ** (binary-choice question): the question, then two anonymised candidates in a seeded random order, one
  correct (teacher) and one wrong (student).
- **NCQ** (negative-choice question): the question, the deduplicated wrong final answers ("all WRONG") and the wrong
  reasoning traces.

Every candidate is prepared the same way (`prepare_candidate`): `<think>` blocks stripped, *sanitised*
(`sanitize.py`: text that looks like the template's own tags or sentences, or like a special token of the student's
tokenizer, also in Unicode look-alike or zero-width form, is neutralised so that it cannot change the prompt's
structure), and *cut* only when it is over its token budget, keeping its head and its final answer
(`text.truncate_keep_answer`). An empty, whitespace-only or tag-only rollout is never
a candidate. Both BCQ candidates are shown whole: the teacher's reasoning is the content BCQ exists to show. The paper
makes the two alike in style by having the teacher compress both (`COMPRESSION_TEMPLATE`,
`ZPPOConfig.teacher_compress`); `match_candidate_lengths` is a model-free alternative, off by default, that cuts the
longer one to the other's length. A hint that cannot be built raises `HintNotBuilt` with a reason the trainer counts.
The templates (`templates.py`) are module constants and can be overridden per call.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

from .sanitize import is_blank_candidate, sanitize_candidate
from .templates import (
    BCQ_TEMPLATE,
    CANDIDATE_CLOSE,
    CANDIDATE_OPEN,
    NCQ_NO_ANSWER,
    NCQ_TEMPLATE,
)
from .text import (
    AnswerExtractor,
    TokenCounter,
    _default_counter,
    answer_tail,
    append_to_prompt,
    extract_boxed,
    prompt_text,
    strip_think,
    truncate_keep_answer,
)

BCQ_SEAM = "\n"  # ours: where a BCQ candidate is cut; a plain line break, the same in both candidates

# --------------------------------------------------------------------------------------------------------------------
# candidates


def prepare_candidate(
    text: str,
    max_tokens: int,
    count_tokens: TokenCounter = _default_counter,
    mark: str = BCQ_SEAM,
    special_tokens: Sequence[str] = (),
) -> str:
    """A rollout or a teacher solution as a hint prompt shows it: `<think>` blocks stripped (`strip_think`),
    sanitised (`special_tokens` too), and cut only when it is over `max_tokens` (head and final answer kept, joined
    by `mark`)."""
    clean = sanitize_candidate(strip_think(text), special_tokens=special_tokens)
    return truncate_keep_answer(clean, max_tokens, count_tokens, mark=mark)


def match_candidate_lengths(
    first: str,
    second: str,
    max_tokens: int,
    count_tokens: TokenCounter = _default_counter,
    special_tokens: Sequence[str] = (),
) -> tuple[str, str]:
    """Optional (`ZPPOConfig.bcq_match_lengths`, off by default): the two prepared BCQ candidates cut to the same
    length in characters, a model-free way to take length away as a cue.

    It is a cue remover, not the paper's method: only the longer candidate is cut, and where that is nearly always
    the teacher's worked solution its reasoning is what goes (for a one-line answer the cut costs little; for a
    written-out procedure it removes the procedure). The common length is never below what `first`'s (the correct
    candidate's) final answer needs (`_answer_room`), so the answer survives; the lengths then differ.
    """
    pair = [prepare_candidate(t, max_tokens, count_tokens, special_tokens=special_tokens) for t in (first, second)]
    length = max(min(len(t) for t in pair), _answer_room(pair[0]))
    while True:
        pair = [truncate_keep_answer(t, length, len, mark=BCQ_SEAM, answer_share=1.0) for t in pair]
        if length == 0 or all(count_tokens(t) <= max_tokens for t in pair):  # tokens per character differ by text
            return pair[0], pair[1]
        length = int(length * 0.9)


def _answer_room(text: str) -> int:
    # characters a cut must keep so that `truncate_keep_answer(..., mark=BCQ_SEAM, answer_share=1.0)` keeps the answer
    tail = answer_tail(text)
    return len(tail) + len(BCQ_SEAM) if tail else 0


class HintNotBuilt(ValueError):
    """A hint prompt that cannot be built for one question; `reason` (one of `HINT_NOT_BUILT_REASONS`) says why. The
    trainer counts it per reason (`zppo/hints_not_built/<reason>`) and the question gets no such hint this round."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


HINT_NOT_BUILT_REASONS = (
    "no_usable_wrong_rollout",  # every wrong rollout is empty, whitespace or tags only
    "no_usable_solution",  # the teacher's solution is empty, whitespace or tags only
    "no_room",  # the question and the template leave no room for candidates within `hint_prompt_max_tokens`
    "no_answer_free_hint",  # the Hint baseline: every sentence of the solution states the answer
)


def _candidate_blocks(candidates: Sequence[str]) -> str:
    return "\n".join(f"{CANDIDATE_OPEN}\n{c}\n{CANDIDATE_CLOSE}" for c in candidates)


# --------------------------------------------------------------------------------------------------------------------
# the two hint formats


def build_bcq_hint(
    correct: str,
    wrong: str,
    rng: random.Random,
    max_candidate_tokens: int | tuple[int, int] = 512,
    count_tokens: TokenCounter = _default_counter,
    template: str = BCQ_TEMPLATE,
    match_lengths: bool = False,
    special_tokens: Sequence[str] = (),
) -> str:
    """The BCQ text appended after the question: the template sentence and two candidates in random order.

    The candidates are anonymised (no labels: only their order, drawn from `rng`, differs) and prepared alike
    (`prepare_candidate`: no `<think>` block, sanitised, cut only when over budget, head and final answer kept).
    `max_candidate_tokens` is one budget for both, or a `(correct, wrong)` pair. `match_lengths` cuts the longer to
    the other's length (`match_candidate_lengths`, a model-free cue remover; off by default, the paper's way is to
    have the teacher compress both). `special_tokens` (`special_token_strings(tokenizer)`) are neutralised too.
    """
    budgets = max_candidate_tokens if isinstance(max_candidate_tokens, tuple) else (max_candidate_tokens,) * 2
    if match_lengths:
        pair = list(match_candidate_lengths(correct, wrong, min(budgets), count_tokens, special_tokens))
    else:
        pair = [
            prepare_candidate(text, budget, count_tokens, special_tokens=special_tokens)
            for text, budget in zip((correct, wrong), budgets)
        ]
    rng.shuffle(pair)
    return f"{template}\n{_candidate_blocks(pair)}"


def build_ncq_hint(
    wrong_rollouts: Sequence[str],
    max_candidate_tokens: int = 512,
    max_hint_tokens: int | None = None,
    count_tokens: TokenCounter = _default_counter,
    template: str = NCQ_TEMPLATE,
    extract_answer: AnswerExtractor = extract_boxed,
    special_tokens: Sequence[str] = (),
) -> str:
    """The NCQ text appended after the question: the deduplicated wrong final answers and the wrong traces.

    `extract_answer` reads each wrong rollout's final answer (default: its last `\\boxed{}`); pass the correctness
    reward's extractor (`rewards.answer_extractor`). Ours: blank rollouts (`is_blank_candidate`) are left out;
    rollouts it reads no answer in (e.g. a truncated `\\boxed{`) add nothing to the list but still appear as a trace;
    identical traces are listed once; traces are
    added in the given order while the whole hint fits `max_hint_tokens` (at least one trace is always kept, cut to
    fit). Answers and traces are sanitised, `special_tokens` (`special_token_strings(tokenizer)`) too.
    """
    wrong_rollouts = [text for text in wrong_rollouts if not is_blank_candidate(text, special_tokens)]
    answers: list[str] = []
    for text in wrong_rollouts:
        answer = extract_answer(text)
        if answer is not None:
            answer = sanitize_candidate(answer, special_tokens=special_tokens)
            if answer not in answers:
                answers.append(answer)
    header = _ncq_header(answers, template, max_hint_tokens // 2 if max_hint_tokens else None, count_tokens)
    traces: list[str] = []
    for text in dict.fromkeys(wrong_rollouts):  # ordered dedupe
        trace = _clean(text, max_candidate_tokens, count_tokens, special_tokens)
        candidate_text = f"{header}\n{_candidate_blocks([*traces, trace])}"
        if max_hint_tokens is not None and traces and count_tokens(candidate_text) > max_hint_tokens:
            break
        traces.append(trace)
    if max_hint_tokens is not None and len(traces) == 1:
        room = max_hint_tokens - count_tokens(f"{header}\n{_candidate_blocks([''])}")
        traces = [truncate_keep_answer(traces[0], max(room, 0), count_tokens)]
    return f"{header}\n{_candidate_blocks(traces)}"


def _ncq_header(answers: list[str], template: str, max_tokens: int | None, count_tokens: TokenCounter) -> str:
    """The "all WRONG" sentence; each answer cut to 32 tokens, and answers dropped from the end past `max_tokens`
    (ours: a hint budget must hold however long the student's wrong answers are)."""
    answers = [truncate_keep_answer(a, 32, count_tokens) for a in answers]
    while True:
        listed = ", ".join(f"\\boxed{{{a}}}" for a in answers) if answers else NCQ_NO_ANSWER
        header = template.format(answers=listed)
        if max_tokens is None or len(answers) <= 1 or count_tokens(header) <= max_tokens:
            return header
        answers = answers[:-1]


def _clean(text: str, max_tokens: int, count_tokens: TokenCounter, special_tokens: Sequence[str] = ()) -> str:
    return truncate_keep_answer(
        sanitize_candidate(text.strip(), special_tokens=special_tokens), max_tokens, count_tokens
    )


def build_hint_prompt(
    kind: str,
    question: Any,
    wrong_rollouts: Sequence[str],
    rng: random.Random,
    correct: str | None = None,
    instruction: str | None = None,
    max_prompt_tokens: int = 4096,
    max_candidate_tokens: int = 512,
    count_tokens: TokenCounter = _default_counter,
    extract_answer: AnswerExtractor = extract_boxed,
    match_lengths: bool = False,
    special_tokens: Sequence[str] = (),
) -> Any:
    """The whole BCQ (`kind="bcq"`, needs `correct`) or NCQ prompt: question, hint, then `instruction`, within
    `max_prompt_tokens` (counted on the text, chat-template tokens aside). Raises `HintNotBuilt` with its reason when
    no wrong rollout (or no teacher solution) is usable, or the question leaves no room for candidates.

    The question is sanitised too (only in the hint prompt), so text in it cannot pose as candidate structure; pass
    `special_tokens=special_token_strings(tokenizer)` so that neither it nor a candidate can hold a real special token
    of the student's tokenizer (`</s>`, `<end_of_turn>`, ...). For BCQ the wrong candidate is drawn from the usable
    `wrong_rollouts` with `rng`, which then orders the two candidates. Both candidates are shown whole when they fit:
    each within `max_candidate_tokens`, and where the prompt budget is short, the shorter keeps what it needs and the
    longer is cut (head and final answer kept). NCQ lists the final answers `extract_answer` reads in `wrong_rollouts`
    (pass the correctness reward's extractor).
    """
    question = _sanitize_prompt(question, special_tokens)
    fixed = count_tokens(prompt_text(question)) + (count_tokens(instruction) + 2 if instruction else 0) + 2
    room = max_prompt_tokens - fixed
    usable = [w for w in wrong_rollouts if not is_blank_candidate(w, special_tokens)]
    if not usable:
        raise HintNotBuilt(
            "no_usable_wrong_rollout", f"{len(wrong_rollouts)} wrong rollout(s), all empty or tags only"
        )
    if kind == "bcq":
        if correct is None:
            raise ValueError("a BCQ prompt needs a correct candidate")
        if is_blank_candidate(correct, special_tokens):
            raise HintNotBuilt("no_usable_solution", "the teacher's solution is empty or tags only")
        if match_lengths:  # prefer a wrong rollout long enough to keep the correct answer at the common length
            prepare = lambda text: prepare_candidate(
                text, max_candidate_tokens, count_tokens, special_tokens=special_tokens
            )
            needed = _answer_room(prepare(correct))
            usable = [w for w in usable if len(prepare(w)) >= needed] or usable
        wrong = rng.choice(usable)
        order_seed = rng.random()  # one draw: the candidate order must not depend on how often the loop shrinks
        markup = count_tokens(f"{BCQ_TEMPLATE}\n{_candidate_blocks(['', ''])}")
        sizes = [
            count_tokens(prepare_candidate(t, max_candidate_tokens, count_tokens, special_tokens=special_tokens))
            for t in (correct, wrong)
        ]
        budgets = _share_room(sizes, room - markup - 4)

        def build(scale):  # the hint, and the smallest budget of a candidate that is cut (only those can fail)
            scaled = tuple(max(1, int(b * scale)) for b in budgets)
            hint = build_bcq_hint(
                correct,
                wrong,
                random.Random(order_seed),
                scaled,
                count_tokens,
                match_lengths=match_lengths,
                special_tokens=special_tokens,
            )
            return hint, min([b for b, size in zip(scaled, sizes) if b < size], default=room)

    elif kind == "ncq":

        def build(scale):
            budget = int((room - 4) * scale)
            return build_ncq_hint(
                usable,
                max_candidate_tokens,
                budget,
                count_tokens,
                extract_answer=extract_answer,
                special_tokens=special_tokens,
            ), budget

    else:
        raise ValueError(f"hint kind must be 'bcq' or 'ncq', got {kind!r}")
    scale = 1.0
    while True:  # shrink until the joined prompt fits (token counts are not additive at seams)
        hint, smallest = build(scale)
        if smallest < 16 or scale < 0.01:
            raise HintNotBuilt("no_room", f"the question leaves {room} of max_prompt_tokens={max_prompt_tokens}")
        prompt = append_to_prompt(append_to_prompt(question, hint), instruction)
        if count_tokens(prompt_text(prompt)) <= max_prompt_tokens:
            return prompt
        scale *= 0.9


def _share_room(sizes: list[int], room: int) -> list[int]:
    """Token budgets for two candidates of `sizes` tokens within `room`: both whole when they fit, else the shorter
    whole while it needs at most half, the longer the rest; else half each."""
    if sum(sizes) <= room:
        return list(sizes)
    small = min(sizes)
    if small <= room // 2:
        return [small if size == small else room - small for size in sizes]
    return [room // 2, room // 2]


def _sanitize_prompt(prompt: Any, special_tokens: Sequence[str] = ()) -> Any:
    clean = functools.partial(sanitize_candidate, special_tokens=special_tokens)
    if isinstance(prompt, str):
        return clean(prompt)
    return [{**m, "content": clean(m["content"])} if isinstance(m.get("content"), str) else m for m in prompt]
