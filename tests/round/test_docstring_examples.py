"""Every `>>>` example in the package's docstrings holds: they are read without their Markdown fences (HF's
docstring style), so a reader can trust them and a change that breaks one fails here."""

import doctest
import importlib
import pkgutil

import pytest

import zppo_trl

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(zppo_trl.__path__, "zppo_trl.") if not m.name.endswith("__main__")
)


def run_examples(module) -> tuple[int, int]:
    """`(examples, failures)` of one module's docstrings."""
    finder, runner, parser = (
        doctest.DocTestFinder(),
        doctest.DocTestRunner(optionflags=doctest.ELLIPSIS),
        doctest.DocTestParser(),
    )
    examples = 0
    for test in finder.find(module):
        fenced = parser.get_doctest(test.docstring.replace("```python", "").replace("```", ""), test.globs,
                                    test.name, test.filename, 0)  # fmt: skip
        examples += len(fenced.examples)
        runner.run(fenced)
    return examples, runner.summarize(verbose=False).failed


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    module = importlib.import_module(name)
    _, failed = run_examples(module)
    assert failed == 0, f"{failed} docstring example(s) of {name} fail (run: python -m doctest -v on it)"


def test_the_examples_are_really_run():
    counted = sum(
        run_examples(importlib.import_module(name))[0]
        for name in ("zppo_trl.round.advantages", "zppo_trl.buffers.hard")
    )
    assert counted >= 5  # zppo_advantages, group_has_variance, HardQuestionBuffer's four lines
