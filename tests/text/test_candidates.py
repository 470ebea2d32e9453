"""BCQ candidates as the student sees them.

By default both are shown whole (the teacher's reasoning is the content BCQ exists to show), prepared alike
(`<think>` stripped, sanitised, cut only when over budget, head and final answer kept), and a blank wrong rollout is
never one. With `match_lengths=True` (the model-free cue remover, off by default) form gives nothing away: over many
BCQ prompts built from generated pairs shaped like real ones (short or long teacher references, a model teacher's
`<think>` samples, long student rollouts with and without `<think>`, some cut before their answer), "pick the
longer", "pick the shorter" and "pick the one with a marker" each find the correct candidate half of the time."""

import random
import re

import pytest

from zppo_trl.prompts import HintNotBuilt, build_hint_prompt, match_candidate_lengths, sanitize_candidate
from zppo_trl.text import TRUNCATION_MARK, strip_think, truncate_keep_answer

WORDS = "so we add the two numbers then carry the one and check again since each step matters here".split()
PAIRS = 500  # >= 200 asked; 500 keeps a fair rule's binomial spread (2.2 points) inside the 5-point band


def _prose(rng: random.Random, chars: int) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS) if rng.random() > 0.1 else f"{rng.randint(1, 99)} + {rng.randint(1, 99)}.")
    return " ".join(words)


def _pair(rng: random.Random) -> tuple[str, str, str, str]:
    """(question, gold, correct candidate, wrong candidate) with realistic lengths: the correct one is mostly a short
    reference, the wrong one a student rollout of hundreds to thousands of characters."""
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    gold = str(a + b)
    style = rng.random()
    if style < 0.5:  # a dataset's short reference (the measured case: 47 characters)
        correct = f"{a} + {b} = {gold}. The answer is \\boxed{{{gold}}}."
    elif style < 0.8:  # a worked reference solution
        correct = f"{_prose(rng, rng.randint(100, 900))} The answer is \\boxed{{{gold}}}."
    else:  # a model teacher's sample, reasoning block included
        correct = f"<think>{_prose(rng, rng.randint(200, 3000))}</think> So {a} + {b} = {gold}, \\boxed{{{gold}}}."
    wrong_answer = str(a + b + rng.choice([-10, -1, 1, 10, 100]))
    shape = rng.random()
    if shape < 0.45:  # a reasoning rollout with its answer
        wrong = f"<think>{_prose(rng, rng.randint(300, 6000))}</think>\nThe answer is \\boxed{{{wrong_answer}}}."
    elif shape < 0.6:  # cut at max_completion_length inside its reasoning: no answer at all
        wrong = f"<think>{_prose(rng, rng.randint(1000, 6000))}"
    else:  # a rollout without a reasoning block
        wrong = f"{_prose(rng, rng.randint(60, 3000))} So the answer is \\boxed{{{wrong_answer}}}."
    return f"What is {a} + {b}?", gold, correct, wrong


def _candidates(prompt: str) -> list[str]:
    return re.findall(r"<candidate>\n(.*?)\n</candidate>", prompt, flags=re.DOTALL)


def _marked(text: str) -> bool:
    return "[...]" in text or "<think>" in text or "</think>" in text


RULES = {  # each rule returns the index it picks; a tie picks the first candidate
    "longer": lambda c: int(len(c[1]) > len(c[0])),
    "shorter": lambda c: int(len(c[1]) < len(c[0])),
    "marker": lambda c: int(_marked(c[1]) and not _marked(c[0])),
}


def _hit_rates(pairs: list[list[str]], correct_index: list[int]) -> dict[str, float]:
    return {name: sum(rule(c) == i for c, i in zip(pairs, correct_index)) / len(pairs) for name, rule in RULES.items()}


def test_with_matched_lengths_form_rules_find_the_correct_bcq_candidate_half_of_the_time():
    rng = random.Random(0)
    built, truth, before, before_truth = [], [], [], []
    for n in range(PAIRS):
        question, gold, correct, wrong = _pair(rng)
        prompt = build_hint_prompt("bcq", question, [wrong], random.Random(n), correct=correct,
                                   max_prompt_tokens=1024, max_candidate_tokens=512, match_lengths=True)  # fmt: skip
        candidates = _candidates(prompt)
        assert len(candidates) == 2
        index = [f"\\boxed{{{gold}}}" in c for c in candidates]
        assert sorted(index) == [False, True], candidates  # the correct one kept its final answer, the wrong one none
        built.append(candidates)
        truth.append(index.index(True))
        # the same pair as candidates were prepared before: sanitised and cut, each on its own, in a seeded order
        old = [truncate_keep_answer(sanitize_candidate(t.strip()), 512) for t in (correct, wrong)]
        first = random.Random(n).random() < 0.5
        before.append(old if first else old[::-1])
        before_truth.append(0 if first else 1)

    rates_before = _hit_rates(before, before_truth)
    assert rates_before["shorter"] > 0.8 and rates_before["longer"] < 0.2  # the generated pairs do give it away
    rates = _hit_rates(built, truth)
    for name, rate in rates.items():
        assert abs(rate - 0.5) <= 0.05, (name, rate, rates_before)
    print("form rules, before and after:", rates_before, rates)
    assert all(len(a) == len(b) for a, b in built)  # same length, no think block, no cut mark: nothing to go by
    assert not any(_marked(c) or TRUNCATION_MARK in c for pair in built for c in pair)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>long musing</think>\nThe answer is \\boxed{4}.", "The answer is \\boxed{4}."),
        ("<THINK>a</ think > b <think>c</think> d", "d"),  # the last block ends the reasoning
        ("<think>cut before it ended", "cut before it ended"),
        ("<think>all reasoning</think>  ", "all reasoning"),
        ("no block \\boxed{4}", "no block \\boxed{4}"),
    ],
)
def test_strip_think(text, expected):
    assert strip_think(text) == expected


