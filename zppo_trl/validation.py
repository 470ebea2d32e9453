"""Checks that run when a `ZPPOTrainer` is built, before any generation: each fault raises (or warns) naming the
field, the value and the fix. Where TRL has its own check for the same fault, TRL's wording comes first, so code that
matches TRL's messages keeps working, then ZPPO's hint."""

from __future__ import annotations

import importlib.util
import inspect
import warnings

import torch
from datasets import Dataset, IterableDataset

from .config import ZPPOConfig

# reward-function parameters TRL or ZPPO fill in; any other required parameter must be a dataset column
TRL_REWARD_KWARGS = {
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
    "kwargs",
    "args",
    "prompt_id",
    "zppo_kind",
}
# dataset columns that make a batch multimodal in TRL (hint prompts are text-only)
MULTIMODAL_COLUMNS = ("image", "images", "video", "videos", "audio")


def default_args(model) -> ZPPOConfig:
    """The config TRL would make for `args=None`: output folder named after the model."""
    name = model if isinstance(model, str) else model.config._name_or_path
    return ZPPOConfig(f"{str(name).split('/')[-1] or 'model'}-ZPPO")


def check_trainer_arguments(args, reward_funcs, train_dataset) -> None:
    """Faults of the trainer's arguments that TRL would only find later (or not at all)."""
    if not isinstance(args, ZPPOConfig):
        raise TypeError(
            f"`args` must be a ZPPOConfig, got {type(args).__name__}. Build it with ZPPOConfig(...) and the same "
            "arguments: every GRPOConfig field is accepted."
        )
    reward_list = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    if not [f for f in reward_list if f is not None]:
        raise ValueError(
            "No reward source provided. Pass `reward_funcs`, or an `environment_factory` whose environment defines "
            "a `get_reward` method. (ZPPO needs a reward function that tells correct rollouts from wrong ones, e.g. "
            "reward_funcs=zppo_trl.rewards.boxed_accuracy_reward.)"
        )
    if train_dataset is None:
        raise ValueError(
            "`train_dataset` is required unless an `environment_factory` is provided. (ZPPO replays and hints "
            "dataset questions: pass a datasets.Dataset or IterableDataset with a `prompt` column.)"
        )
    if args.remove_unused_columns:
        raise ValueError(
            "`remove_unused_columns=True` would drop the answer and teacher columns ZPPO needs. Set "
            "remove_unused_columns=False (the GRPOConfig default)."
        )
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "`use_vllm=True` but vLLM is not installed (it needs a CUDA machine): pip install 'zppo-trl[vllm]', "
            "or set use_vllm=False. With vLLM, ZPPO's hint prompts go through the same vLLM path as plain ones."
        )
    check_dataset(train_dataset, args, reward_list)


def dataset_columns(dataset) -> list[str] | None:
    """Column names of a map-style or streaming dataset; None when a stream does not declare them."""
    names = dataset.column_names
    if names is None and isinstance(dataset, IterableDataset):
        first = next(iter(dataset), None)  # a stream without declared features: look at its first row
        names = None if first is None else list(first)
    return names


def check_dataset(dataset, args: ZPPOConfig, reward_funcs: list) -> None:
    """The training set can be replayed and hinted: a `prompt` column, text only, the columns the teacher and reward
    functions read, and unique `prompt_id`s when it has that column (map-style datasets: a stream is not scanned)."""
    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise TypeError(f"`train_dataset` must be a `Dataset` or `IterableDataset`, got `{type(dataset).__name__}`.")
    columns = dataset_columns(dataset)
    if columns is None:
        return
    if "prompt" not in columns:
        raise ValueError(
            f"`train_dataset` has no `prompt` column (columns: {columns}). Rename the question column to `prompt`, "
            "e.g. dataset.rename_column('question', 'prompt')."
        )
    if "zppo_kind" in columns:
        raise ValueError("`train_dataset` has a `zppo_kind` column, which ZPPO sets itself. Rename or drop it.")
    multimodal = [c for c in MULTIMODAL_COLUMNS if c in columns]
    if multimodal:
        raise ValueError(
            f"`train_dataset` has multimodal column(s) {multimodal}: ZPPO's hint prompts are text-only. Drop the "
            "column(s), or train with trl.GRPOTrainer."
        )
    if args.teacher_column is not None and args.teacher_column not in columns:
        raise ValueError(
            f"`teacher_column={args.teacher_column!r}` is not a column of train_dataset (columns: {columns}). "
            "Name the column holding reference solutions, or set teacher_column=None."
        )
    for func in reward_funcs:
        if callable(func) and not isinstance(func, torch.nn.Module):
            missing = [p for p in _required_params(func) if p not in columns and p not in TRL_REWARD_KWARGS]
            if missing:
                raise ValueError(
                    f"reward function {getattr(func, '__name__', func)!r} needs dataset column(s) {missing}, which "
                    f"train_dataset lacks (columns: {columns}). Add the column(s) or rename them."
                )
    if "prompt_id" in columns and isinstance(dataset, Dataset):
        _check_prompt_ids(dataset["prompt_id"])
    check_rows_saveable(dataset)
    if "prompt_id" not in columns and isinstance(dataset, Dataset):
        warn_if_duplicate_questions(dataset)


