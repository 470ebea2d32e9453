"""The CLI's arguments: one schema for flags and YAML (TRL's `TrlParser` over ZPPO's script arguments, ZPPOConfig and
ModelConfig), the shipped configs, precision by the device for settings not given, `--help` with ZPPO's options
first, and loading what a command names (rewards, prompts, the model path)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from importlib import resources

import yaml
from trl import GRPOConfig, ModelConfig, ScriptArguments, TrlParser

from ..config import ZPPOConfig
from ..precision import model_dtype_name, pick_precision, precision_of

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
# errors of the configuration or the data, reported as a message and exit status 2 (no traceback, unless --debug)
CONFIG_ERRORS = (ValueError, OSError, ImportError, yaml.YAMLError)
DEBUG_ENV = "ZPPO_DEBUG"
HELP_FLAGS = ("-h", "--help", "--help-all")
RESUME_NEWEST = ("true", "last")  # --resume_from_checkpoint values meaning the newest complete checkpoint
# TRL's reward functions callable by name (the factories, `get_*`, need arguments and are left out)
TRL_REWARDS = ("accuracy_reward", "reasoning_accuracy_reward", "think_format_reward")
# TrainingArguments/GRPOConfig options `--help` shows; `--help-all` shows all of them
COMMON_TRAINING_FLAGS = (
    "output_dir",
    "max_steps",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "num_generations",
    "max_completion_length",
    "temperature",
    "loss_type",
    "beta",
    "bf16",
    "fp16",
    "use_cpu",
    "activation_checkpointing",
    "use_vllm",
    "logging_steps",
    "save_strategy",
    "save_steps",
    "report_to",
    "resume_from_checkpoint",
    "push_to_hub",
    "hub_model_id",
    "seed",
)


def registered_rewards() -> dict:
    """Reward functions callable by name: `zppo_trl.rewards.REWARD_FUNCS` when it exists, else every public
    function of `zppo_trl.rewards` named `*_reward`; then TRL's `trl.rewards` functions (`TRL_REWARDS`) whose names
    ZPPO's do not take."""
    import trl.rewards

    from .. import rewards

    registry = getattr(rewards, "REWARD_FUNCS", None)
    if isinstance(registry, dict):
        registry = dict(registry)
    else:
        registry = {
            name: func
            for name, func in vars(rewards).items()
            if name.endswith("_reward") and not name.startswith("_") and inspect.isfunction(func)
        }
    return {**{name: getattr(trl.rewards, name) for name in TRL_REWARDS}, **registry}


@dataclass
class ZPPOScriptArguments(ScriptArguments):
    """Script arguments of `zppo-trl train` / `zppo-trl eval` (dataset fields are TRL's `ScriptArguments`).

    Without `--dataset_name` or `--data_files` the package's embedded arithmetic problems are used; without
    `--model_name_or_path` the embedded SmolLM2-135M-Instruct. `--dataset_name` takes a Hub name, a local
    `.json`/`.jsonl`/`.csv`/`.parquet` file or a folder of them (splits from file names: `train.jsonl`, `test.jsonl`).
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["boxed_accuracy_reward"],
        metadata={
            "help": "Reward functions: names in zppo_trl.rewards (e.g. boxed_accuracy_reward, "
            "final_answer_reward), TRL's accuracy_reward, reasoning_accuracy_reward, think_format_reward, or "
            "dotted import paths (my_lib.my_reward; imported from the working directory too)."
        },
    )
    data_files: list[str] | None = field(
        default=None,
        metadata={"help": "Local data files, as SPLIT=PATH (train=a.jsonl test=b.jsonl) or PATH (the train split)."},
    )
    question_column: str | None = field(
        default=None, metadata={"help": "Column holding the question (detected: prompt, question, problem, query)."}
    )
    answer_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding the gold answer: plain, GSM8K '#### 42' or \\boxed{} (detected: answer, "
            "final_answer, ground_truth, target)."
        },
    )
    solution_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding worked solutions, the BCQ teacher (detected: solution). Without an answer "
            "column, a `solution` column with no \\boxed{} or '####' holds the gold answers (TRL's shape): then "
            "there is no teacher column."
        },
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
        metadata={
            "help": "eval: a LoRA adapter folder to apply on top of --model_name_or_path (an adapter folder "
            "given as --model_name_or_path is detected by itself)."
        },
    )
    num_samples: int = field(default=4, metadata={"help": "eval: completions sampled per question."})
    max_eval_prompts: int = field(
        default=16, metadata={"help": "eval: use only the first N prompts, 0 for all (short by default)."}
    )


def make_parser(command: str) -> TrlParser:
    return TrlParser((ZPPOScriptArguments, ZPPOConfig, ModelConfig), prog=f"zppo-trl {command}")


def builtin_config_path() -> str:
    return str(resources.files("zppo_trl").joinpath("configs/cpu_demo.yaml"))


def shipped_configs() -> dict[str, str]:
    """The example configs shipped in the package (`zppo_trl/configs/`, copies of `examples/configs/`), by name."""
    folder = resources.files("zppo_trl").joinpath("configs")
    return {
        f.name.removesuffix(".yaml"): str(f)
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".yaml")
    }


def resolve_config_name(args: list[str]) -> list[str]:
    """`--config NAME` with NAME a shipped config (`qlora_7b`, `qwen2.5_gsm8k_lora.yaml`) and no such file here: the
    shipped file's path. Any existing path is kept."""
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        return args
    i = args.index("--config") + 1
    name = args[i]
    shipped = shipped_configs().get(name.removesuffix(".yaml"))
    if not os.path.exists(name) and os.sep not in name and shipped is not None:
        return [*args[:i], shipped, *args[i + 1 :]]
    return args


