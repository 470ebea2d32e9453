"""Teacher sources: where the correct candidate of a BCQ prompt comes from.

A teacher is anything callable as `teacher(rows) -> list[list[str]]`: for each hard question's dataset row, a list
of correct solutions (possibly empty). The teacher is only ever *context* for the student's prompt, never a
gradient target. Sources here:

- `ColumnTeacher`: a dataset column of reference solutions (trusted, not re-scored);
- any Python callable (wrapped as is; its solutions are trusted too, ours: the caller filters them).

Per-question failures never stop training: `solutions_for` turns an exception, a wrong return shape, non-string
items or an empty answer into "no solution" for the questions concerned (NCQ only) and counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

Teacher = Callable[[list[dict]], list[list[str]]]


class ColumnTeacher:
    """Reference solutions read from a dataset column: a string, or a list of strings, per row.

    Args:
        column (`str`): name of the column, e.g. `"solution"`.
    """

    def __init__(self, column: str):
        self.column = column

    def __call__(self, rows: list[dict]) -> list[list[str]]:
        out = []
        for row in rows:
            value = row.get(self.column)
            values = value if isinstance(value, (list, tuple)) else [value]
            out.append([v for v in values if isinstance(v, str) and v.strip()])
        return out

    def __repr__(self) -> str:
        return f"ColumnTeacher(column={self.column!r})"


def resolve_teacher(teacher: Teacher | None, teacher_column: str | None) -> Teacher | None:
    """The teacher the trainer uses: an explicit `teacher=` wins, else the `teacher_column`, else none (NCQ only)."""
    if teacher is not None:
        if not callable(teacher):
            raise TypeError(
                f"`teacher` must be callable as teacher(rows) -> list[list[str]], got {type(teacher).__name__}. "
                "Pass a function, or set `teacher_column` in ZPPOConfig to use a dataset column."
            )
        if teacher_column is not None:
            logger.warning("Both `teacher=` and `teacher_column=%r` are set: the `teacher` callable is used.", teacher_column)
        return teacher
    return ColumnTeacher(teacher_column) if teacher_column is not None else None


def solutions_for(teacher: Teacher | None, rows: Sequence[dict]) -> tuple[list[list[str]], int, str | None]:
    """Call `teacher` on `rows` defensively.

    Returns `(solutions, failures, error)`: one list of non-empty strings per row, the number of rows left without
    a solution, and a description of the first fault (for a one-time warning), or None.
    """
    rows = list(rows)
    if teacher is None or not rows:
        return [[] for _ in rows], 0, None
    error = None
    try:
        result: Any = teacher(rows)
    except Exception as err:  # a teacher fault degrades these questions to NCQ only
        return [[] for _ in rows], len(rows), f"teacher raised {type(err).__name__}: {err}"
    if not isinstance(result, (list, tuple)) or len(result) != len(rows):
        got = len(result) if isinstance(result, (list, tuple)) else type(result).__name__
        return [[] for _ in rows], len(rows), f"teacher returned {got} items for {len(rows)} rows"
    solutions = []
    for item in result:
        items = [item] if isinstance(item, str) else item if isinstance(item, (list, tuple)) else []
        good = [s for s in items if isinstance(s, str) and s.strip()]
        if len(good) != len(items) and error is None:
            error = "teacher returned non-string or empty solutions"
        solutions.append(good)
    return solutions, sum(1 for s in solutions if not s), error
