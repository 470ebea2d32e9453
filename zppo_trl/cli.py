"""`zppo-trl`: train and evaluate with ZPPO from the command line.

    zppo-trl train                                   # the embedded CPU demo (SmolLM2-135M + LoRA, shipped problems)
    zppo-trl train --config my.yaml --max_steps 50   # YAML and flags share one schema; flags win
    zppo-trl train --config qwen2.5_gsm8k_lora       # a shipped example config, by name (see `zppo-trl --help`)
    zppo-trl train --dataset_name mine.jsonl --use_peft   # your own data: a .json/.jsonl/.csv/.parquet file or folder
    zppo-trl train --dataset_name mine.csv --question_column q --answer_column a --solution_column worked
    zppo-trl train --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name openai/gsm8k \
        --dataset_config main --use_peft
    zppo-trl train --config my.yaml --resume_from_checkpoint last   # or true, or a checkpoint folder
    zppo-trl eval --model_name_or_path outputs/zppo-smollm2-demo    # an adapter folder or a full model
    zppo-trl plot outputs/zppo-smollm2-demo          # writes RUN_DIR/zppo_graduation.png from the run's logs
    zppo-trl train --help                            # ZPPO's options first; --help-all adds every TRL option

Built on TRL's `TrlParser` like `trl grpo`: every ZPPOConfig / GRPOConfig / TrainingArguments field and every
ModelConfig (PEFT/LoRA, quantization) field is a flag and a YAML key.
Precision follows the device unless --bf16 / --fp16 / --use_cpu / --dtype are given (zppo_trl/precision.py): bf16 on
a GPU that computes it natively, fp16 on one that does not (T4, V100), fp32 on CPU; a frozen base (LoRA, QLoRA) is
loaded in that 16-bit format, weights that train in float32.
`eval` scores with the correctness reward, instruction and completion length the run trained with (`zppo_run.json`
in the run folder; it may name a registered reward only, never code to import); flags win.
A configuration or data error prints its message and exits with status 2; --debug (or ZPPO_DEBUG=1) shows the
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import resources

import yaml
from trl import GRPOConfig, ModelConfig, ScriptArguments, TrlParser

from .config import ZPPOConfig
from .precision import has_accelerator, model_dtype_name, pick_precision, precision_of

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

    from . import rewards

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
# main: errors of the configuration or data as a message and status 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, debug = take_debug_flag(argv)
    debug = debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"zppo-trl: unknown command {argv[0]!r}; choose one of {list(COMMANDS)}.", file=sys.stderr)
        print(__doc__.strip())
        print(f"\nBuilt-in CPU demo config: {builtin_config_path()}")
        print("Example configs, shipped with the package (pass --config NAME):")
        for name, path in shipped_configs().items():
            print(f"  {name:<22} {path}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "plot":
            return plot(rest)
        if set(HELP_FLAGS) & set(rest):
            print_help(command, rest, show_all="--help-all" in rest)
            return 0
        script_args, training_args, model_args, given = parse_command(command, rest)
        if command == "train":
            run = prepare_training(script_args, training_args, model_args)
        else:
            run = prepare_evaluation(script_args, training_args, model_args, given)
    except CONFIG_ERRORS as err:
        if debug:
            raise
        report_error(command, err)
        return 2
    return run()  # training or evaluation itself: any error keeps its traceback


def take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """`(argv without it, given)` for a bare `--debug`. `--debug VALUE` is transformers' TrainingArguments `debug`
    option (e.g. `underflow_overflow`) and is left in place."""
    bare = [i for i, a in enumerate(argv) if a == "--debug" and (i + 1 == len(argv) or argv[i + 1].startswith("-"))]
    return [a for i, a in enumerate(argv) if i not in bare], bool(bare)


def report_error(command: str, err: BaseException) -> None:
    """The message alone, on stderr: configuration errors are written for the user, their frames are not."""
    message = str(err) or type(err).__name__
    if isinstance(err, ImportError) and not str(err):
        message = traceback.format_exception_only(err)[-1].strip()
    print(f"zppo-trl {command}: error: {message}", file=sys.stderr)
    print(f"(rerun with --debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)


def plot(rest: list[str]) -> int:
    if len(rest) != 1 or rest[0].startswith("-"):
        print("usage: zppo-trl plot RUN_DIR   (a ZPPOTrainer output_dir)", file=sys.stderr)
        return 2
    from .plotting import plot_graduation

    print(f"[zppo] wrote {plot_graduation(rest[0])}")
    return 0


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


def prepare_training(script_args: ZPPOScriptArguments, training_args: ZPPOConfig, model_args: ModelConfig):
    """Load the data, rewards and model and build the trainer (configuration and data errors surface here); returns
    the function that trains, saves and reports."""
    from trl import get_peft_config, get_quantization_config

    from .callbacks import BufferReportCallback
    from .data import has_worked_solutions, source_label
    from .trainer import ZPPOTrainer

    check_resume(training_args)
    dataset = load_prompts(script_args, script_args.dataset_train_split, script_args.max_train_prompts)
    label = source_label(script_args.dataset_name, script_args.data_files)
    print(f"[zppo] data: {len(dataset)} training questions from {label}")
    no_teacher = training_args.teacher_column is None and training_args.teacher_model is None
    if no_teacher and has_worked_solutions(dataset):
        training_args.teacher_column = "solution"
        print("[zppo] teacher: the dataset's `solution` column (pass --teacher_column to choose another)")
    elif no_teacher and "solution" in dataset.column_names:
        print(
            "[zppo] teacher: none. The `solution` column holds the gold answers (TRL's shape), not worked "
            "solutions, so BCQ is off and only NCQ hint prompts are built (--teacher_model or --teacher_column to "
            "add one)"
        )
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

    def run() -> int:
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

    return run


def check_resume(training_args) -> None:
    """A resume with nothing to resume from is a configuration error: found before the model loads."""
    from .round.state import last_complete_checkpoint

    resume, output_dir = training_args.resume_from_checkpoint, training_args.output_dir
    if resume is True and last_complete_checkpoint(output_dir) is None:
        raise ValueError(
            f"--resume_from_checkpoint {resume}: {output_dir} holds no complete checkpoint. Check --output_dir, name "
            "a checkpoint folder, or leave the flag out to start afresh."
        )
    if isinstance(resume, str) and not os.path.isdir(resume):
        raise FileNotFoundError(f"--resume_from_checkpoint {resume!r}: no such checkpoint folder.")


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
    # a dotted path to a registered function is recorded by its registered name: `eval` takes only those from a record
    names = {id(func): name for name, func in registered_rewards().items()}
    specs = [names.get(id(func), spec) for spec, func in zip(script_args.reward_funcs, reward_funcs)]
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
    """Take the run's settings for every setting not given on the command line; returns the names taken.

    A run folder may come from anyone (a download), so its record never names code to run: a reward is taken from it
    only when it is a registered name (`registered_rewards`); a dotted import path must be given as --reward_funcs."""
    taken = []
    reward = record.get("correctness_reward")
    if reward and "reward_funcs" not in given:
        if not isinstance(reward, str) or reward not in registered_rewards():
            raise ValueError(
                f"the run's {RUN_FILE} names the reward {reward!r}, which is not a registered reward "
                f"({sorted(registered_rewards())}). zppo-trl eval imports no code named by a run folder: pass "
                f"--reward_funcs {reward if isinstance(reward, str) else 'NAME'} to import it yourself, or a "
                "registered name."
            )
        script_args.reward_funcs, training_args.correctness_reward = [reward], None
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


def prepare_evaluation(script_args, training_args: ZPPOConfig, model_args: ModelConfig, given: set[str] = frozenset()):
    """Read the run record, load the data, reward and model (configuration and data errors surface here); returns the
    function that samples and scores."""
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
    print(
        f"[zppo] eval: {len(dataset)} questions x {script_args.num_samples} samples, at most "
        f"{training_args.max_completion_length} new tokens, reward {spec}, on {device} ({model_args.dtype})"
        + ("; --max_eval_prompts 0 for all" if len(dataset) == script_args.max_eval_prompts else "")
    )

    def run() -> int:
        start = time.perf_counter()
        result = plain_accuracy(
            model,
            tokenizer,
            dataset,
            num_samples=script_args.num_samples,
            max_new_tokens=training_args.max_completion_length,
            instruction=training_args.answer_format_instruction,
            sampler=training_sampler(training_args),
            seed=training_args.seed,
            reward=reward,
            progress=True,
        )
        print(
            f"[zppo] plain accuracy: {result['accuracy']:.3f} over {result['num_questions']} questions "
            f"x {script_args.num_samples} samples in {time.perf_counter() - start:.1f} s"
        )
        return 0

    return run


if __name__ == "__main__":
    raise SystemExit(main())
