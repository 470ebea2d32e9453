"""Hint-augmented prompts: BCQ and NCQ (paper App. D.1, Figs. 8, 16–18). Pure strings in, strings out.

- **BCQ** (binary-choice question): the question, then two anonymised candidates in a seeded random order, one
  correct (teacher) and one wrong (student).
- **NCQ** (negative-choice question): the question, the deduplicated wrong final answers ("all WRONG") and the wrong
  reasoning traces.

Every candidate is prepared the same way (`prepare_candidate`): `<think>` blocks stripped, *sanitised* (text that looks
like the template's own tags or sentences, or like a special token of the student's tokenizer, also in Unicode
look-alike or zero-width form, is neutralised so that it cannot change the prompt's structure), and *cut* only when it
is over its token budget, keeping its head and its final answer. An empty, whitespace-only or tag-only rollout is never
a candidate. Both BCQ candidates are shown whole: the teacher's reasoning is the content BCQ exists to show. The paper
makes the two alike in style by having the teacher compress both (`COMPRESSION_TEMPLATE`,
`ZPPOConfig.teacher_compress`); `match_candidate_lengths` is a model-free alternative, off by default, that cuts the
longer one to the other's length. A hint that cannot be built raises `HintNotBuilt` with a reason the trainer counts.
The templates are module constants and can be overridden per call.
"""

from __future__ import annotations

import functools
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

BCQ_TEMPLATE = (
    "Here are two candidate responses in <candidate> </candidate> tags to the question above. One is correct and "
    "another is wrong. Use these as references to help you solve the problem."
)
NCQ_TEMPLATE = (
    "The following answers are all WRONG: {answers}. Below are the incorrect reasoning processes in "
    "<candidate> </candidate> tags."
)
NCQ_NO_ANSWER = "(no final answer given)"  # ours: used when the answer extractor read no answer in any wrong rollout
ANSWER_FORMAT_INSTRUCTION = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. The "
    "reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)
COMPRESSION_TEMPLATE = (
    "Compress the response below into a summary (in 5 lines max). Rules:\n"
    "• Response is in <response>...</response> tags\n"
    "• Summary should be in <summary>...</summary> tags and should be in 5 lines max\n"
    "• Keep ONLY the essential reasoning steps and the final answer\n"
    "• Remove ALL exploratory text, self-corrections, retries, and filler\n"
    "• Do NOT re-derive or add new information\n"
    "• End with the final answer in \\boxed{{}} format <response>\n{candidate} </response>"
)
CANDIDATE_OPEN, CANDIDATE_CLOSE = "<candidate>", "</candidate>"
TRUNCATION_MARK = "\n[...]\n"

# A token counter: text -> number of tokens. The trainer passes one built from its tokenizer.
TokenCounter = Callable[[str], int]
# An answer extractor: completion text -> its final answer, or None. The trainer passes the correctness reward's
# (`rewards.answer_extractor`), so the answers NCQ lists as wrong are read the way the reward reads them.
AnswerExtractor = Callable[[str], "str | None"]


def _default_counter(text: str) -> int:
    # Without a tokenizer, assume ~4 characters per token (a common rule of thumb for English/LaTeX).
    return (len(text) + 3) // 4


# --------------------------------------------------------------------------------------------------------------------
# answers


def _last_boxed(text: str) -> tuple[int, int] | None:
    """`(start, end)` of the last complete `\\boxed{...}` in `text`, nested braces balanced; None if there is none
    (an unterminated last one, as in a truncated completion, falls back to an earlier one)."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i, depth = start + len("\\boxed{"), 1
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return start, i
        start = text.rfind("\\boxed{", 0, start)
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, with nested braces balanced; None if there is none or it is
    unterminated (a truncated completion)."""
    span = _last_boxed(text)
    return text[span[0] + len("\\boxed{") : span[1] - 1].strip() if span else None


# --------------------------------------------------------------------------------------------------------------------
# sanitising and cutting candidates

