"""What a person touches after training: example configs, the config reference, the model card and figure in the
folder an upload would send, the completions table, and TensorBoard logging."""

import glob
import os

import pytest
from cli_runs import upload_files
from paths import ROOT
from peft import LoraConfig

from zppo_trl.cli import builtin_config_path, main, make_parser
from zppo_trl.config_reference import render


def reward(completions, prompt_id, **kwargs):  # odd ids solved, even ids never: a buffer with something in it
    return [float(pid % 2) for pid in prompt_id]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "examples", "configs", "*.yaml"))))
def test_every_example_config_parses(path):
    # GPU-only settings are overridden by flags (flags win over YAML) so the schema is checked on CPU
    script, training, model = make_parser("train").parse_args_and_config(
        args=["--config", path, "--bf16", "false", "--use_cpu", "true", "--load_in_4bit", "false"]
    )
    assert training.output_dir and script.reward_funcs


def test_the_example_cpu_config_is_the_builtin_default():
    with open(os.path.join(ROOT, "examples", "configs", "cpu_demo.yaml")) as a, open(builtin_config_path()) as b:
        assert a.read() == b.read()


def test_config_reference_is_up_to_date():
    with open(os.path.join(ROOT, "docs", "config_reference.md")) as f:
        assert f.read() == render(), "run: python -m zppo_trl.config_reference > docs/config_reference.md"


def test_saved_lora_run_holds_adapter_zppo_card_and_figure(make_trainer, tmp_path):
    trainer = make_trainer(
        reward, teacher_column="solution", max_steps=3, hint_ratio=0.7, output_dir=str(tmp_path / "run"),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        log_completions=True,
    )  # fmt: skip
    trainer.train()
    trainer.save_model()  # PEFT writes its README.md here; ours must be the one that stays
    sent = upload_files(tmp_path / "run")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "zppo_graduation.png",
            "zppo_buffer_state.json", "trainer_state.json"} <= set(sent)  # fmt: skip
    card = (tmp_path / "run" / "README.md").read_text()
    for tag in ("- zppo", "- trl", "- grpo"):
        assert tag in card
    assert "## ZPPO training" in card and "| `hint_ratio` | `0.7` | `0.25` |" in card
    buf = trainer.replay_buffer
    assert f"Admitted {buf.total_admitted}, graduated {buf.total_graduated}" in card and buf.total_admitted > 0
    assert f"| 0 | {buf.admitted_by_bin[0]} | 0 |" in card and "![Buffer dynamics" in card
    assert card.count("## ZPPO training") == 1
    png = tmp_path / "run" / "zppo_graduation.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000

    # the completions table marks every row with its kind, and replay/hint rows do not push new ones out
    import pandas as pd

    table = pd.read_parquet(sorted(glob.glob(str(tmp_path / "run" / "completions" / "*.parquet")))[-1])
    kinds = set(table["zppo_kind"])
    assert {"plain", "replay"} <= kinds and kinds & {"bcq", "ncq"}
    assert (table["zppo_kind"] == "plain").sum() == trainer.args.generation_batch_size

    # `zppo-trl plot RUN_DIR` rebuilds the figure from the saved logs
    png.unlink()
    assert main(["plot", str(tmp_path / "run")]) == 0 and png.exists()


def test_zppo_metrics_reach_tensorboard(make_trainer, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(reward, max_steps=2, report_to="tensorboard", output_dir=str(tmp_path / "run"))
    logdir = tmp_path / "run"  # transformers 5 logs TensorBoard events under output_dir/runs/
    trainer.train()
    events = EventAccumulator(str(next(p for p in logdir.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/zppo/total_admitted", "train/zppo/buffer_size", "train/zppo/replayed", "train/reward"} <= tags
    assert events.Scalars("train/zppo/total_admitted")[-1].value == trainer.replay_buffer.total_admitted


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "examples", "accelerate", "*.yaml"))))
def test_accelerate_configs_are_valid(path):
    """Multi-GPU configs cannot run on CPU: check they parse into accelerate's own config class."""
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(path)
    assert config.num_processes >= 2 and config.mixed_precision == "bf16"
    assert config.distributed_type in ("MULTI_GPU", "DEEPSPEED", "FSDP")
    if config.distributed_type == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] in (2, 3)
    if config.distributed_type == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