def check_rows_saveable(dataset) -> None:
    """The buffer keeps its questions' dataset rows in checkpoints, as JSON: a column JSON cannot hold (a timestamp,
    bytes, an image) would fail the first checkpoint, possibly hours in. Found now, from the first row (an Arrow
    column has one type), naming the column and the fix."""
    import json

    first = next(iter(dataset), None)
    if first is None:
        return
    bad = []
    for name, value in first.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            bad.append(f"`{name}` ({type(value).__name__})")
    if bad:
        raise ValueError(
            f"train_dataset column(s) {', '.join(bad)} cannot be saved as JSON, which ZPPO's checkpoints need (the "
            "replay buffer keeps its questions' rows to roll them out again). Drop the column(s) "
            "(dataset.remove_columns([...])) or turn them into strings (dataset.map(lambda r: {name: str(r[name])}))."
        )


def warn_if_duplicate_questions(dataset) -> None:
    """A dataset without `prompt_id` identifies a question by its prompt and answer (`replay.question_id`): copies of
    a question are one question to the buffer. Say how many rows repeat one, and the first ids; in a round, their
    visits are merged into one (`hints.merge_visits`)."""
    from .buffers.replay import question_id

    seen, repeats = set(), []
    for row in dataset.select_columns([c for c in ("prompt", "answer") if c in dataset.column_names]):
        pid = question_id(row)
        if pid in seen:
            repeats.append(pid)
        seen.add(pid)
    if repeats:
        warnings.warn(
            f"train_dataset holds {len(repeats)} row(s) that repeat a question (same prompt and answer), e.g. "
            f"{list(dict.fromkeys(repeats))[:5]}. ZPPO counts a question's visits in one round as one visit; to "
            "train on them as different questions, give the dataset a unique `prompt_id` column.",
            stacklevel=4,
        )


def _check_prompt_ids(ids: list) -> None:
    bad = next((x for x in ids if isinstance(x, bool) or not isinstance(x, (int, str))), None)
    if bad is not None:
        raise ValueError(
            f"`prompt_id` values must be int or str, got {type(bad).__name__} ({bad!r}). Use a unique int or "
            "string id per question, or drop the column to identify questions by their text and answer."
        )
    seen, dupes = set(), []
    for x in ids:
        if x in seen and len(dupes) < 5:
            dupes.append(x)
        seen.add(x)
    if dupes:
        raise ValueError(
            f"`prompt_id` has duplicates, e.g. {dupes}: each question needs a unique id (the buffer is keyed by "
            "it). Deduplicate the dataset or drop the column to identify questions by their text and answer."
        )


def _required_params(func) -> list[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]


def resolve_correctness(choice: str | int | None, names: list[str]) -> int:
    """Index of the reward function named by `correctness_reward` (default: the first)."""
    if choice is None:
        return 0
    if isinstance(choice, int) or (isinstance(choice, str) and choice.isdigit()):
        index = int(choice)
        if 0 <= index < len(names):
            return index
    elif choice in names:
        return names.index(choice)
    raise ValueError(
        f"`correctness_reward={choice!r}` names no reward function; the reward functions are {names} (indices "
        f"0..{len(names) - 1}). Use one of those names or indices."
    )


def check_vllm_lengths(args: ZPPOConfig, template_overhead: int) -> None:
    """With vLLM, a hint prompt (at most `hint_prompt_max_tokens` plus the chat template's tokens) and its completion
    must fit the engine's context, or the hint pass fails mid-run."""
    if not args.use_vllm or args.vllm_max_model_length is None:
        return
    needed = args.hint_prompt_max_tokens + template_overhead + args.max_completion_length
    if needed > args.vllm_max_model_length:
        raise ValueError(
            f"`vllm_max_model_length={args.vllm_max_model_length}` is too short for a hint prompt and its completion: "
            f"hint_prompt_max_tokens ({args.hint_prompt_max_tokens}) + chat template ({template_overhead}) + "
            f"max_completion_length ({args.max_completion_length}) = {needed}. Raise vllm_max_model_length or lower "
            "hint_prompt_max_tokens."
        )


