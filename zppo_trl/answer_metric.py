r"""Answer accuracy the `evaluate` way, offline: the metric script shipped in this package, and its results on disk.

```python
>>> from zppo_trl.answer_metric import load_answer_accuracy
>>> metric = load_answer_accuracy()  # evaluate.load(ANSWER_ACCURACY_PATH): a local file, never the Hub
>>> metric.compute(predictions=["so \\boxed{\\frac{1}{2}}", "\\boxed{3}"], references=["0.5", "4"])
{'accuracy': 0.5, 'num_scored': 2, 'num_unscorable': 0}
```

`scored_by_metric(reward)` lets `evaluation.plain_accuracy` (`zppo-trl eval`, the held-out callback, the notebooks)
score this package's answer rewards through the metric, with the reward's own extractor; `save_results` writes a
result next to a run in `evaluate.save`'s JSON layout.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

ANSWER_ACCURACY_PATH = os.path.join(
    os.path.dirname(__file__), "evaluate_metrics", "answer_accuracy", "answer_accuracy.py"
)
RESULTS_FOLDER = "eval_results"  # inside the run folder, as `evaluate.save(folder)` names its files


def load_answer_accuracy(**kwargs):
    """`evaluate.load` of the answer-accuracy metric from its path inside the installed package (`kwargs` go to
    `evaluate.load`). A path to a file is never looked up on the Hub, so this works offline."""
    import evaluate

    return evaluate.load(ANSWER_ACCURACY_PATH, **kwargs)


@functools.cache
def _shared_metric():
    return load_answer_accuracy(keep_in_memory=True)  # in memory: no cache files, no lock shared between processes


def scored_by_metric(reward_func: Callable) -> Callable:
    """`reward_func` itself, unless it is one of `zppo_trl.rewards`' answer rewards (a function there with an
    `extract_answer`, e.g. `boxed_accuracy_reward`, `final_answer_reward`): then a TRL-shaped reward function that gives
    the same scores through the answer-accuracy metric, reading answers with that reward's extractor.

    Any other reward (your own, an exact-match reward, a reward model) is returned unchanged: the metric knows only
    math-verify equivalence, and an evaluation must score what the run's reward scores.
    """
    extract_answer = getattr(reward_func, "extract_answer", None)
    if getattr(reward_func, "__module__", None) != "zppo_trl.rewards" or not callable(extract_answer):
        return reward_func

    def through_metric(completions: Sequence, answer: Sequence, **kwargs) -> list[float | None]:
        from .text import completion_text

        result = _shared_metric().compute(
            predictions=[completion_text(c) for c in completions],
            references=[str(a) for a in answer],
            extract_answer=extract_answer,
            return_scores=True,
        )
        return result["scores"]

    through_metric.__name__ = reward_func.__name__
    through_metric.extract_answer = extract_answer
    return through_metric


def _git_commit_hash() -> str | None:
    # evaluate.save asks git the same question, but lets git print "fatal: not a git repository" and fails where git
    # is not installed: a result saved from any folder should do neither
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def save_results(run_folder: str, results: dict, **params) -> str:
    """Write `results` and `params` (model, data, sampling settings, ...) as one JSON file in
    `run_folder/eval_results/` and return its path.

    The layout is `evaluate.save`'s, field for field: `result-%Y_%m_%d-%H_%M_%S.json` holding the given keys plus
    `_timestamp`, `_git_commit_hash`, `_evaluate_version`, `_python_version` and `_interpreter_path`.
    """
    import evaluate

    now = datetime.now()
    folder = os.path.join(run_folder, RESULTS_FOLDER)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "result-" + now.strftime("%Y_%m_%d-%H_%M_%S") + ".json")
    data = {
        **results,
        **params,
        "_timestamp": now.isoformat(),
        "_git_commit_hash": _git_commit_hash(),
        "_evaluate_version": evaluate.__version__,
        "_python_version": sys.version,
        "_interpreter_path": sys.executable,
    }
    with open(path, "w") as f:
        json.dump(data, f)
    return path
