"""The Colab quickstart runs top to bottom (nbclient, a real kernel) on CPU with the tiny model: the parameters cell
is replaced, nothing else."""

import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(__file__))
PATH = os.path.join(ROOT, "notebooks", "zppo_quickstart.ipynb")
CI_PARAMETERS = """TINY = True
INSTALL = False
MAX_STEPS = 3
PUSH_TO_HUB = False
HUB_MODEL_ID = None
OUTPUT_DIR = {output_dir!r}
import os; os.environ["HF_HUB_OFFLINE"] = "1"; os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
"""


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(PATH, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_quickstart_notebook_runs_on_cpu_with_the_tiny_model(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(PATH, as_version=4)
    parameters = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Parameters"))
    parameters.source = CI_PARAMETERS.format(output_dir=str(tmp_path / "run"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "held-out accuracy before" in text and "buffer: admitted" in text and "## ZPPO training" in text
    assert (tmp_path / "run" / "zppo_graduation.png").exists()