_SPECIAL_TOKEN = re.compile(r"<\|([^|<>]{0,64})\|>")
_TAG = re.compile(r"<\s*(/?)\s*candidate\s*>", re.IGNORECASE)
# What a reader (or a tokenizer's normaliser) may take for the ASCII characters of a tag or a special token, beyond
# what NFKC folds already (full-width forms, small form variants such as `﹤`): angle brackets, slashes, vertical
# bars, and the Cyrillic and Greek letters drawn like Latin ones.
_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("‹〈〈⟨❬❮˂", "<"),
        **dict.fromkeys("›〉〉⟩❭❯˃", ">"),
        **dict.fromkeys("⁄∕⧸", "/"),
        **dict.fromkeys("∣ǀ｜￨", "|"),
        **dict(zip("аеорсухіјѕԁһӏԛԝАВЕКМНОРСТХІЈЅ", "aeopcyxijsdhlqwABEKMHOPCTXIJS")),
        **dict(zip("αοιρνΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "aoipvABEZHIKMNOPTYX")),
    }
)
_MAX_PASSES = 8  # a neutralised token next to other text could form a new one; each pass breaks what is left


@functools.lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    if unicodedata.category(char) == "Cf":  # invisible format characters: zero-width space and joiners, BOM, bidi
        return ""
    return unicodedata.normalize("NFKC", char).translate(_LOOKALIKES)


def _skeleton(text: str) -> tuple[str, list[int] | None]:
    """`text` as it reads: invisible format characters dropped, Unicode look-alikes folded to ASCII (NFKC, then
    `_LOOKALIKES`), and where each character of it comes from in `text` (None: the same place, `text` is ASCII)."""
    if text.isascii():
        return text, None
    parts, index = [], []
    for run in re.finditer(r"[\x00-\x7f]+|[^\x00-\x7f]+", text):
        if run.group().isascii():
            parts.append(run.group())
            index.extend(range(run.start(), run.end()))
            continue
        for i, char in enumerate(run.group(), run.start()):
            folded = _fold_char(char)
            parts.append(folded)
            index.extend([i] * len(folded))
    return "".join(parts), index


def _is_plain_text(token: str) -> bool:
    # letters, digits and whitespace (`▁` is SentencePiece's space) read as ordinary text in any tokenizer
    return all(c.isalnum() or c.isspace() or c == "▁" for c in token)


def special_token_strings(tokenizer) -> tuple[str, ...]:
    """The token strings of `tokenizer` (or of a processor's tokenizer) that hint prompts neutralise: every special
    token (`all_special_tokens` and every added token flagged special, such as SmolLM2's `<file_sep>`) and every
    added token that looks like markup (a character other than a letter, digit or space: DeepSeek's `<｜User｜>`,
    Qwen's `<tool_call>`). Pass it as `special_tokens=` to `sanitize_candidate` and the hint builders.

    Added tokens of letters and whitespace only (runs of spaces or newlines) are ordinary text and are left, as are
    one-character tokens, which cannot be split."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor (multimodal) holds its tokenizer
    tokens = set(getattr(tokenizer, "all_special_tokens", None) or ())
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if added.special or not _is_plain_text(added.content):
            tokens.add(added.content)
    return tuple(sorted(t for t in tokens if len(t.replace("▁", " ").strip()) >= 2))


def _trie_pattern(words: Sequence[str]) -> str:
    """A regex matching any of `words`, longest first, as a trie: `re` tries a flat alternation of a few hundred
    words (Llama-3 declares 256 reserved tokens) one by one at every `<` of a text."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def emit(node: dict) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and "" not in node else f"(?:{'|'.join(branches)})"
        return f"{body}?" if "" in node else body  # greedy: the longer word is tried first

    return emit(trie)


@functools.lru_cache(maxsize=32)
def _structure_pattern(special_tokens: tuple[str, ...]) -> re.Pattern:
    """One pattern over a text's `_skeleton` for everything a hint prompt neutralises: the candidate tags, chat
    tokens shaped `<|…|>`, and `special_tokens` (in their folded form, longest first)."""
    tokens = {_skeleton(token)[0].strip() for token in special_tokens}
    tokens = sorted(t for t in tokens if len(t) >= 2)
    alternatives = [rf"(?P<tag>{_TAG.pattern})", rf"(?P<chat>{_SPECIAL_TOKEN.pattern})"]
    if tokens:
        alternatives.append(f"(?P<token>{_trie_pattern(tokens)})")
    # the lookahead lets a search skip, in one test, every position where nothing can start
    starts = "".join(sorted({"<", *(t[0].lower() for t in tokens), *(t[0].upper() for t in tokens)}))
    return re.compile(f"(?=[{re.escape(starts)}])(?:{'|'.join(alternatives)})", re.IGNORECASE)


