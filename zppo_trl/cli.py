"""`zppo-trl`: train and evaluate with ZPPO from the command line.

    zppo-trl train                                   # the embedded CPU demo (SmolLM2-135M + LoRA, shipped problems)
    zppo-trl train --config my.yaml --max_steps 50   # YAML and flags share one schema; flags win
    zppo-trl train --dataset_name mine.jsonl --use_peft   # your own data: a .json/.jsonl/.csv/.parquet file or folder
    zppo-trl train --dataset_name mine.csv --question_column q --answer_column a --solution_column worked
    zppo-trl train --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name openai/gsm8k \
        --dataset_config main --use_peft
    zppo-trl eval --model_name_or_path outputs/zppo-smollm2-demo    # an adapter folder or a full model
    zppo-trl plot outputs/zppo-smollm2-demo          # writes RUN_DIR/zppo_graduation.png from the run's logs

Built on TRL's `TrlParser` like `trl grpo`: every ZPPOConfig / GRPOConfig / TrainingArguments field and every
ModelConfig (PEFT/LoRA, quantization) field is a flag and a YAML key. Example configs: `examples/configs/`.
On a machine without a GPU, CPU and float32 are picked unless --use_cpu / --bf16 / --fp16 are given.
`eval` scores with the correctness reward, instruction and completion length the run trained with (`zppo_run.json`
in the run folder); flags win.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources

from trl import ModelConfig, ScriptArguments, TrlParser

from .config import ZPPOConfig

COMMANDS = ("train", "eval", "plot")
RUN_FILE = "zppo_run.json"  # what `eval` needs to score like the run: reward, instruction, lengths, data columns
_RUN_FIELDS = (
    "answer_format_instruction",
    "max_completion_length",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
)  # ZPPOConfig fields it records: the sampler too
_COLUMN_FIELDS = ("question_column", "answer_column", "solution_column", "id_column")
_DEVICE_FLAGS = ("use_cpu", "bf16", "fp16")


def registered_rewards() -> dict:
    """Reward functions callable by name: `zppo_trl.rewards.REWARD_FUNCS` when it exists, else every public
    function of `zppo_trl.rewards` named `*_reward`."""
    from . import rewards

    registry = getattr(rewards, "REWARD_FUNCS", None)
    if isinstance(registry, dict):
        return dict(registry)
    return {
        name: func
        for name, func in vars(rewards).items()
        if name.endswith("_reward") and not name.startswith("_") and inspect.isfunction(func)
    }


@dataclass
class ZPPOScriptArguments(ScriptArguments):
    """Script arguments of `zppo-trl train` / `zppo-trl eval` (dataset fields are TRL's `ScriptArguments`).

    Without `--dataset_name` or `--data_files` the package's embedded arithmetic problems are used; without
    `--model_name_or_path` the embedded SmolLM2-135M-Instruct. `--dataset_name` takes a Hub name, a local
    `.json`/`.jsonl`/`.csv`/`.parquet` file or a folder of them (splits from file names: `train.jsonl`, `test.jsonl`).
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["boxed_accuracy_reward"],
        metadata={"help": "Reward functions: names in zppo_trl.rewards (e.g. boxed_accuracy_reward) or dotted import "
                  "paths (my_lib.my_reward)."},
    )  # fmt: skip
    data_files: list[str] | None = field(
        default=None,
        metadata={"help": "Local data files, as SPLIT=PATH (train=a.jsonl test=b.jsonl) or PATH (the train split)."},
    )
    question_column: str | None = field(
        default=None, metadata={"help": "Column holding the question (detected: prompt, question, problem, query)."}
    )
    answer_column: str | None = field(
        default=None,
        metadata={"help": "Column holding the gold answer: plain, GSM8K '#### 42' or \\boxed{} (detected: answer, "
                  "final_answer, ground_truth, target)."},
    )  # fmt: skip
    solution_column: str | None = field(
        default=None,
        metadata={"help": "Column holding reference solutions, the BCQ teacher (detected: solution)."},
    )
    id_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding unique question ids (detected: prompt_id, id, question_id, problem_id, uid)."
        },
    )
    max_train_prompts: int | None = field(
        default=None, metadata={"help": "Use only the first N training prompts (for quick runs)."}
    )
    adapter_path: str | None = field(
        default=None,
        metadata={"help": "eval: a LoRA adapter folder to apply on top of --model_name_or_path (an adapter folder "
                  "given as --model_name_or_path is detected by itself)."},
    )  # fmt: skip
    num_samples: int = field(default=4, metadata={"help": "eval: completions sampled per question."})
    max_eval_prompts: int = field(
        default=16, metadata={"help": "eval: use only the first N prompts, 0 for all (short by default)."}
    )