def test_matched_lengths_keep_heads_and_final_answers_within_the_budget():
    short = "2 + 2 = 4. The answer is \\boxed{4}."
    long = "<think>" + "hmm " * 500 + "</think>Start of my answer. " + "step " * 300 + "So \\boxed{5}."
    a, b = match_candidate_lengths(short, long, max_tokens=64)
    assert a == short and len(b) == len(short)
    assert b.startswith("Start of") and b.endswith("\\boxed{5}.") and "<think>" not in b
    a, b = match_candidate_lengths(long, long.replace("5", "6"), max_tokens=24, count_tokens=len)
    assert len(a) == len(b) <= 24 and a.endswith("\\boxed{5}.") and b.endswith("\\boxed{6}.")


def _bcq_candidates(correct, wrong, seed=0, **kwargs):
    prompt = build_hint_prompt("bcq", "What is 347 + 285?", wrong, random.Random(seed), correct=correct,
                               count_tokens=len, **kwargs)  # fmt: skip
    return _candidates(prompt)


WORKED = "Units: 7 + 5 = 12, write 2 carry 1. Tens: 4 + 8 + 1 = 13, write 3 carry 1. Hundreds: 3 + 2 + 1 = 6. So 632."


def test_the_teachers_reasoning_is_shown_whole_however_short_the_wrong_rollout():
    # the audit's case: a one-line wrong answer used to cut the worked solution down to its own length
    for wrong in ["47 + 35 = 72", "The answer is 71.", "5", "7+5=12,4+8=12,3+2=5#522"]:
        for seed in range(4):
            candidates = _bcq_candidates(WORKED, [wrong], seed)
            assert sorted(candidates) == sorted([WORKED, wrong]), candidates


def test_the_teachers_reasoning_survives_think_tags_and_the_default_budget():
    sample = "<think>" + "let me see " * 40 + "</think>" + WORKED
    assert WORKED in _bcq_candidates(sample, ["wrong: 522"])  # the answer part after </think>, whole


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Start. " + "filler " * 300 + "so \\boxed{632}.", "\\boxed{632}"),
        ("Start. " + "filler " * 300 + "so the sum is 632.", "632"),  # unboxed: the last number
        ("7+5=12," * 60 + "#632", "632"),  # a written-out procedure
        ("Start. " + "filler " * 300 + "\\boxed{632} " + "and then more words " * 80, "\\boxed{632}"),
    ],
)
def test_every_cut_keeps_the_head_and_the_final_answer(text, answer):
    for budget in (24, 40, 100, 300):
        for mark in (TRUNCATION_MARK, "\n"):
            cut = truncate_keep_answer(text, budget, len, mark=mark)
            assert len(cut) <= budget and answer in cut and cut.startswith(text[:3]), (budget, cut)


def test_a_long_candidate_is_cut_only_over_its_budget_and_keeps_its_answer():
    long_wrong = "Let me think. " + "I add the columns. " * 100 + "So the answer is 522."
    candidates = _bcq_candidates(WORKED, [long_wrong], max_candidate_tokens=200)
    assert WORKED in candidates  # within its budget: whole
    (cut,) = [c for c in candidates if c != WORKED]
    assert len(cut) <= 200 and cut.startswith("Let me think.") and cut.endswith("522.")


@pytest.mark.parametrize("blank", ["", "   \n\t", "<think></think>", "<think>\n</think>  ", "<candidate>\n\n</candidate>",
                                   "<|im_end|>"])  # fmt: skip
def test_a_blank_wrong_rollout_is_never_a_candidate(blank):
    for seed in range(6):
        candidates = _bcq_candidates(WORKED, [blank, "wrong: 522"], seed)
        assert sorted(candidates) == sorted([WORKED, "wrong: 522"])
    with pytest.raises(HintNotBuilt) as err:
        _bcq_candidates(WORKED, [blank, "  "])
    assert err.value.reason == "no_usable_wrong_rollout"
    with pytest.raises(HintNotBuilt):
        build_hint_prompt("ncq", "What is 2 + 2?", [blank], random.Random(0), count_tokens=len)
    ncq = build_hint_prompt("ncq", "What is 2 + 2?", [blank, "5"], random.Random(0), count_tokens=len)
    assert _candidates(ncq) == ["5"]


def test_a_blank_teacher_solution_and_a_question_with_no_room_are_reasons_too():
    with pytest.raises(HintNotBuilt) as err:
        _bcq_candidates("<think> </think>", ["wrong: 522"])
    assert err.value.reason == "no_usable_solution"
    with pytest.raises(HintNotBuilt) as err:
        build_hint_prompt("bcq", "x" * 500, ["w 1"], random.Random(0), correct="c 2", max_prompt_tokens=520,
                          count_tokens=len)  # fmt: skip
    assert err.value.reason == "no_room"


def test_a_short_prompt_budget_keeps_the_shorter_candidate_whole():
    long_wrong = "I add. " * 200 + "So 522."
    candidates = _bcq_candidates(WORKED, [long_wrong], max_prompt_tokens=600, max_candidate_tokens=512)
    assert WORKED in candidates and sum(map(len, candidates)) < 600
