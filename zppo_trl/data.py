"""Datasets in ZPPO's shape: `prompt` (chat messages), `answer` (gold final answer), `solution` (a reference
solution ending in `\\boxed{answer}`, usable as the BCQ teacher column) and `prompt_id`.

- `load_embedded_math()`: 48 small arithmetic and word problems shipped in the package (`data/tiny_math.jsonl`,
  generated once with a fixed seed), for the CPU demo: easy enough that a 135M model solves some, hard enough that
  it fails others.
- `to_zppo_format(dataset)`: converts the common math schemas: GSM8K (`question`, `answer` = reasoning then
  `#### 42`), MATH-style (`problem`, `solution` with a `\\boxed{}`), or datasets already holding `prompt`/`answer`.
"""

from __future__ import annotations

import json
import re
from importlib import resources

from datasets import Dataset

from .prompts import extract_boxed

_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations, e.g. "<<48/2=24>>"


def parse_gsm8k_answer(text: str) -> tuple[str, str]:
    """Split a GSM8K `answer` field into (gold answer, reference solution ending in `\\boxed{gold}`).

    Example:
    ```python
    >>> parse_gsm8k_answer("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\\n#### 1,024")
    ('1024', 'Natalia sold 48/2 = 24 clips in May.\\nThe answer is \\\\boxed{1024}.')
    ```
    """
    if "####" not in text:
        raise ValueError(f"GSM8K answer without a '#### <answer>' line: {text[:80]!r}")
    reasoning, _, gold = text.rpartition("####")
    gold = gold.strip().replace(",", "").rstrip(".")
    reasoning = _CALCULATOR.sub("", reasoning).strip()
    return gold, f"{reasoning}\nThe answer is \\boxed{{{gold}}}."


def _as_chat(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def to_zppo_format(dataset: Dataset) -> Dataset:
    """Map a math dataset to columns `prompt`, `answer`, `solution` (+ its other columns). Raises naming the columns
    found when the schema is not recognised."""
    columns = set(dataset.column_names)
    if {"prompt", "answer"} <= columns:
        return dataset
    if {"question", "answer"} <= columns:  # GSM8K

        def convert(row):
            gold, solution = parse_gsm8k_answer(row["answer"])
            return {"prompt": _as_chat(row["question"]), "answer": gold, "solution": solution}

        return dataset.map(convert, remove_columns=["question"])
    if {"problem", "solution"} <= columns:  # MATH-style: the gold answer is the solution's last \boxed{}

        def convert(row):
            gold = row["answer"] if "answer" in row and row["answer"] else extract_boxed(row["solution"]) or ""
            return {"prompt": _as_chat(row["problem"]), "answer": gold}

        return dataset.map(convert, remove_columns=["problem"])
    raise ValueError(
        f"cannot tell question and answer apart in columns {sorted(columns)}. Expected `prompt`+`answer`, GSM8K's "
        "`question`+`answer` (with '#### 42'), or MATH's `problem`+`solution`. Rename your columns to one of these."
    )


def load_embedded_math() -> Dataset:
    """The package's 48-problem arithmetic set, in ZPPO's shape (string ids `tm-00` ... `tm-47`)."""
    text = resources.files("zppo_trl").joinpath("data/tiny_math.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return Dataset.from_list(
        [
            {
                "prompt_id": r["prompt_id"],
                "prompt": _as_chat(r["question"]),
                "answer": r["answer"],
                "solution": r["solution"],
            }
            for r in rows
        ]
    )
