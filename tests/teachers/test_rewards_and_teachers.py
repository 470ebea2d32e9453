"""The correctness rewards (math-verify), their answer extractors and the teacher sources, alone."""

import json
import pathlib

import pytest
from paths import FIXTURES

from zppo_trl import ZPPOConfig
from zppo_trl.rewards import (
    answer_extractor,
    boxed_accuracy_reward,
    extract_final_answer,
    extract_last_number,
    final_answer_reward,
    strip_markers,
)
from zppo_trl.teachers import (
    ColumnTeacher,
    ModelTeacher,
    OpenAITeacher,
    gold_answer_verifier,
    resolve_teacher,
    solutions_for,
    use_answer_extractor,
)
from zppo_trl.text import extract_boxed

REAL_COMPLETIONS = pathlib.Path(FIXTURES) / "smollm2_completions.jsonl"


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
    solutions, failures, *_ = solutions_for(teacher, rows)
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
    solutions, failures, error, _ = solutions_for(teacher, [{}, {}])
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


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        ("8 boxes * 4 books per box = 32 books", "32", 1.0),  # the example: right, without a box
        ("\\boxed{31}, not 32", "32", 0.0),  # a complete box wins over a later number
        ("7 + 6 = 13. The answer is \\boxed{13}.", "13", 1.0),
        ("The total is 1,024.", "1024", 1.0),  # thousands separator
        ("So x = -5", "-5", 1.0),
        ("7-3", "4", 0.0),  # "7-3" ends in 3, not -3
        ("no number at all", "1", 0.0),
        ("What is 23 + 45? 23 + 45", "68", 0.0),  # restating the question is not answering it (no evaluation)
        ("\\boxed{7", "7", 1.0),  # a truncated box: the last number is still the answer written
        ("\\boxed{} so 9", "9", 1.0),  # an empty box holds no answer
        ([{"role": "assistant", "content": "It is 12."}], "12", 1.0),
        ("anything", "", None),  # an empty gold answer cannot be scored
    ],
)
def test_final_answer_reward(completion, gold, expected):
    assert final_answer_reward([completion], [gold]) == [expected]


def test_extract_last_number():
    assert extract_last_number("12.5.") == "12.5" and extract_last_number("1,2,3") == "3"
    assert extract_last_number("(3)-2") == "2" and extract_last_number("a -4") == "-4"
    assert extract_last_number("none") is None


def test_answer_extractor_is_the_rewards_own_and_boxed_by_default():
    assert answer_extractor(final_answer_reward) is extract_final_answer
    assert answer_extractor(boxed_accuracy_reward) is extract_boxed
    assert answer_extractor(lambda completions, **kw: [0.0]) is extract_boxed  # a reward without the attribute

    def my_reward(completions, **kwargs):
        return [0.0]

    my_reward.extract_answer = str.strip
    assert answer_extractor(my_reward) is str.strip


def test_real_smollm2_completions():
    """16 completions the embedded SmolLM2-135M-Instruct wrote (tests/fixtures/smollm2_completions.jsonl: picked
    from `python examples/probe_zone.py --families add_1d,add_2d,mul_1d,word_mul --questions 2 --samples 4 --seed 7
    --save_completions FILE`), each with its final answer read by hand (`final_answer`): the extractor reads what a
    person applying the rule reads (including `\\Boxed{6}`, an empty `\\boxed{}` and no number at all), and the
    reward is 1 exactly when that answer is the gold one."""
    rows = [json.loads(line) for line in REAL_COMPLETIONS.read_text().splitlines() if line.strip()]
    assert len(rows) >= 10
    for row in rows:
        assert extract_final_answer(row["completion"]) == row["final_answer"], row["completion"]
        expected = float(row["final_answer"] is not None and float(row["final_answer"]) == float(row["answer"]))
        assert final_answer_reward([row["completion"]], [row["answer"]]) == [expected]
    assert {final_answer_reward([r["completion"]], [r["answer"]])[0] for r in rows} == {0.0, 1.0}
    # the model mostly does not box its answer: the boxed reward scores 0 on right answers the final-answer one sees
    right_unboxed = [r for r in rows if "\\boxed{" not in r["completion"] and r["final_answer"] == r["answer"]]
    boxed = boxed_accuracy_reward([r["completion"] for r in right_unboxed], [r["answer"] for r in right_unboxed])
    assert right_unboxed and boxed == [0.0] * len(right_unboxed)


def test_gold_answer_verifier_reads_answers_with_the_given_extractor():
    candidates = ["so it is 42", "\\boxed{42}", "\\boxed{41} or 42"]
    assert gold_answer_verifier({"answer": "42"}, candidates) == ["\\boxed{42}"]
    assert gold_answer_verifier({"answer": "42"}, candidates, extract_final_answer) == candidates[:2]


def test_use_answer_extractor_changes_only_the_default_verifier_of_sampling_teachers(tokenizer):
    server = OpenAITeacher("http://127.0.0.1:9/v1", "m")
    local = ModelTeacher(model=object(), tokenizer=tokenizer)  # nothing is loaded or sampled here
    for teacher in (server, local):
        assert use_answer_extractor(teacher, extract_final_answer) is teacher
        assert teacher.verify({"answer": "3"}, ["it is 3", "\\boxed{4}"]) == ["it is 3"]

    def custom(row, candidates):
        return candidates

    own = OpenAITeacher("http://127.0.0.1:9/v1", "m", verify=custom)
    unverified = ModelTeacher(model=object(), tokenizer=tokenizer, verify=None)
    column = ColumnTeacher("solution")
    use_answer_extractor(own, extract_final_answer)
    use_answer_extractor(unverified, extract_final_answer)
    assert own.verify is custom and unverified.verify is None
    assert use_answer_extractor(column, extract_final_answer) is column and use_answer_extractor(None, str) is None