def make_parser(command: str) -> TrlParser:
    return TrlParser((ZPPOScriptArguments, ZPPOConfig, ModelConfig), prog=f"zppo-trl {command}")


def builtin_config_path() -> str:
    return str(resources.files("zppo_trl").joinpath("configs/cpu_demo.yaml"))


# --------------------------------------------------------------------------------------------------------------------
# parsing: the embedded default, CPU defaults, which settings were given


def has_accelerator() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or torch.backends.mps.is_available()


def given_keys(args: list[str]) -> set[str]:
    """The settings a command line sets itself: its `--flags` and the keys of its `--config` YAML file."""
    import yaml

    keys = {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}
    keys |= {k[3:] for k in keys if k.startswith("no_")}  # HfArgumentParser's --no_<flag> for True defaults
    if "--config" in args and args.index("--config") + 1 < len(args):
        with open(args[args.index("--config") + 1]) as f:
            keys |= set(yaml.safe_load(f) or {})
    return keys - {"config"}


def parse_command(command: str, rest: list[str]):
    """`(script_args, training_args, model_args, given)` for `train`/`eval`: the embedded demo config when no
    model, dataset or config is named; CPU and fp32 on a machine without an accelerator unless the device flags are
    given (one printed line says so); `given` = the settings named on the command line or in its YAML."""
    if not {"--config", "--model_name_or_path", "--dataset_name", "--data_files"} & set(rest):
        rest = ["--config", builtin_config_path(), *rest]  # the embedded default; flags still override it
    given = given_keys(rest)
    if not has_accelerator() and not given & set(_DEVICE_FLAGS):
        # TRL's default bf16=True raises on a CPU-only machine before anything loads
        rest = ["--use_cpu", "true", "--bf16", "false", *rest]
        dtype = "" if "dtype" in given else " in float32"
        print(f"[zppo] no GPU found: running on CPU{dtype} (--use_cpu true --bf16 false; pass them to choose)")
    script_args, training_args, model_args = make_parser(command).parse_args_and_config(args=rest)
    return script_args, training_args, model_args, given


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
    script_args, training_args, model_args, given = parse_command(command, rest)
    if command == "train":
        return train(script_args, training_args, model_args)
    return evaluate(script_args, training_args, model_args, given)


# --------------------------------------------------------------------------------------------------------------------
# shared loading


def load_reward_funcs(names: list[str]) -> list:
    registry = registered_rewards()
    funcs = []
    for name in names:
        if name in registry:
            funcs.append(registry[name])
        elif "." in name:
            module, _, attr = name.rpartition(".")
            sys.path.insert(0, os.getcwd())
            funcs.append(getattr(importlib.import_module(module), attr))
        else:
            raise ValueError(f"`reward_funcs` has {name!r}; allowed: {sorted(registry)} or a dotted import path.")
    return funcs


def load_prompts(script_args: ZPPOScriptArguments, split: str, limit: int | None):
    """The prompts of `split` in ZPPO's shape: the built-in demo questions (`demo_tasks.py`: training questions, or
    with `split=None`, as `eval` asks, the fixed held-out set that shares no question with them), or a Hub/local
    dataset through the column mapping (detected, or the `--*_column` flags)."""
    from .data import load_source, pick_split, to_zppo_format
    from .demo_tasks import load_demo_tasks

    if script_args.dataset_name is None and not script_args.data_files:
        dataset = load_demo_tasks("test" if split is None else "train")
    else:
        source = load_source(script_args.dataset_name, script_args.dataset_config, script_args.data_files)
        dataset, used = pick_split(source, split)
        if used != split:
            print(f"[zppo] the data has no `{split}` split; using its only split, `{used}`")
        dataset = to_zppo_format(dataset, **{name: getattr(script_args, name) for name in _COLUMN_FIELDS})
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def resolve_model_path(model_args: ModelConfig) -> str:
    from .models import embedded_model_path

    if model_args.model_name_or_path is None:
        path = embedded_model_path()
        print(f"[zppo] model: embedded SmolLM2-135M-Instruct ({path})")
        return path
    return model_args.model_name_or_path