def _neutral(match: re.Match) -> str:
    """What a tag or token becomes: `[candidate]`/`[/candidate]`, `<| name |>`, or the token with a space after its
    first character (`</s>` -> `< /s>`, `[/INST]` -> `[ /INST]`), which no tokenizer maps to the token."""
    if match.group("tag") is not None:
        return f"[{'/' if '/' in match.group('tag') else ''}candidate]"
    if match.group("chat") is not None:
        return f"<| {match.group('chat')[2:-2].strip()} |>"
    return f"{match.group()[0]} {match.group()[1:]}"


def _neutralise_structure(text: str, special_tokens: Sequence[str] = ()) -> str:
    pattern = _structure_pattern(tuple(special_tokens))
    for _ in range(_MAX_PASSES):
        skeleton, index = _skeleton(text)
        pieces, end, changed = [], 0, False
        for match in pattern.finditer(skeleton):
            start, stop = match.span() if index is None else (index[match.start()], index[match.end() - 1] + 1)
            replacement = _neutral(match)
            if text[start:stop] != replacement:
                pieces += [text[end:start], replacement]
                end, changed = stop, True
        if not changed:
            return text
        text = "".join(pieces) + text[end:]
    return text


def _template_sentences(*templates: str) -> list[str]:
    sentences = []
    for template in templates:
        for sentence in re.split(r"(?<=[.:])\s+", template):
            sentence = sentence.split("{")[0].strip()  # the fixed part before a placeholder
            if len(sentence) >= 20:
                sentences.append(sentence)
    return sentences


def sanitize_candidate(
    text: str, templates: Sequence[str] = (BCQ_TEMPLATE, NCQ_TEMPLATE), special_tokens: Sequence[str] = ()
) -> str:
    """Neutralise everything in a candidate (or question) that could pose as prompt structure.

    - `<candidate>` / `</candidate>` (any case or spacing, in Unicode look-alikes such as `＜/candidate＞`, or with
      zero-width characters inside) become `[candidate]` / `[/candidate]`;
    - sentences of the templates are cut to a "[quoted]" stub, so a candidate cannot announce new candidates;
    - chat tokens shaped `<|…|>` (also in full-width form, as DeepSeek's `<｜end▁of▁sentence｜>`) become
      `<| name |>`;
    - each of `special_tokens` (pass `special_token_strings(tokenizer)`: `</s>`, `<end_of_turn>`, `[/INST]`, ...),
      also in look-alike or zero-width form, gets a space after its first character (`< /s>`).

    No neutralised text tokenizes to a special token id of the tokenizer whose `special_tokens` were passed.
    """
    text = _neutralise_structure(text, special_tokens)
    for sentence in _template_sentences(*templates):
        text = re.sub(re.escape(sentence), "[quoted]", text, flags=re.IGNORECASE)
    return text


_LAST_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def final_answer_span(text: str) -> tuple[int, int] | None:
    """Where a candidate's final answer is: its last complete `\\boxed{...}`, else its last number; None when it has
    neither. The one rule both for keeping the answer in a cut and for reserving room for it."""
    span = _last_boxed(text)
    if span is not None:
        return span
    numbers = list(_LAST_NUMBER.finditer(text))
    return (numbers[-1].start(), numbers[-1].end()) if numbers else None


def answer_tail(text: str) -> str:
    """A candidate's final answer and what follows it (`final_answer_span`); "" when it has no answer."""
    span = final_answer_span(text)
    return text[span[0] :] if span else ""