def warn_if_checkpoints_split_rounds(args: ZPPOConfig) -> None:
    """TRL does not checkpoint a round's buffered rollouts: a checkpoint taken mid-round resumes by generating a new
    round, so the resumed run differs from an uninterrupted one. Warn when `save_steps` allows that."""
    micro_steps = args.steps_per_generation * args.num_iterations  # micro-steps per round
    if args.save_strategy != "steps" or (isinstance(args.save_steps, float) and args.save_steps < 1):
        return
    ga = args.gradient_accumulation_steps
    if micro_steps % ga != 0 or int(args.save_steps) % (micro_steps // ga) != 0:
        warnings.warn(
            f"`save_steps={args.save_steps}` is not a multiple of the {micro_steps / ga:g} optimizer steps of one "
            "generation round (steps_per_generation * num_iterations / gradient_accumulation_steps): a resumed run "
            "will not repeat an uninterrupted one exactly. Align save_steps to rounds.",
            stacklevel=4,
        )


def warn_if_advantage_options_ignored(args: ZPPOConfig) -> None:
    """`advantage_estimator="zppo"` computes the paper's advantages itself: TRL's scaling options do not apply."""
    ignored = {
        "scale_rewards": (args.scale_rewards, "group"),
        "multi_objective_aggregation": (args.multi_objective_aggregation, "sum_then_normalize"),
    }
    changed = [f"{name}={value!r}" for name, (value, default) in ignored.items() if value != default]
    if args.advantage_estimator == "zppo" and changed:
        warnings.warn(
            f"{', '.join(changed)} is ignored with advantage_estimator='zppo' (the paper's Norm w/o Zero, which "
            "sums the weighted rewards and normalises over non-trivial groups). Set advantage_estimator='grpo' to "
            "use TRL's estimator with these options, or leave them at their defaults.",
            stacklevel=4,
        )


# The paper's update recipe (Tab. 8): 4 optimizer updates per rollout step (so old log-probs are kept and the
# (0.20, 0.28) clip acts), a constant learning rate, weight decay 0.1. ZPPOConfig keeps TRL's values for these
# TrainingArguments/GRPOConfig fields, so that switching the class names changes no optimizer setting silently.
PAPER_UPDATES_PER_ROLLOUT = 4
PAPER_UPDATE_RECIPE = {"lr_scheduler_type": "constant", "weight_decay": 0.1, "max_grad_norm": 1.0}


def updates_per_rollout(args) -> float:
    """Optimizer updates per generation round: `steps_per_generation * num_iterations / gradient_accumulation_steps`.
    At most 1, every rollout is trained by one update with the weights that sampled it: TRL keeps no old
    log-probs, the PPO ratio is exactly 1 and the clip never acts."""
    return args.steps_per_generation * args.num_iterations / args.gradient_accumulation_steps


def paper_recipe_differences(args) -> list[str]:
    """The update settings of `args` that differ from the paper's, as `name=value (paper: ...)` strings."""
    out = []
    if updates_per_rollout(args) != PAPER_UPDATES_PER_ROLLOUT:
        out.append(
            f"{updates_per_rollout(args):g} optimizer update(s) per rollout (steps_per_generation="
            f"{args.steps_per_generation}, num_iterations={args.num_iterations}, gradient_accumulation_steps="
            f"{args.gradient_accumulation_steps}; paper: 4, i.e. steps_per_generation=4 * gradient_accumulation_steps)"
        )
    scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if scheduler != PAPER_UPDATE_RECIPE["lr_scheduler_type"]:
        out.append(f"lr_scheduler_type={scheduler!r} (paper: 'constant')")
    if args.weight_decay != PAPER_UPDATE_RECIPE["weight_decay"]:
        out.append(f"weight_decay={args.weight_decay} (paper: 0.1)")
    return out


def warn_if_not_paper_recipe(args) -> None:
    """Say, once, where the optimizer differs from the paper's update recipe: ZPPOConfig keeps TRL's defaults for
    these fields (a drop-in for GRPOConfig), and with one update per rollout the clip range never acts."""
    differences = paper_recipe_differences(args)
    if not differences:
        return
    inert = (
        " With one update per rollout the PPO ratio is exactly 1 and the clip never acts."
        if updates_per_rollout(args) <= 1
        else ""
    )
    warnings.warn(
        "ZPPO's optimizer settings are TRL's, not the paper's (Tab. 8): "
        + "; ".join(differences)
        + "."
        + inert
        + " For the paper's recipe set steps_per_generation=4 * gradient_accumulation_steps, lr_scheduler_type="
        "'constant', weight_decay=0.1 (as examples/configs/paper_recipe.yaml does).",
        stacklevel=4,
    )


def warn_if_no_teacher(args, teacher) -> None:
    """BCQ, ZPPO's core, needs a correct solution per hard question: without a teacher only NCQ prompts are built.
    Said once, at construction, so that a run does not silently train the weaker half of the method."""
    if teacher is None and args.hint_type == "bcq_ncq" and args.use_bcq and args.hint_ratio > 0:
        warnings.warn(
            "ZPPO has no teacher: BCQ prompts (a correct solution beside a wrong rollout) are off and only NCQ prompts "
            "(the wrong answers) are built. Set teacher_column (a column of worked solutions), teacher_model, or pass "
            "teacher= to the trainer; use_bcq=False says that NCQ only is meant.",
            stacklevel=4,
        )
