"""The README as a newcomer reads it: its two commands come first and are what CI runs, and every Python block in
it and in docs/ parses (a snippet that does not even parse cannot run as written)."""

import ast
import glob
import os
import re

import pytest
from paths import ROOT

PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def python_blocks(path):
    with open(path) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("path", PAGES, ids=os.path.basename)
def test_every_python_block_parses(path):
    for block in python_blocks(path):
        ast.parse(block)  # raises SyntaxError with the line


def test_the_readme_opens_with_the_two_commands_ci_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        commands = re.findall(r"```bash\n(.*?)\n```", f.read(), flags=re.S)[:2]
    assert commands == ["bash scripts/setup.sh && .venv/bin/zppo-trl train",
                        "bash scripts/setup.sh && .venv/bin/python -m pytest -q"]  # fmt: skip
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert commands[1] in f.read()
    assert python_blocks(os.path.join(ROOT, "README.md")), "the README shows the Python API"
