"""Datasets in ZPPO's shape: `prompt` (chat messages), `answer` (gold final answer), `solution` (a reference
solution, usable as the BCQ teacher column) and `prompt_id`.

- `load_embedded_math()`: 48 small arithmetic and word problems shipped in the package (`data/tiny_math.jsonl`,
  generated once with a fixed seed), for the CPU demo: easy enough that a 135M model solves some, hard enough that
  it fails others.
- `load_source(...)` / `pick_split(...)`: a Hub dataset, a local `.json`/`.jsonl`/`.csv`/`.parquet` file, a folder
  of them (splits from the file names, e.g. `train.jsonl` and `test.jsonl`) or explicit `data_files`.
- `to_zppo_format(dataset, ...)`: maps any question/answer table to ZPPO's shape. Columns are detected by name
  (`question`/`problem`/`query`, `answer`/`final_answer`/..., `solution`, `id`/...) or named explicitly. GSM8K's
  `reasoning ... #### 42` answers are parsed, an answer holding a `\\boxed{}` gives its content, any other answer is
  taken as it is. Rows with an empty question or answer are logged (count and first ids) and dropped.

When `solution` is the gold answer and when it is a worked solution (the BCQ teacher's candidate):
- With an answer column (detected or `--answer_column`), `solution` holds worked solutions.
- Without one, the `solution` column is read as a whole: if any cell is a worked solution (holds a `\\boxed{}` or a
  GSM8K `####` line), it holds worked solutions (MATH's `problem`+`solution`; the gold answer is each one's last
  `\\boxed{}`, or what follows its `####`). Otherwise it holds the gold answers themselves: TRL's shape (`prompt`
  + `solution`, as `trl.rewards.accuracy_reward` reads it). Then `answer` is copied from it, `solution` is kept as it
  is for TRL's rewards, and the data has no worked solutions: no BCQ teacher column (`has_worked_solutions` is False).
- `--answer_column solution` states the second reading explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources

from datasets import Dataset, DatasetDict

from .text import extract_boxed

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}  # datasets' builders
# detected column names, first match wins; `prompt` is kept in TRL's format (a string stays a plain-text prompt)
QUESTION_COLUMNS = ("prompt", "question", "problem", "query")
ANSWER_COLUMNS = ("answer", "final_answer", "ground_truth", "target")
SOLUTION_COLUMNS = ("solution",)
ID_COLUMNS = ("prompt_id", "id", "question_id", "problem_id", "uid")
EMBEDDED_DATASET_LABEL = "zppo-trl's built-in arithmetic demo questions (zppo_trl/demo_tasks.py)"

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


# --------------------------------------------------------------------------------------------------------------------
# columns


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds what; `answer` None means "from the solution's `\\boxed{}`"."""

    question: str
    answer: str | None
    solution: str | None
    id: str | None


def _column_error(columns: list[str], problem: str) -> ValueError:
    return ValueError(
        f"{problem} Columns found: {columns}. Name them with --question_column COLUMN --answer_column COLUMN "
        "(optional: --solution_column for reference solutions, the BCQ teacher; --id_column for question ids), or "
        "in Python to_zppo_format(dataset, question_column=..., answer_column=...). Recognised without flags: "
        f"question {list(QUESTION_COLUMNS)}, answer {list(ANSWER_COLUMNS)} (plain, GSM8K '#### 42' or \\boxed{{}}), "
        f"solution {list(SOLUTION_COLUMNS)} (worked solutions, the answer being each one's last \\boxed{{}}; with no "
        f"\\boxed{{}} in the column, the gold answers: TRL's shape), id {list(ID_COLUMNS)}."
    )


def detect_columns(
    columns: list[str],
    question_column: str | None = None,
    answer_column: str | None = None,
    solution_column: str | None = None,
    id_column: str | None = None,
) -> ColumnMapping:
    """Resolve the question/answer/solution/id columns: the names given, else the first known name present."""
    given = {"question": question_column, "answer": answer_column, "solution": solution_column, "id": id_column}
    for role, name in given.items():
        if name is not None and name not in columns:
            raise _column_error(columns, f"--{role}_column={name!r} is not a column of the dataset.")

    def pick(role: str, candidates: tuple[str, ...]) -> str | None:
        return given[role] or next((c for c in candidates if c in columns), None)

    mapping = ColumnMapping(
        question=pick("question", QUESTION_COLUMNS),
        answer=pick("answer", ANSWER_COLUMNS),
        solution=pick("solution", SOLUTION_COLUMNS),
        id=pick("id", ID_COLUMNS),
    )
    if mapping.question is None:
        raise _column_error(columns, "Cannot tell which column holds the question.")
    if mapping.answer is None and mapping.solution is None:
        raise _column_error(columns, "Cannot tell which column holds the answer.")
    return mapping


