"""Neutralising text that could pose as hint-prompt structure: the candidate tags, the templates' own sentences and
the student tokenizer's special tokens, also in Unicode look-alike or zero-width form. Applied to every candidate and
to the question of a hint prompt (`prompts.py`), so that a rollout cannot open a new candidate, end a turn, or
announce new candidates."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from .templates import BCQ_TEMPLATE, NCQ_TEMPLATE
from .text import THINK_TAG

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


def is_blank_candidate(text: str, special_tokens: Sequence[str] = ()) -> bool:
    """Whether a rollout has nothing to show as a candidate: empty, whitespace or invisible characters only, or only
    tags (`<think>`, `<candidate>`, chat special tokens, `special_tokens`). Such a rollout would show the reader an
    empty block next to a real one."""
    skeleton = _skeleton(THINK_TAG.sub("", text))[0]
    return not _structure_pattern(tuple(special_tokens)).sub("", skeleton).strip()
