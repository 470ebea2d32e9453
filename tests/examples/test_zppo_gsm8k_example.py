"""examples/zppo_gsm8k.py, TRL's `grpo.py` shape for ZPPO: its PEP 723 header and docstring, the config its parser
builds, and `main` run end to end offline (the tiny model and a GSM8K-shaped local file stand in for the Hub)."""

import ast
import json
import re
import tomllib

from example_scripts import load_example, script_path


def test_the_script_parses_and_declares_its_dependencies():
    source = open(script_path("zppo_gsm8k")).read()
    tree = ast.parse(source)
    header = re.search(r"^# /// script\n((?:#.*\n)+?)# ///$", source, flags=re.M).group(1)
    metadata = tomllib.loads("".join(line.removeprefix("#").removeprefix(" ") + "\n" for line in header.splitlines()))
    assert metadata["dependencies"] == ["zppo-trl"]
    assert "python examples/zppo_gsm8k.py" in ast.get_docstring(tree) and "accelerate launch" in ast.get_docstring(
        tree
    )


def test_main_builds_its_config_from_the_defaults_a_yaml_and_flags(tmp_path):
    example = load_example("zppo_gsm8k")
    config = tmp_path / "c.yaml"
    config.write_text("hint_ratio: 0.5\nlora_r: 8\n")
    script, training, model = example.parse_config(["--config", str(config), "--max_steps", "3", "--lora_r", "4"])
    assert (script.dataset_name, script.dataset_config) == ("openai/gsm8k", "main")
    assert model.model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and model.use_peft
    assert (training.max_steps, training.hint_ratio, model.lora_r) == (3, 0.5, 4)  # flags over YAML over defaults
    assert training.teacher_column == "solution" and training.replay_ratio == 0.25  # the paper's default
    if training.use_cpu:  # this machine has no GPU: fp32 on CPU, picked without flags
        assert not training.bf16 and not training.fp16 and model.dtype == "float32"


def test_main_trains_one_step_offline(tmp_path, tokenizer):
    from zppo_trl.tiny import build_tiny_llama

    build_tiny_llama(tokenizer).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    rows = [{"question": f"What is {a} + 3?", "answer": f"{a} + 3 = <<{a}+3={a + 3}>>{a + 3}\n#### {a + 3}"}
            for a in range(4)]  # GSM8K's schema  # fmt: skip
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = load_example("zppo_gsm8k").main(
        ["--model_name_or_path", str(tmp_path / "tiny"), "--dataset_name", str(data), "--output_dir",
         str(tmp_path / "run"), "--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "2",
         "--max_completion_length", "8", "--lora_target_modules", "q_proj", "v_proj", "--activation_checkpointing",
         "false", "--save_strategy", "no", "--disable_tqdm", "true"]
    )  # fmt: skip
    assert trainer.state.global_step == 1 and trainer.teacher is not None
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()