def truncate_keep_answer(
    text: str,
    max_tokens: int,
    count_tokens: TokenCounter = _default_counter,
    mark: str = TRUNCATION_MARK,
    answer_share: float = 0.5,
) -> str:
    """Cut `text` to at most `max_tokens` tokens, keeping its head and its final answer.

    Ours (the paper compresses with the teacher model instead): the final answer (`final_answer_span`: the last
    `\\boxed{}`, else the last number) and what follows it are kept whole when they fit in `answer_share` of the
    budget (half by default); when what follows is too long, the answer and as much of what follows as fits (the
    answer itself whenever it fits the budget at all); the rest of the budget goes to the head. The middle is
    replaced by `mark` (`TRUNCATION_MARK` by default). Token counts are
    measured with `count_tokens`, so the result fits the real tokenizer.
    """
    if count_tokens(text) <= max_tokens:
        return text
    budget = max_tokens - count_tokens(mark)
    if budget <= 0:
        return ""
    room = int(budget * answer_share)
    span = final_answer_span(text)
    tail_start, tail = len(text), ""
    if span and count_tokens(text[span[0] : span[1]]) <= budget:  # the answer is kept even past its share
        answer = text[span[0] : span[1]]
        room = max(room, count_tokens(answer))
        tail_start, tail = span[0], text[span[0] :]
        if count_tokens(tail) > room:  # the answer, and as much of what follows it as fits
            tail = answer + _take_head(text[span[1] :], room - count_tokens(answer), count_tokens)
    if not tail:  # no answer, or one longer than its share: the end of the text
        tail = _take_tail(text, budget // 2, count_tokens)
        tail_start = len(text) - len(tail)
    head = _take_head(text[:tail_start], budget - count_tokens(tail), count_tokens)
    out = head + mark + tail
    # token counts of concatenations can exceed the sum of the parts by a token or two at the seams
    while count_tokens(out) > max_tokens and head:
        head = head[: max(0, len(head) - max(1, len(head) // 10))]
        out = head + mark + tail
    return out if count_tokens(out) <= max_tokens else _take_tail(text, max_tokens, count_tokens)


def _take_head(text: str, max_tokens: int, count_tokens: TokenCounter) -> str:
    if max_tokens <= 0:
        return ""
    lo, hi = 0, len(text)  # binary search on characters: the longest prefix that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(text[:mid]) <= max_tokens else (lo, mid - 1)
    return text[:lo]


def _take_tail(text: str, max_tokens: int, count_tokens: TokenCounter) -> str:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(text[len(text) - mid :]) <= max_tokens else (lo, mid - 1)
    return text[len(text) - lo :] if lo else ""


_THINK_TAG = re.compile(r"<\s*/?\s*think\s*>", re.IGNORECASE)
_THINK_END = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
BCQ_SEAM = "\n"  # ours: where a BCQ candidate is cut; a plain line break, the same in both candidates


def strip_think(text: str) -> str:
    """What follows the last `</think>` (the answer part of a reasoning rollout). When nothing follows it, or the
    block is never closed (a rollout cut at `max_completion_length`), only the tags are removed."""
    ends = list(_THINK_END.finditer(text))
    after = text[ends[-1].end() :].strip() if ends else ""
    return after or _THINK_TAG.sub("", text).strip()


def is_blank_candidate(text: str, special_tokens: Sequence[str] = ()) -> bool:
    """Whether a rollout has nothing to show as a candidate: empty, whitespace or invisible characters only, or only
    tags (`<think>`, `<candidate>`, chat special tokens, `special_tokens`). Such a rollout would show the reader an
    empty block next to a real one."""
    skeleton = _skeleton(_THINK_TAG.sub("", text))[0]
    return not _structure_pattern(tuple(special_tokens)).sub("", skeleton).strip()


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


# --------------------------------------------------------------------------------------------------------------------
# attaching text to a prompt (plain string or chat messages)


def append_to_prompt(prompt: Any, text: str | None, separator: str = "\n\n") -> Any:
    """Return a copy of `prompt` with `text` appended to its end: to the string, or to the content of the last user
    message of a chat prompt (a list of `{"role", "content"}` dicts). `None` or empty `text` returns it unchanged."""
    if not text:
        return prompt
    if isinstance(prompt, str):
        return f"{prompt}{separator}{text}"
    messages = [dict(m) for m in prompt]
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                message["content"] = f"{content}{separator}{text}"
            else:  # list of content blocks (multimodal style): add a text block
                message["content"] = [*content, {"type": "text", "text": text}]
            return messages
    raise ValueError("cannot attach a hint: the chat prompt has no message with role 'user'.")


def prompt_text(prompt: Any) -> str:
    """The text of a prompt for token counting: the string, or all message contents joined."""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for message in prompt:
        content = message.get("content", "")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(block.get("text", "") for block in content if isinstance(block, dict))
    return "\n".join(parts)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") or "" for m in completion if isinstance(m, dict))