def correctness_spec(specs: list[str], funcs: list, correctness_reward: str | None) -> str:
    """The reward-function spec (name or dotted path) ZPPOConfig's `correctness_reward` picks among `specs`."""
    if correctness_reward is None:
        return specs[0]
    if str(correctness_reward).isdigit() and int(correctness_reward) < len(specs):
        return specs[int(correctness_reward)]
    for spec, func in zip(specs, funcs):
        if correctness_reward in (spec, getattr(func, "__name__", None)):
            return spec
    raise ValueError(f"`correctness_reward={correctness_reward!r}` names none of the reward functions {specs}.")


# --------------------------------------------------------------------------------------------------------------------
# train


def train(script_args: ZPPOScriptArguments, training_args: ZPPOConfig, model_args: ModelConfig) -> int:
    from trl import get_peft_config, get_quantization_config

    from .callbacks import BufferReportCallback
    from .data import source_label
    from .trainer import ZPPOTrainer

    dataset = load_prompts(script_args, script_args.dataset_train_split, script_args.max_train_prompts)
    label = source_label(script_args.dataset_name, script_args.data_files)
    print(f"[zppo] data: {len(dataset)} training questions from {label}")
    no_teacher = training_args.teacher_column is None and training_args.teacher_model is None
    if no_teacher and "solution" in dataset.column_names:
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
    reward_funcs = load_reward_funcs(script_args.reward_funcs)
    builtin_data = script_args.dataset_name is None and not script_args.data_files
    # the demo's end-of-run report: plain accuracy on the held-out questions before and after training
    report = BufferReportCallback(held_out=load_prompts(script_args, None, None) if builtin_data else None)
    trainer = ZPPOTrainer(
        model=model_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        peft_config=get_peft_config(model_args),
        callbacks=[report],
    )
    report.trainer = trainer
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.create_model_card(dataset_name=label)  # save_model's card cannot know the dataset's name
        write_run_record(training_args.output_dir, script_args, training_args, reward_funcs, label)
        BufferReportCallback.print_summary(trainer)
        print(f"[zppo] model/adapter saved to {training_args.output_dir}")
        print(f"[zppo] buffer state saved to {os.path.join(training_args.output_dir, 'zppo_buffer_state.json')}")
        print(f"[zppo] evaluate it: {eval_command(training_args.output_dir, script_args)}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=label)
    return 0


def eval_command(output_dir: str, script_args) -> str:
    """The `zppo-trl eval` command for a run: local data is named again (the run folder keeps no local path)."""
    import shlex

    words = ["zppo-trl", "eval", "--model_name_or_path", output_dir]
    if script_args.data_files:
        words += ["--data_files", *script_args.data_files]
    elif script_args.dataset_name is not None and os.path.exists(script_args.dataset_name):
        words += ["--dataset_name", script_args.dataset_name]
    return shlex.join(words)


def write_run_record(folder: str, script_args, training_args, reward_funcs: list, label: str) -> None:
    """`zppo_run.json`: the correctness reward, instruction, lengths and column mapping of the run, for `eval`. It
    holds no local path (the folder may be pushed): a run on local data records only its file names."""
    dataset_name = script_args.dataset_name
    local = bool(script_args.data_files) or (dataset_name is not None and os.path.exists(dataset_name))
    specs = list(script_args.reward_funcs)
    record = {
        "reward_funcs": specs,
        "correctness_reward": correctness_spec(specs, reward_funcs, training_args.correctness_reward),
        **{name: getattr(training_args, name) for name in _RUN_FIELDS},
        "dataset": {
            "label": label,
            "local": bool(local),
            "dataset_name": None if local else dataset_name,
            "dataset_config": None if local else script_args.dataset_config,
            **{name: getattr(script_args, name) for name in _COLUMN_FIELDS},
        },
    }
    with open(os.path.join(folder, RUN_FILE), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------------------------------------------------
# eval


def read_run_record(folder: str | None) -> dict:
    try:
        with open(os.path.join(folder or "", RUN_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def apply_run_record(record: dict, script_args, training_args, given: set[str]) -> list[str]:
    """Take the run's settings for every setting not given on the command line; returns the names taken."""
    taken = []
    if record.get("correctness_reward") and "reward_funcs" not in given:
        script_args.reward_funcs, training_args.correctness_reward = [record["correctness_reward"]], None
        taken.append("reward")
    for name in _RUN_FIELDS:
        if name in record and name not in given:
            setattr(training_args, name, record[name])
            taken.append(name)
    data = record.get("dataset") or {}
    if not {"dataset_name", "data_files"} & given:
        if data.get("local"):
            raise ValueError(
                f"this run trained on {data.get('label', 'local data')}: name the evaluation data with --dataset_name "
                "PATH or --data_files test=PATH (the run folder keeps no local path)."
            )
        if data.get("dataset_name"):
            script_args.dataset_name, script_args.dataset_config = data["dataset_name"], data.get("dataset_config")
            taken.append("dataset")
    for name in _COLUMN_FIELDS:
        if data.get(name) and name not in given:
            setattr(script_args, name, data[name])
    return taken


def load_for_eval(model_path: str, adapter_path: str | None, dtype):
    """`(model, tokenizer, description)`: a full model, or an adapter on its base (an adapter folder given as the
    model is detected by its adapter_config.json; the base is loaded from the id it records, offline for the
    embedded SmolLM2)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import local_weights_for

    if adapter_path is None and os.path.isfile(os.path.join(model_path, "adapter_config.json")):
        with open(os.path.join(model_path, "adapter_config.json")) as f:
            base_id = json.load(f)["base_model_name_or_path"]
        adapter_path, model_path = model_path, local_weights_for(base_id)
        where = "" if model_path == base_id else f" (local weights {model_path})"
        description = f"adapter {adapter_path} on {base_id}{where}"
    else:
        description = f"{model_path}" + (f" + adapter {adapter_path}" if adapter_path else "")
    has_tokenizer = adapter_path and os.path.isfile(os.path.join(adapter_path, "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(adapter_path if has_tokenizer else model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    return model, tokenizer, description


def evaluate(script_args, training_args: ZPPOConfig, model_args: ModelConfig, given: set[str] = frozenset()) -> int:
    import torch

    from .evaluation import plain_accuracy, training_sampler

    model_path = resolve_model_path(model_args)
    run_folder = script_args.adapter_path or model_path
    taken = apply_run_record(read_run_record(run_folder), script_args, training_args, given)
    if taken:
        print(f"[zppo] from the run's {RUN_FILE}: {', '.join(taken)} (flags win)")
    split = script_args.dataset_test_split if script_args.dataset_name or script_args.data_files else None
    dataset = load_prompts(script_args, split, script_args.max_eval_prompts or None)
    funcs = load_reward_funcs(script_args.reward_funcs)
    spec = correctness_spec(script_args.reward_funcs, funcs, training_args.correctness_reward)
    reward = funcs[script_args.reward_funcs.index(spec)]
    dtype = getattr(torch, model_args.dtype) if model_args.dtype and model_args.dtype != "auto" else "auto"
    model, tokenizer, description = load_for_eval(model_path, script_args.adapter_path, dtype)
    device = "cpu" if training_args.use_cpu or not has_accelerator() else training_args.device
    model.to(device)
    print(f"[zppo] eval: {description}")
    print(f"[zppo] eval: {len(dataset)} questions x {script_args.num_samples} samples, at most "
          f"{training_args.max_completion_length} new tokens, reward {spec}, on {device} ({model_args.dtype})"
          + ("; --max_eval_prompts 0 for all" if len(dataset) == script_args.max_eval_prompts else ""))  # fmt: skip
    start = time.perf_counter()
    result = plain_accuracy(
        model, tokenizer, dataset, num_samples=script_args.num_samples,
        max_new_tokens=training_args.max_completion_length, instruction=training_args.answer_format_instruction,
        sampler=training_sampler(training_args), seed=training_args.seed, reward=reward, progress=True,
    )  # fmt: skip
    print(f"[zppo] plain accuracy: {result['accuracy']:.3f} over {result['num_questions']} questions "
          f"x {script_args.num_samples} samples in {time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
