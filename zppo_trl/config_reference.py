"""Render the ZPPOConfig reference (docs/config_reference.md) from the dataclass's own help strings.

    python -m zppo_trl.config_reference > docs/config_reference.md

A test checks that the committed file equals this output, so the docs cannot go stale.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from trl import GRPOConfig

from .config import ZPPOConfig


def render() -> str:
    base = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    # resolved hints, not `field.type`: HfArgumentParser rewrites `field.type` of Optional fields in place
    hints = typing.get_type_hints(ZPPOConfig)
    lines = [
        "# ZPPOConfig reference",
        "",
        "Generated from the dataclass help strings by `python -m zppo_trl.config_reference`; do not edit by hand.",
        "Every `trl.GRPOConfig` / `transformers.TrainingArguments` field works as in TRL; below are the fields ZPPO",
        "adds or whose default it changes. Each is also a `zppo-trl train` flag and a YAML key.",
        "",
        "| field | type | default | what it does |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(ZPPOConfig):
        own = f.name not in base
        changed = not own and f.default != base[f.name].default
        if own or changed:
            kind = _type_name(hints[f.name]).replace("|", "\\|")
            help_text = f.metadata.get("help", "").replace("|", "\\|")
            lines.append(f"| `{f.name}` | `{kind}` | `{f.default!r}` | {help_text} |")
    lines += ["", *UPDATE_RECIPE_NOTE]
    return "\n".join(lines) + "\n"


UPDATE_RECIPE_NOTE = [
    "## The update recipe: TRL's defaults, the paper's on request",
    "",
    "ZPPOConfig keeps TRL's values for the optimizer fields it inherits, so that a TRL user who changes only the class",
    "names gets the same optimizer. They differ from the paper's (Tab. 8), and the trainer says so once, at",
    "construction, naming each difference:",
    "",
    "| field | TRL (kept) | paper |",
    "|---|---|---|",
    "| updates per rollout (`steps_per_generation * num_iterations / gradient_accumulation_steps`) | 1: the PPO "
    "ratio is exactly 1 and the clip never acts | 4: old log-probs kept, the (0.20, 0.28) clip acts |",
    "| `lr_scheduler_type` | `linear` (decays to 0) | `constant` |",
    "| `weight_decay` | `0.0` | `0.1` |",
    "",
    "For the paper's recipe set `steps_per_generation=4 * gradient_accumulation_steps` (4 optimizer updates per",
    "rollout step: the generation batch holds 4 updates' worth of prompts), `lr_scheduler_type='constant'` and",
    "`weight_decay=0.1`; `examples/configs/paper_recipe.yaml` does. The benchmarks and the transfer gate of this",
    "repository run with it.",
]


def _type_name(hint) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " | ".join(_type_name(h) for h in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


if __name__ == "__main__":
    print(render(), end="")