def _text(value) -> str:
    """A cell as text: None and NaN become "", numbers their shortest form (CSV reads `5` as 5, `2.5` as 2.5)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _gold_and_solution(answer: str, solution: str) -> tuple[str, str]:
    """(gold answer, reference solution) from an answer cell and a solution cell (either may be empty)."""
    if "####" in answer:  # GSM8K: reasoning, then "#### 42"
        gold, worked = parse_gsm8k_answer(answer)
        return gold, solution or worked
    if "\\boxed{" in answer:  # a worked answer: its last \boxed{} is the gold one
        return extract_boxed(answer) or "", solution or answer
    if answer:
        return answer, solution
    if "####" in solution:  # only a worked solution, GSM8K style
        return parse_gsm8k_answer(solution)
    return extract_boxed(solution) or "", solution  # MATH: only a solution


def _prompt_id(value, index: int):
    if value is None:
        return index
    return value if isinstance(value, int) and not isinstance(value, bool) else _text(value)


def to_zppo_format(
    dataset: Dataset,
    question_column: str | None = None,
    answer_column: str | None = None,
    solution_column: str | None = None,
    id_column: str | None = None,
) -> Dataset:
    """Map a question/answer table to columns `prompt`, `answer`, `solution` (when there are reference solutions)
    and `prompt_id` (when it has an id column), keeping its other columns (custom rewards may read them).

    Questions become one-turn chats, as in the embedded data; a `prompt` column is kept as it is (TRL's format: chat
    messages, or a string for a plain-text prompt). A `solution` column is the gold answer or a worked solution by
    the rule in the module docstring. Rows with an empty question or answer are logged with their ids and dropped.
    Raises, listing the columns found and the flags that fix it, when the schema cannot be told.

    Example:
    ```python
    >>> rows = [{"q": "What is 2+3?", "a": 5}, {"q": "What is 2*3?", "a": 6}]
    >>> to_zppo_format(Dataset.from_list(rows), question_column="q", answer_column="a")[0]
    {'a': 5, 'prompt': [{'role': 'user', 'content': 'What is 2+3?'}], 'answer': '5'}
    ```
    """
    columns = list(dataset.column_names)
    cols = detect_columns(columns, question_column, answer_column, solution_column, id_column)
    if cols.solution is not None and (
        cols.solution == cols.answer or cols.answer is None and not _any_worked_answer(dataset, cols.solution)
    ):  # TRL's shape: `solution` holds the gold answers (module docstring); it stays as it is for TRL's rewards
        cols = ColumnMapping(question=cols.question, answer=cols.solution, solution=None, id=cols.id)
    has_solutions = cols.solution is not None or (cols.answer is not None and _any_worked_answer(dataset, cols.answer))

    def convert(row, index):
        question = row[cols.question]
        if isinstance(question, list):  # chat messages
            prompt, question_text = question, "".join(_text(m.get("content")) for m in question)
        elif cols.question == "prompt":
            prompt = question_text = _text(question)
        else:
            question_text = _text(question)
            prompt = _as_chat(question_text)
        gold, solution = _gold_and_solution(
            _text(row[cols.answer]) if cols.answer else "", _text(row[cols.solution]) if cols.solution else ""
        )
        out = {"prompt": prompt, "answer": gold, "_empty": not question_text or not gold}
        if has_solutions:
            out["solution"] = solution
        if cols.id is not None:
            out["prompt_id"] = _prompt_id(row[cols.id], index)
        return {f"_zppo_{k}": v for k, v in out.items()}  # new names: a rewritten column would keep its old type

    written = {"prompt", "answer", "_empty"} | ({"solution"} if has_solutions else set())
    written |= {"prompt_id"} if cols.id is not None else set()
    drop = [c for c in columns if c in written or c in (cols.question, cols.id)]
    converted = dataset.map(convert, with_indices=True, remove_columns=drop, desc="to ZPPO format")
    converted = converted.rename_columns({f"_zppo_{k}": k for k in written})
    empty = [i for i, flag in enumerate(converted["_empty"]) if flag]
    if empty:
        ids = list(converted.select(empty[:5])["prompt_id"]) if cols.id is not None else empty[:5]
        if len(empty) == len(converted):
            raise _column_error(columns, f"Every row has an empty question or answer (e.g. rows {ids}).")
        logger.warning(
            "skipped %d of %d rows with an empty question or answer, not trained or evaluated on (first %s: %s)",
            len(empty),
            len(converted),
            f"`{cols.id}` values" if cols.id else "row indices",
            ids,
        )
        skipped = set(empty)
        converted = converted.select([i for i in range(len(converted)) if i not in skipped])
    converted = converted.remove_columns("_empty")
    if cols.id is not None:
        _check_unique_ids(converted["prompt_id"], cols.id)
    return converted


def _any_worked_answer(dataset: Dataset, column: str) -> bool:
    return any("####" in _text(a) or "\\boxed{" in _text(a) for a in dataset[column])


def has_worked_solutions(dataset: Dataset) -> bool:
    """Whether a dataset in ZPPO's shape has worked solutions to serve as the BCQ teacher: a `solution` cell that is
    neither empty nor the row's gold answer (TRL's shape keeps the gold answers in `solution`)."""
    if "solution" not in dataset.column_names:
        return False
    answers = dataset["answer"] if "answer" in dataset.column_names else [""] * len(dataset)
    return any(_text(s) not in ("", _text(a)) for s, a in zip(dataset["solution"], answers))


def _check_unique_ids(ids: list, column: str) -> None:
    seen, dupes = set(), []
    for x in ids:
        if x in seen and x not in dupes:
            dupes.append(x)
        seen.add(x)
    if dupes:
        raise ValueError(
            f"column `{column}`, used as the question id, has duplicates, e.g. {dupes[:5]}: the replay buffer needs "
            "one unique id per question. Name another column with --id_column, or deduplicate the rows."
        )


# --------------------------------------------------------------------------------------------------------------------
# loading


def _builder_for(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FILE_BUILDERS:
        raise ValueError(
            f"cannot read {path!r}: supported file types are {sorted(FILE_BUILDERS)} (or a folder of them, or a "
            "Hub dataset name)."
        )
    return FILE_BUILDERS[suffix]


def parse_data_files(data_files: list[str] | None) -> dict[str, list[str]]:
    """`["train=a.jsonl", "test=b.jsonl"]` or `["a.jsonl"]` (the train split) -> `{split: [paths]}`."""
    files: dict[str, list[str]] = {}
    for item in data_files or []:
        split, sep, path = item.partition("=")
        if not sep or os.path.sep in split or not split:
            split, path = "train", item
        files.setdefault(split, []).append(path)
    return files


def load_source(name_or_path: str | None, config: str | None = None, data_files: list[str] | None = None):
    """A `DatasetDict` from a Hub dataset name, a local file or folder, and/or `data_files` (`split=path` items)."""
    from datasets import load_dataset

    files = parse_data_files(data_files)
    if name_or_path is None:
        if not files:
            raise ValueError("no dataset: pass --dataset_name (a Hub name, a file or a folder) or --data_files.")
        return load_dataset(_builder_for(next(iter(files.values()))[0]), data_files=files)
    if os.path.isfile(name_or_path):
        return load_dataset(_builder_for(name_or_path), data_files={"train": name_or_path})
    if not os.path.isdir(name_or_path) and os.path.splitext(name_or_path)[1].lower() in FILE_BUILDERS:
        raise FileNotFoundError(f"--dataset_name {name_or_path!r}: no such file (working directory {os.getcwd()}).")
    return load_dataset(name_or_path, config, data_files=files or None)  # a folder or a Hub name


def pick_split(datasets: DatasetDict, split: str | None) -> tuple[Dataset, str]:
    """`(dataset, split used)`: the split asked for, or the only split there is (a single file has just `train`)."""
    if split in datasets:
        return datasets[split], split
    if len(datasets) == 1:
        only = next(iter(datasets))
        return datasets[only], only
    raise ValueError(
        f"the dataset has no split {split!r}; its splits are {list(datasets)}. Choose one with --dataset_train_split "
        "(train) or --dataset_test_split (eval), or name files per split with --data_files train=a.jsonl test=b.jsonl."
    )


def source_label(name_or_path: str | None, data_files: list[str] | None = None) -> str:
    """How a model card names the data: a Hub id as it is, a local file or folder by its name only (no path)."""
    if name_or_path is None and not data_files:
        return EMBEDDED_DATASET_LABEL
    if name_or_path is not None and not os.path.exists(name_or_path):
        return name_or_path  # a Hub dataset
    paths = (
        [name_or_path] if name_or_path is not None else [p for ps in parse_data_files(data_files).values() for p in ps]
    )
    names = ", ".join(f"`{os.path.basename(os.path.normpath(p))}`" for p in paths)
    return f"local data {names}"


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