# --------------------------------------------------------------------------------------------------------------------
# parsing: the embedded default, precision by device, which settings were given


def given_keys(args: list[str]) -> set[str]:
    """The settings a command line sets itself: its `--flags` and the keys of its `--config` YAML file."""
    keys = {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}
    keys |= {k[3:] for k in keys if k.startswith("no_")}  # HfArgumentParser's --no_<flag> for True defaults
    if "--config" in args and args.index("--config") + 1 < len(args):
        with open(args[args.index("--config") + 1]) as f:
            keys |= set(yaml.safe_load(f) or {})
    return keys - {"config"}


def device_flags(precision, given: set[str]) -> list[str]:
    """Flags that put the run in `precision` (a `precision.Precision`), for the settings not given. On a GPU, none
    when any of `use_cpu`, `bf16`, `fp16` is given; on CPU, `--use_cpu true` unless given and fp32 unless `bf16` or
    `fp16` is given."""
    if precision.name is None or precision.device != "cpu" and {"use_cpu", "bf16", "fp16"} & given:
        return []
    flags = [] if precision.device != "cpu" or "use_cpu" in given else ["--use_cpu", "true"]
    if not {"bf16", "fp16"} & given:
        flags += ["--bf16", str(precision.name == "bf16").lower(), "--fp16", str(precision.name == "fp16").lower()]
    return flags


def resume_value(value):
    """`--resume_from_checkpoint`: `true`/`last` -> True (the newest complete checkpoint in output_dir, as
    `ZPPOTrainer.train(resume_from_checkpoint=True)` picks it), `false`/`none`/empty -> None, else a folder path."""
    if value is None or isinstance(value, bool):
        return value or None
    text = str(value).strip()
    if text.lower() in RESUME_NEWEST:
        return True
    if text.lower() in ("false", "none", ""):
        return None
    return text


def parse_command(command: str, rest: list[str]):
    """`(script_args, training_args, model_args, given)` for `train`/`eval`: the embedded demo config when no
    model, dataset or config is named; precision by the device for the settings not given (one printed line says
    which); `given` = the settings named on the command line or in its YAML."""
    rest = resolve_config_name(rest)
    if not {"--config", "--model_name_or_path", "--dataset_name", "--data_files"} & set(rest):
        rest = ["--config", builtin_config_path(), *rest]  # the embedded default; flags still override it
    given = given_keys(rest)
    precision = pick_precision()
    flags = device_flags(precision, given)
    if precision.device == "cpu" and flags:
        dtype = "" if "dtype" in given else " in float32"
        print(f"[zppo] no GPU found: running on CPU{dtype} ({' '.join(flags)}; pass them to choose)")
    elif flags:
        print(f"[zppo] precision: {precision.name} ({precision.reason}; --bf16 / --fp16 to choose)")
    script_args, training_args, model_args = make_parser(command).parse_args_and_config(args=[*flags, *rest])
    training_args.resume_from_checkpoint = resume_value(training_args.resume_from_checkpoint)
    if "dtype" not in given and precision.name is not None:
        # a frozen base (LoRA, QLoRA, eval) in the 16-bit format the run computes in; weights that train in float32
        frozen = command == "eval" or model_args.use_peft or model_args.load_in_4bit or model_args.load_in_8bit
        model_args.dtype = model_dtype_name(precision_of(training_args), frozen)
    return script_args, training_args, model_args, given


