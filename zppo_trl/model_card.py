"""The ZPPO section of a pushed model's README.md: what was trained how, and what the buffer did.

TRL's `create_model_card` writes its card (tags, base model, citation); ZPPOTrainer appends this section to it, after
PEFT's `save_pretrained` has written its own README.md, so ours is the one that stays (see `ZPPOTrainer.save_model`).
"""

from __future__ import annotations

import dataclasses
import math

from . import __version__
from .buffer import HardQuestionBuffer

PAPER_URL = "https://arxiv.org/abs/2606.18216"
# run-specific or machine-specific fields that say nothing about the recipe
_SKIP = {"output_dir", "run_name", "hub_model_id", "hub_token", "push_to_hub", "local_rank",
         "use_cpu", "report_to", "disable_tqdm", "model_init_kwargs", "generation_batch_size", "steps_per_generation",
         "resume_from_checkpoint", "bf16", "fp16", "dataloader_num_workers", "logging_steps", "save_steps",
         "save_strategy", "eval_strategy", "eval_steps", "seed", "data_seed", "ddp_backend", "logging_strategy",
         "activation_checkpointing", "dataloader_pin_memory", "pad_to_multiple_of"}  # set by __post_init__  # fmt: skip


def config_differences(args) -> list[tuple[str, object, object]]:
    """`(field, value, default)` for the simple config fields whose value differs from the dataclass default."""
    out = []
    for f in dataclasses.fields(args):
        if f.name in _SKIP or f.name.startswith("_") or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        value = getattr(args, f.name, None)
        simple = value is None or isinstance(value, (bool, int, float, str))
        if simple and value != default and not (isinstance(value, float) and math.isnan(value)):
            out.append((f.name, value, default))
    return out


def zppo_card_section(
    buffer: HardQuestionBuffer,
    args,
    num_generations: int,
    base_model: str | None,
    dataset_name: str | None,
    figure: str | None,
) -> str:
    lines = [
        "## ZPPO training",
        "",
        f"This model was trained with [ZPPO]({PAPER_URL}) (Zone of Proximal Policy Optimization: Teacher in Prompts, "
        f"Not Gradients) using [zppo-trl](https://pypi.org/project/zppo-trl/) {__version__} on top of TRL's "
        "GRPOTrainer: hard questions are replayed from a buffer until solved without help, and the hardest get "
        "hint prompts (BCQ/NCQ candidates in the prompt, never in the gradient).",
        "",
        f"- Base model: {base_model or 'a local model'}",
        f"- Dataset: {dataset_name or 'a local dataset'}",
        f"- Teacher: {'dataset column `' + args.teacher_column + '`' if args.teacher_column else 'callable or none'}",
        "",
        "### ZPPOConfig values that differ from the defaults",
        "",
        "| field | value | default |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | `{value}` | `{default}` |" for name, value, default in config_differences(args)]
    rate = buffer.graduation_rate()
    lines += [
        "",
        "### Replay buffer",
        "",
        f"Admitted {buffer.total_admitted}, graduated {buffer.total_graduated}, evicted {buffer.total_evicted}, "
        f"still in the buffer {len(buffer)}; graduation rate {'n/a' if rate is None else f'{rate:.1%}'}.",
        "",
        f"| entry bin (correct of {num_generations}) | admitted | graduated | graduation rate |",
        "|---|---|---|---|",
    ]
    for k in sorted(buffer.admitted_by_bin):
        rate_k = buffer.graduation_rate(k)
        lines.append(f"| {k} | {buffer.admitted_by_bin[k]} | {buffer.graduated_by_bin.get(k, 0)} | "
                     f"{'n/a' if rate_k is None else f'{rate_k:.1%}'} |")  # fmt: skip
    if figure:
        lines += ["", f"![Buffer dynamics: admissions and graduations by entry bin, buffer size]({figure})"]
    return "\n".join(lines) + "\n"
