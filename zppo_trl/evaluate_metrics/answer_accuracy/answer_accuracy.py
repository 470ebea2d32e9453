"""Answer accuracy: is the final answer of each completion equivalent to the gold answer (math-verify)?

An `evaluate` metric script, loaded from its path inside the installed package, never from the Hub:
`zppo_trl.answer_metric.load_answer_accuracy()`, or `evaluate.load(zppo_trl.answer_metric.ANSWER_ACCURACY_PATH)`.
It scores exactly as ZPPO's correctness rewards do (`zppo_trl.rewards.answer_accuracy`): pass the reward's answer
extractor (`zppo_trl.rewards.answer_extractor(reward)`) and a completion the reward scored 1.0 counts as correct here.
"""

import datasets
import evaluate

from zppo_trl.rewards import answer_accuracy
from zppo_trl.text import extract_boxed

_DESCRIPTION = r"""
Answer accuracy reads the final answer of each prediction (a model completion) with `extract_answer` (default: the
content of the last complete \boxed{}) and checks it against the reference (the gold answer) with math-verify, so
`1/2` and `0.5` are equal. On a mismatch, degree and percent markers are stripped and the two are compared once more.
A prediction without an answer is wrong; a reference math-verify cannot parse makes its prediction unscorable: it is
counted in `num_unscorable` and left out of `accuracy`.
"""

_KWARGS_DESCRIPTION = r"""
Args:
    predictions (`list` of `str`): the completions (full text; the answer is extracted from it).
    references (`list` of `str`): the gold answers, one per prediction.
    extract_answer (`Callable[[str], str | None]`, *optional*): reads the final answer of a completion, None when it
        has none. Defaults to the last `\boxed{}`. Pass the one of the run's correctness reward
        (`zppo_trl.rewards.answer_extractor(reward)`), e.g. `zppo_trl.rewards.extract_final_answer`.
    return_scores (`bool`, *optional*, defaults to `False`): also return the score of each prediction.
Returns:
    accuracy (`float`): correct / scorable predictions, NaN when none is scorable.
    num_scored (`int`): predictions with a scorable reference.
    num_unscorable (`int`): predictions whose reference math-verify cannot parse.
    scores (`list` of `float` or `None`): 1.0, 0.0 or None per prediction, only with `return_scores=True`.
Examples:
    >>> metric = evaluate.load(ANSWER_ACCURACY_PATH)
    >>> metric.compute(predictions=["so \\boxed{\\frac{1}{2}}", "\\boxed{3}", "no box"], references=["0.5", "4", "1"])
    {'accuracy': 0.3333333333333333, 'num_scored': 3, 'num_unscorable': 0}
"""

_CITATION = """
@misc{zppo2026,
    title = {Zone of Proximal Policy Optimization: Teacher in Prompts, Not Gradients},
    note = {arXiv:2606.18216},
    year = {2026}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AnswerAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/huggingface/Math-Verify"],
        )

    def _compute(self, predictions, references, extract_answer=None, return_scores=False):
        scores = answer_accuracy(predictions, references, extract_answer or extract_boxed)
        scored = [s for s in scores if s is not None]
        result = {
            "accuracy": sum(scored) / len(scored) if scored else float("nan"),
            "num_scored": len(scored),
            "num_unscorable": len(scores) - len(scored),
        }
        if return_scores:
            result["scores"] = scores
        return result
