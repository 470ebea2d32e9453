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

import os
import sys
import traceback

from ..precision import has_accelerator
from .parsing import (
    COMMANDS,
    CONFIG_ERRORS,
    DEBUG_ENV,
    HELP_FLAGS,
    builtin_config_path,
    device_flags,
    given_keys,
    load_prompts,
    make_parser,
    parse_command,
    print_help,
    registered_rewards,
    resume_value,
    shipped_configs,
)
from .run import prepare_evaluation, prepare_training

__all__ = [
    "builtin_config_path",
    "device_flags",
    "given_keys",
    "has_accelerator",
    "load_prompts",
    "main",
    "make_parser",
    "parse_command",
    "registered_rewards",
    "resume_value",
    "shipped_configs",
    "take_debug_flag",
]


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
    from ..plotting import plot_graduation

    print(f"[zppo] wrote {plot_graduation(rest[0])}")
    return 0
