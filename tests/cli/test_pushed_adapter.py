"""A pushed adapter anyone can load: the base model's Hub id in adapter_config.json and the card, no local
path in the folder an upload sends, a card whose front matter parses and whose quick-start runs, and `zppo-trl eval`
on CPU with no flags.

The tiny run names its base `zppo-tests/tiny-char-llama` (`--base_model_id`). A fresh process resolves that id
offline the way a user's machine resolves a downloaded model: from a Hugging Face cache folder
(`HF_HUB_CACHE/models--zppo-tests--tiny-char-llama/snapshots/<commit>/`, with `refs/main` naming the commit) holding
a copy of the tiny model, and `HF_HUB_OFFLINE=1`. The adapter folder holds no path to the original, so the id is the
only way in.
"""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
from cli_runs import upload_files
from huggingface_hub import ModelCard
from paths import ROOT

from zppo_trl.cli import main
from zppo_trl.model_card import NEUTRAL_EXAMPLE_QUESTION, build_model_card, record_base_model
from zppo_trl.models import EMBEDDED_MODEL_ID, SOURCE_FILE, base_model_id, hub_id_of_local_model

BASE_ID = "zppo-tests/tiny-char-llama"
INSTRUCTION = "Put the final answer in \\boxed{}."
ZPPO_TRL = os.path.join(os.path.dirname(sys.executable), "zppo-trl")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`(workdir, run folder, hub cache, local base folder, stdout)` of a one-step tiny LoRA run on the embedded
    problems, started as a user would (no device flags)."""
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    work = tmp_path_factory.mktemp("work")
    base = work / "tiny-base"
    tokenizer = build_char_tokenizer()
    build_tiny_llama(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    snapshot = work / "hub" / f"models--{BASE_ID.replace('/', '--')}" / "snapshots" / ("0" * 40)
    shutil.copytree(base, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)

    run = work / "run"
    flags = ["--model_name_or_path", str(base), "--base_model_id", BASE_ID, "--use_peft", "--output_dir", str(run),
             "--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "2",
             "--max_completion_length", "8", "--answer_format_instruction", INSTRUCTION,
             "--activation_checkpointing", "false", "--save_strategy", "no", "--report_to", "none",
             "--disable_tqdm", "true"]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", *flags]) == 0
    return work, run, work / "hub", base, out.getvalue()


def test_adapter_folder_names_the_hub_id_and_holds_no_local_path(trained):
    work, run, _, base, _ = trained
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID
    for name in upload_files(run):
        if name.endswith((".json", ".md", ".jinja", ".txt")):
            text = (run / name).read_text()
            assert str(work) not in text and str(base) not in text, f"{name} holds a local path"


def test_card_front_matter_parses_and_the_card_names_model_base_and_question(trained):
    _, run, _, _, _ = trained
    card = ModelCard.load(run / "README.md")  # raises on invalid front matter
    data = card.data.to_dict()
    assert data["base_model"] == BASE_ID and data["library_name"] == "peft" and data["model_name"] == "run"
    assert {"zppo", "trl", "grpo", "lora", f"base_model:adapter:{BASE_ID}"} <= set(data["tags"])
    assert "licence" not in data and "license" not in data  # the tiny base's license is unknown: none is claimed
    assert "datasets" not in data  # the built-in problems are no Hub dataset
    text = card.text
    assert "# Model Card for run" in text and "model_id = 'run'" in text  # before a push: the folder name
    assert not re.search(r"for None|huggingface.co/None|model_id = None", text)
    assert f"[{BASE_ID}](https://huggingface.co/{BASE_ID})" in text
    assert "zppo-trl's built-in arithmetic demo questions" in text
    assert "AutoPeftModelForCausalLM.from_pretrained(model_id)" in text
    # a neutral question, not a training one (the data may be private), with the training instruction
    assert repr(f"{NEUTRAL_EXAMPLE_QUESTION}\n\n{INSTRUCTION}") in text and "What is 7 + 6?" not in text
    assert text.count("## ZPPO training") == 1 and f"- Base model: [{BASE_ID}]" in text


def test_a_fresh_process_loads_the_adapter_through_the_recorded_base_id(trained):
    work, run, hub, _, _ = trained
    quick_start = re.search(r"```python\n(.*?)```", (run / "README.md").read_text(), re.S).group(1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "HF_HUB_DISABLE_TELEMETRY": "1"}
    check = "\nassert type(model).__name__ == 'PeftModelForCausalLM'\nprint('BASE', model.peft_config['default'].base_model_name_or_path)"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", quick_start + check], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"BASE {BASE_ID}" in done.stdout


def test_zppo_trl_eval_runs_as_printed_on_cpu(trained):
    work, run, hub, _, printed = trained
    command = re.search(r"\[zppo\] evaluate it: (zppo-trl eval .*)", printed).group(1)
    assert command == f"zppo-trl eval --model_name_or_path {run}"  # no device flags
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([ZPPO_TRL, *command.split()[1:], "--max_eval_prompts", "4"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"[zppo] eval: adapter {run} on {BASE_ID}" in out
    assert "[zppo] eval: 4 questions x 4 samples, at most 8 new tokens, reward boxed_accuracy_reward" in out
    assert re.search(r"\[zppo\] plain accuracy: \d\.\d{3} over \d+ questions x 4 samples in \d+\.\d s", out)
    assert "eval: 100%" in done.stderr  # the progress bar


def test_eval_takes_a_full_model_folder(trained, capsys):
    _, _, _, base, _ = trained
    flags = ["--max_eval_prompts", "2", "--num_samples", "2", "--max_completion_length", "8"]
    assert main(["eval", "--model_name_or_path", str(base), *flags]) == 0
    out = capsys.readouterr().out
    assert f"[zppo] eval: {base}\n" in out and "2 questions x 2 samples" in out


def test_base_model_id_resolution(tmp_path):
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / SOURCE_FILE).write_text(f'{{"hub_id": "{EMBEDDED_MODEL_ID}"}}')
    assert hub_id_of_local_model(str(converted)) == EMBEDDED_MODEL_ID  # the embedded conversion knows its id
    assert base_model_id(str(converted)) == EMBEDDED_MODEL_ID
    assert base_model_id(str(tmp_path)) is None  # a local folder with no known id
    assert base_model_id(str(tmp_path), configured="me/base") == "me/base"  # ZPPOConfig.base_model_id wins
    assert base_model_id("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_embedded_base_and_hub_dataset_fill_the_front_matter():
    card = build_model_card(
        model_name="m", repo_id="me/m", base_model=EMBEDDED_MODEL_ID, license="apache-2.0",
        dataset_name="openai/gsm8k", tags=["zppo"], is_adapter=True, prompt=[{"role": "user", "content": "q"}],
        max_new_tokens=8, zppo_section="## ZPPO training\n",
    )  # fmt: skip
    data = ModelCard(str(card)).data.to_dict()
    assert data["license"] == "apache-2.0" and data["datasets"] == ["openai/gsm8k"]
    assert data["base_model"] == EMBEDDED_MODEL_ID
    assert "[openai/gsm8k](https://huggingface.co/datasets/openai/gsm8k)" in card.text


def test_a_push_warns_when_the_base_is_a_local_path(make_trainer, tmp_path):
    from peft import LoraConfig

    trainer = make_trainer(
        lambda completions, **kw: [0.0] * len(completions), output_dir=str(tmp_path / "out"),
        peft_config=LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"),
    )  # fmt: skip
    trainer.model.config._name_or_path = str(tmp_path)  # as if loaded from this local folder
    with pytest.warns(UserWarning, match="local path .* Set `base_model_id`"):
        assert record_base_model(trainer, str(tmp_path / "out"), pushing=True) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record_base_model(trainer, str(tmp_path / "out"), pushing=False)  # a local save does not warn


def test_notebook_installs_from_one_pinned_source():
    import nbformat

    root = ROOT
    nb = nbformat.read(os.path.join(root, "notebooks", "zppo_quickstart.ipynb"), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    parameters = next(s for s in code if s.startswith("# Parameters"))
    source = re.search(r'^ZPPO_TRL_SOURCE = "([^"]+)"', parameters, re.M).group(1)
    assert re.fullmatch(r"git\+https://\S+\.git@v[\d.]+|zppo-trl==[\d.]+", source)  # a tag or a pinned version
    installs = [line.strip() for s in code for line in s.splitlines() if re.search(r"[!%]pip ", line)]
    assert installs == ['!pip install -q "{ZPPO_TRL_SOURCE}"']  # the only install, from that source
