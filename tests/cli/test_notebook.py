"""The notebooks run top to bottom (nbclient, a real kernel) on CPU with the tiny model: each one's parameters cell
is replaced, nothing else. Notebooks are written by scripts/make_notebook.py."""

import glob
import json
import os

import nbformat
import pytest
from paths import ROOT

NOTEBOOKS = os.path.join(ROOT, "notebooks")
PATH = os.path.join(NOTEBOOKS, "zppo_quickstart.ipynb")
OFFLINE = 'import os; os.environ["HF_HUB_OFFLINE"] = "1"; os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"\n'
CI_PARAMETERS = (
    """TINY = True
INSTALL = False
MAX_STEPS = 3
HUB_MODEL_ID = ""
OUTPUT_DIR = {output_dir!r}
"""
    + OFFLINE
)
QLORA_CI_PARAMETERS = (
    """TINY = True
INSTALL = False
MODEL = "zppo-tests/tiny-char-llama"
HUB_MODEL_ID = ""
OUTPUT_DIR = {output_dir!r}
"""
    + OFFLINE
)
OWN_DATA_CI_PARAMETERS = (
    """TINY = True
INSTALL = False
DATA_FILE = {data_file!r}
OUTPUT_DIR = {output_dir!r}
"""
    + OFFLINE
)


def run_notebook(name: str, parameters: str, workdir) -> str:
    """Execute notebooks/`name` in `workdir` with its parameters cell replaced; returns the text of its outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Parameters"))
    cell.source = parameters
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb"))), ids=os.path.basename)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_every_notebook_pins_its_install_source_in_the_parameters_cell():
    for path in glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        parameters = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Parameters"))
        assert "ZPPO_TRL_SOURCE = " in parameters.source and "@v" in parameters.source, path


def code_cells(path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb"))), ids=os.path.basename)
def test_a_notebook_logs_in_first_pushes_only_where_named_and_states_its_t4_cost(path):
    cells = code_cells(path)
    assert not [c for c in cells if "your-name" in c], "a placeholder repository would fail 'Run all' at the push"
    pushes = [i for i, c in enumerate(cells) if "push_to_hub(" in c]
    if pushes:
        login = next(i for i, c in enumerate(cells) if "interpreter_login()" in c)
        first_train = next(i for i, c in enumerate(cells) if ".train()" in c)
        assert login < first_train, "the Hub login must come before the long run"
        parameters = cells[0]
        assert 'HUB_MODEL_ID = ""' in parameters  # no push unless the user names a repository
        assert all("if not HUB_MODEL_ID:" in cells[i] for i in pushes)
    intro = nbformat.read(path, as_version=4).cells[0].source
    assert "T4" in intro and "ESTIMATE" in intro and "min" in intro and "GiB" in intro, "state time and memory on a T4"
    assert any("pick_precision()" in c for c in cells)  # bf16 / fp16 / fp32 by the device, not hard-coded


@pytest.mark.slow
def test_quickstart_notebook_runs_on_cpu_with_the_tiny_model(tmp_path):
    text = run_notebook("zppo_quickstart.ipynb", CI_PARAMETERS.format(output_dir=str(tmp_path / "run")), tmp_path)
    assert "held-out accuracy before" in text and "buffer: admitted" in text and "## ZPPO training" in text
    assert "HUB_MODEL_ID is empty: no Hub login" in text and "not pushed: HUB_MODEL_ID is empty" in text
    assert "precision: fp32" in text
    assert (tmp_path / "run" / "zppo_graduation.png").exists()


@pytest.mark.slow
def test_qlora_notebook_estimates_memory_trains_and_checks_the_upload_folder(tmp_path):
    run = tmp_path / "run"
    text = run_notebook("zppo_qlora_one_gpu.ipynb", QLORA_CI_PARAMETERS.format(output_dir=str(run)), tmp_path)
    assert "quantised: False" in text and "ESTIMATE for the tiny CI model" in text
    assert "T4: 15.0 GiB -> about" in text and "L4: 22.5 GiB -> about" in text
    assert "buffer: admitted" in text and "upload folder checked" in text
    assert "HUB_MODEL_ID is empty: no Hub login" in text and "not pushed: HUB_MODEL_ID is empty" in text
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "zppo-tests/tiny-char-llama" and adapter["r"] == 16
    assert str(tmp_path) not in (run / "README.md").read_text()


@pytest.mark.slow
def test_own_data_notebook_compares_grpo_and_zppo_per_bin(tmp_path):
    params = OWN_DATA_CI_PARAMETERS.format(data_file=str(tmp_path / "mine.jsonl"), output_dir=str(tmp_path / "runs"))
    text = run_notebook("grpo_vs_zppo_own_data.ipynb", params, tmp_path)
    assert (tmp_path / "mine.jsonl").read_text().count("\n") == 48
    assert "GRPO: admitted" in text and "ZPPO: admitted" in text
    assert "graduated/admitted" in text and "all bins" in text and "exit rate" in text
    for name in ("grpo", "zppo"):
        assert (tmp_path / "runs" / name / "zppo_graduation.png").exists()
