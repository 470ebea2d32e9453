"""One extractor everywhere, through `trainer.train()` on the tiny model: what the correctness reward scores decides
what an NCQ prompt lists as wrong, which rollout a BCQ prompt shows as the wrong candidate, and which sampled
teacher solution a BCQ prompt shows as the correct one."""

import re

import pytest
from datasets import Dataset

from zppo_trl.prompts import NCQ_NO_ANSWER, prepare_candidate, sanitize_candidate
from zppo_trl.rewards import answer_accuracy, extract_final_answer, final_answer_reward
from zppo_trl.teachers import ModelTeacher
from zppo_trl.text import completion_text, prompt_text
from zppo_trl.tiny import build_tiny_llama

_CANDIDATE = re.compile(r"\n<candidate>\n(.*?)\n</candidate>", re.DOTALL)
_NCQ_LIST = re.compile(r"The following answers are all WRONG: (.*?)\. Below are the incorrect", re.DOTALL)


def _first_digit(text: str) -> str | None:
    match = re.search(r"\d", text)
    return match.group(0) if match else None


class RecordingReward:
    """A correctness reward (final answer, or a deliberately different extractor: the first digit) that records
    every rollout it scores, so a test can compare hint prompts with the rollouts they were built from."""

    def __init__(self, extract_answer):
        self.extract_answer = extract_answer  # what `answer_extractor` hands the trainer
        self.__name__ = "recording_reward"
        self.rows = []

    def __call__(self, completions, prompts, prompt_id, zppo_kind, answer, trainer_state, **kwargs):
        scores = answer_accuracy(completions, answer, self.extract_answer)
        for completion, prompt, pid, kind, gold, score in zip(completions, prompts, prompt_id, zppo_kind, answer,
                                                              scores):  # fmt: skip
            self.rows.append({"step": trainer_state.global_step, "id": pid, "kind": kind, "answer": gold,
                              "prompt": prompt_text(prompt), "completion": completion_text(completion),
                              "score": score})  # fmt: skip
        return scores

    def score(self, text: str, gold: str) -> float | None:
        return answer_accuracy([text], [gold], self.extract_answer)[0]


def single_digit_sums(n: int = 16) -> Dataset:
    """Questions with one-digit answers, so a random char model's rollouts are sometimes right."""
    rows = []
    for i in range(n):
        a, b = i % 5, (3 * i) % 5
        solution = f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        rows.append({"prompt_id": i, "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
                     "answer": str(a + b), "solution": solution})  # fmt: skip
    return Dataset.from_list(rows)


@pytest.mark.parametrize("extract", [extract_final_answer, _first_digit], ids=["final_answer", "first_digit"])
def test_hint_prompts_never_call_an_answer_wrong_that_the_reward_scores_correct(make_trainer, extract):
    reward, dataset = RecordingReward(extract), single_digit_sums()
    trainer = make_trainer(reward, dataset=dataset, teacher_column="solution", hint_ratio=1.0,
                           replay_ratio=0.5, max_steps=4, max_completion_length=12)  # fmt: skip
    trainer.train()
    plain = [r for r in reward.rows if r["kind"] in ("plain", "replay")]
    listed_any = False
    ncq_rows = [r for r in reward.rows if r["kind"] == "ncq"][:: trainer.num_generations]
    bcq_rows = [r for r in reward.rows if r["kind"] == "bcq"][:: trainer.num_generations]
    assert ncq_rows and bcq_rows, "the test needs both hint kinds"
    for hint in ncq_rows:
        wrong = [r["completion"] for r in plain if (r["step"], r["id"]) == (hint["step"], hint["id"])
                 and r["score"] == 0.0]  # fmt: skip
        listed = _NCQ_LIST.search(hint["prompt"]).group(1)
        answers = [] if listed == NCQ_NO_ANSWER else re.findall(r"\\boxed\{([^{}]*)\}", listed)
        # exactly the answers the reward's extractor reads in the wrong rollouts, and none of them scores correct
        expected = {sanitize_candidate(a) for a in map(extract, wrong) if a is not None}
        assert set(answers) == expected
        assert all(reward.score(f"\\boxed{{{a}}}", hint["answer"]) == 0.0 for a in answers)
        listed_any |= bool(answers)
    assert listed_any, "the test needs an NCQ prompt that lists an answer"
    for hint in bcq_rows:
        candidates = _CANDIDATE.findall(hint["prompt"])
        solution = dataset[hint["id"]]["solution"]  # prompt_id i is row i
        wrong = [r["completion"] for r in plain if (r["step"], r["id"]) == (hint["step"], hint["id"])
                 and r["score"] == 0.0]  # fmt: skip
        # the pair as build_bcq_hint renders it (each prepared alike) for the wrong rollout that was drawn
        prepare = lambda text: prepare_candidate(
            text, trainer.args.candidate_max_tokens, trainer.round_seams.text.count_tokens
        )
        pairs = [(prepare(solution), prepare(w)) for w in wrong]
        drawn = [pair for pair in pairs if sorted(pair) == sorted(candidates)]
        assert drawn, "one of the question's wrong rollouts of that round is the wrong candidate"
        assert reward.score(drawn[0][1], hint["answer"]) == 0.0  # and the reward scores it wrong as shown


def test_a_sampled_teacher_keeps_only_solutions_the_reward_scores_correct(make_trainer, tokenizer):
    # a random tiny model as the teacher: its samples are noise, so which ones it keeps is the verifier's choice alone
    # (with the boxed verifier it would keep none: it never writes a box)
    teacher = ModelTeacher(build_tiny_llama(tokenizer, seed=1), tokenizer, num_samples=16, max_new_tokens=8)
    reward = RecordingReward(extract_final_answer)
    trainer = make_trainer(reward, dataset=single_digit_sums(), teacher=teacher, hint_ratio=1.0, max_steps=3,
                           max_completion_length=12)  # fmt: skip
    assert trainer.teacher.verify.keywords["extract_answer"] is extract_final_answer
    trainer.train()
    bcq_rows = [r for r in reward.rows if r["kind"] == "bcq"][:: trainer.num_generations]
    assert bcq_rows, "the test needs a BCQ prompt (a teacher sample the reward scores correct)"
    for hint in bcq_rows:
        candidates = _CANDIDATE.findall(hint["prompt"])
        scores = sorted(final_answer_reward(candidates, [hint["answer"]] * 2))
        assert scores == [0.0, 1.0]  # one candidate the reward scores correct (the teacher's), one it scores wrong