# --------------------------------------------------------------------------------------------------------------------
# help: ZPPO's options first, with the library's defaults


def zppo_fields() -> list[str]:
    """The fields ZPPOConfig declares itself (its own and those whose default it changes), in declaration order."""
    return list(ZPPOConfig.__annotations__)


def print_help(command: str, rest: list[str], show_all: bool) -> None:
    """`zppo-trl train|eval --help`: ZPPO's options, then data and rewards, model and LoRA, and the common training
    options; `--help-all` adds every other TRL/transformers option. Defaults are the library's: the CPU demo's
    config applies only when the demo runs (a `--config` given with --help shows its values)."""
    parser = make_parser(command)
    rest = resolve_config_name([a for a in rest if a not in HELP_FLAGS])
    if "--config" in rest and rest.index("--config") + 1 < len(rest):
        with open(rest[rest.index("--config") + 1]) as f:
            parser.set_defaults_with_config(**(yaml.safe_load(f) or {}))
    script_fields = {f.name for f in dataclasses.fields(ZPPOScriptArguments)}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    zppo = set(zppo_fields())
    trl_fields = {f.name for f in dataclasses.fields(GRPOConfig)} - zppo
    groups = {
        "zppo": parser.add_argument_group("ZPPO options (ZPPOConfig; defaults are the paper's, arXiv 2606.18216)"),
        "data": parser.add_argument_group("data and rewards"),
        "model": parser.add_argument_group("model, LoRA and quantization (TRL's ModelConfig)"),
        "common": parser.add_argument_group("training (TRL's GRPOConfig and transformers' TrainingArguments)"),
    }
    hidden = 0
    for action in list(parser._optionals._group_actions):
        dest = action.dest
        if dest in zppo:
            key = "zppo"
        elif dest in script_fields:
            key = "data"
        elif dest in model_fields:
            key = "model"
        elif dest in trl_fields:
            key = "common"
            if dest not in COMMON_TRAINING_FLAGS and not show_all:
                action.help, hidden = argparse.SUPPRESS, hidden + 1
        else:
            continue
        if dest == "resume_from_checkpoint":
            action.help = "true or last: the newest complete checkpoint in output_dir; or a checkpoint folder."
        parser._optionals._group_actions.remove(action)
        groups[key]._group_actions.append(action)
    order = {name: i for i, name in enumerate(zppo_fields())}  # ZPPO's new fields first, then the defaults it changes
    groups["zppo"]._group_actions.sort(key=lambda action: order[action.dest])
    parser.add_argument(
        "--config",
        metavar="YAML|NAME",
        help="A YAML file of these options, or a shipped config's "
        "name (zppo-trl --help lists them); flags win over it.",
    )
    parser.add_argument("--help-all", action="store_true", help="Show every option, TRL's and transformers' too.")
    # argparse prints groups in the order they are held: ZPPO's first, the general options (-h, --config) last
    parser._action_groups = [*groups.values(), parser._optionals]
    parser.usage = f"zppo-trl {command} [--config YAML|NAME] [--FIELD VALUE ...] [--debug] [--help | --help-all]"
    if hidden:
        parser.epilog = (
            f"{hidden} more TRL/transformers training options are not shown: zppo-trl {command} "
            "--help-all lists every one."
        )
    parser.epilog = (parser.epilog or "") + (
        f" A bare --debug (or {DEBUG_ENV}=1) shows the traceback of a configuration error; --debug VALUE is "
        "transformers' option. With no --model_name_or_path, --dataset_name, --data_files or --config, "
        "`zppo-trl train` runs the CPU demo, "
        f"whose config ({builtin_config_path()}) sets its own values."
    )
    parser.print_help()


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
    from ..data import load_source, pick_split, to_zppo_format
    from ..demo_tasks import load_demo_tasks

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
    from ..models import embedded_model_path

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
