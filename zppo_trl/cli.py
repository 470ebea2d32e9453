"""`zppo-trl`: train and evaluate with ZPPO from the command line.

    zppo-trl train                                   # the embedded CPU demo (SmolLM2-135M + LoRA, shipped problems)
    zppo-trl train --config my.yaml --max_steps 50   # YAML and flags share one schema; flags win
    zppo-trl train --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name openai/gsm8k \
        --dataset_config main --use_peft --teacher_column solution
    zppo-trl eval --model_name_or_path outputs/zppo-smollm2-demo --num_samples 4
    zppo-trl plot outputs/zppo-smollm2-demo          # writes RUN_DIR/zppo_graduation.png from the run's logs

Built on TRL's `TrlParser` like `trl grpo`: every ZPPOConfig / GRPOConfig / TrainingArguments field and every
ModelConfig (PEFT/LoRA, quantization) field is a flag and a YAML key. Example configs: `examples/configs/`.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import resources

from trl import ModelConfig, ScriptArguments, TrlParser

from .config import ZPPOConfig

REWARD_FUNCS = ("boxed_accuracy_reward",)
COMMANDS = ("train", "eval", "plot")


@dataclass
class ZPPOScriptArguments(ScriptArguments):
    """Script arguments of `zppo-trl train` / `zppo-trl eval` (dataset fields are TRL's `ScriptArguments`).

    Without `--dataset_name` the package's embedded arithmetic problems are used; without `--model_name_or_path`
    the embedded SmolLM2-135M-Instruct.
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["boxed_accuracy_reward"],
        metadata={
            "help": f"Reward functions: one of {list(REWARD_FUNCS)} or a dotted import path (my_lib.my_reward)."
        },
    )
    max_train_prompts: int | None = field(
        default=None, metadata={"help": "Use only the first N training prompts (for quick runs)."}
    )
    adapter_path: str | None = field(
        default=None, metadata={"help": "eval: a trained LoRA adapter folder to apply on top of the model."}
    )
    num_samples: int = field(default=4, metadata={"help": "eval: completions sampled per question."})
    max_eval_prompts: int | None = field(default=None, metadata={"help": "eval: use only the first N prompts."})


def make_parser(command: str) -> TrlParser:
    return TrlParser((ZPPOScriptArguments, ZPPOConfig, ModelConfig), prog=f"zppo-trl {command}")


def builtin_config_path() -> str:
    return str(resources.files("zppo_trl").joinpath("configs/cpu_demo.yaml"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"zppo-trl: unknown command {argv[0]!r}; choose one of {list(COMMANDS)}.", file=sys.stderr)
        print(__doc__.strip())
        print(f"\nBuilt-in CPU demo config: {builtin_config_path()}")
        print("Example configs (CPU demo, Qwen2.5 + GSM8K LoRA, QLoRA 7B, paper recipe): examples/configs/")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "plot":
        if len(rest) != 1 or rest[0].startswith("-"):
            print("usage: zppo-trl plot RUN_DIR   (a ZPPOTrainer output_dir)", file=sys.stderr)
            return 2
        from .plotting import plot_graduation

        print(f"[zppo] wrote {plot_graduation(rest[0])}")
        return 0
    if "--config" not in rest and "--model_name_or_path" not in rest and "--dataset_name" not in rest:
        rest = ["--config", builtin_config_path(), *rest]  # the embedded default; flags still override it
    script_args, training_args, model_args = make_parser(command).parse_args_and_config(args=rest)
    return (train if command == "train" else evaluate)(script_args, training_args, model_args)


# --------------------------------------------------------------------------------------------------------------------
# shared loading


def load_reward_funcs(names: list[str]) -> list:
    from . import rewards

    funcs = []
    for name in names:
        if name in REWARD_FUNCS:
            funcs.append(getattr(rewards, name))
        elif "." in name:
            module, _, attr = name.rpartition(".")
            sys.path.insert(0, os.getcwd())
            funcs.append(getattr(importlib.import_module(module), attr))
        else:
            raise ValueError(f"`reward_funcs` has {name!r}; allowed: {list(REWARD_FUNCS)} or a dotted import path.")
    return funcs


def load_prompts(script_args: ZPPOScriptArguments, split: str, limit: int | None):
    from .data import load_embedded_math, to_zppo_format

    if script_args.dataset_name is None:
        dataset = load_embedded_math()
    else:
        from datasets import load_dataset

        dataset = to_zppo_format(load_dataset(script_args.dataset_name, script_args.dataset_config, split=split))
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def resolve_model_path(model_args: ModelConfig) -> str:
    from .models import embedded_model_path

    if model_args.model_name_or_path is None:
        path = embedded_model_path()
        print(f"[zppo] model: embedded SmolLM2-135M-Instruct ({path})")
        return path
    return model_args.model_name_or_path


# --------------------------------------------------------------------------------------------------------------------
# train


def train(script_args: ZPPOScriptArguments, training_args: ZPPOConfig, model_args: ModelConfig) -> int:
    from trl import get_peft_config, get_quantization_config

    from .callbacks import BufferReportCallback
    from .trainer import ZPPOTrainer

    dataset = load_prompts(script_args, script_args.dataset_train_split, script_args.max_train_prompts)
    if training_args.teacher_column is None and "solution" in dataset.column_names:
        training_args.teacher_column = "solution"
        print("[zppo] teacher: the dataset's `solution` column (pass --teacher_column to choose another)")
    model_path = resolve_model_path(model_args)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        **(training_args.model_init_kwargs or {}),
    }
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        training_args.model_init_kwargs["quantization_config"] = quantization
    report = BufferReportCallback()
    trainer = ZPPOTrainer(
        model=model_path,
        reward_funcs=load_reward_funcs(script_args.reward_funcs),
        args=training_args,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        callbacks=[report],
    )
    report.trainer = trainer
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        BufferReportCallback.print_summary(trainer)
        print(f"[zppo] model/adapter saved to {training_args.output_dir}")
        print(f"[zppo] buffer state saved to {os.path.join(training_args.output_dir, 'zppo_buffer_state.json')}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return 0


# --------------------------------------------------------------------------------------------------------------------
# eval


def evaluate(script_args: ZPPOScriptArguments, training_args: ZPPOConfig, model_args: ModelConfig) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .evaluation import plain_accuracy

    split = script_args.dataset_test_split if script_args.dataset_name else None
    dataset = load_prompts(script_args, split, script_args.max_eval_prompts)
    path = resolve_model_path(model_args)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, model_args.dtype or "float32"))
    if script_args.adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, script_args.adapter_path)
    result = plain_accuracy(
        model, tokenizer, dataset, num_samples=script_args.num_samples,
        max_new_tokens=training_args.max_completion_length, instruction=training_args.answer_format_instruction,
        temperature=training_args.temperature, seed=training_args.seed,
    )  # fmt: skip
    print(f"[zppo] plain accuracy: {result['accuracy']:.3f} over {result['num_questions']} questions "
          f"x {script_args.num_samples} samples")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
