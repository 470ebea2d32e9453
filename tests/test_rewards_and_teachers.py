"""The boxed-answer reward (math-verify) and the teacher sources, alone."""

import pytest

from zppo_trl import ZPPOConfig
from zppo_trl.rewards import boxed_accuracy_reward, strip_markers
from zppo_trl.teachers import ColumnTeacher, OpenAITeacher, resolve_teacher, solutions_for


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        ("so \\boxed{\\frac{1}{2}}", "0.5", 1.0),  # LaTeX vs decimal
        ("\\boxed{3}", "4", 0.0),
        ("no box at all", "1", 0.0),  # no final answer: wrong, not unscorable
        ("\\boxed{1} then \\boxed{2}", "2", 1.0),  # the last box counts
        ("\\boxed{45^\\circ}", "45", 1.0),  # degree marker stripped
        ("\\boxed{20\\%}", "20", 1.0),  # percent marker stripped
        ("\\boxed{1,000}", "1000", 1.0),
        ([{"role": "assistant", "content": "\\boxed{7}"}], "7", 1.0),  # conversational completion
        ("\\boxed{7", "7", 0.0),  # truncated box
    ],
)
def test_boxed_accuracy_reward(completion, gold, expected):
    assert boxed_accuracy_reward([completion], [gold]) == [expected]


def test_unparsable_gold_is_unscorable():
    # math-verify falls back to string matching for odd gold text; only an empty gold answer cannot be scored
    assert boxed_accuracy_reward(["\\boxed{1}", "no box"], ["", "  "]) == [None, None]


def test_strip_markers():
    assert strip_markers("90^\\circ") == "90" and strip_markers("12\\%") == "12" and strip_markers("30°") == "30"


def test_column_teacher_reads_strings_and_lists_and_skips_empty():
    teacher = ColumnTeacher("solution")
    rows = [{"solution": "s1"}, {"solution": ["a", "", "b"]}, {"solution": ""}, {"solution": None}]
    assert teacher(rows) == [["s1"], ["a", "b"], [], []]
    solutions, failures, _ = solutions_for(teacher, rows)
    assert failures == 2 and solutions[0] == ["s1"]


@pytest.mark.parametrize(
    "teacher, fault",
    [
        (lambda rows: (_ for _ in ()).throw(RuntimeError("boom")), "raised RuntimeError: boom"),
        (lambda rows: ["only one"], "returned 1 items for 2 rows"),
        (lambda rows: "not a list", "returned str items"),
        (lambda rows: [[1, 2], ["ok"]], "non-string"),
    ],
)
def test_teacher_faults_leave_questions_without_solutions_and_are_counted(teacher, fault):
    solutions, failures, error = solutions_for(teacher, [{}, {}])
    assert fault in error
    assert failures == sum(1 for s in solutions if not s) >= 1


def test_resolve_teacher_prefers_the_callable():
    fn = lambda rows: [["x"] for _ in rows]  # noqa: E731
    assert resolve_teacher(fn, None) is fn and resolve_teacher(None, None) is None
    args = ZPPOConfig(output_dir="unused", use_cpu=True, bf16=False, teacher_column="solution")
    assert isinstance(resolve_teacher(None, args), ColumnTeacher) and resolve_teacher(fn, args) is fn
    server = ZPPOConfig(output_dir="unused", use_cpu=True, bf16=False, teacher_model="big",
                        teacher_base_url="http://127.0.0.1:9/v1", teacher_num_samples=2)  # fmt: skip
    teacher = resolve_teacher(None, server)
    assert isinstance(teacher, OpenAITeacher) and teacher.num_samples == 2 and teacher.model == "big"
    with pytest.raises(TypeError, match="must be callable"):
        resolve_teacher("solution", None)
