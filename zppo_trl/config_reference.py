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
    return "\n".join(lines) + "\n"


def _type_name(hint) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " | ".join(_type_name(h) for h in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


if __name__ == "__main__":
    print(render(), end="")
