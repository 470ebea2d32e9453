"""What `zppo-trl train` and `zppo-trl eval` run: data, rewards and model prepared (configuration and data errors
surface here, before anything is trained or sampled), then the run itself; the run record (`zppo_run.json`) that
lets `eval` score as the run trained."""

from __future__ import annotations

import json
import os
import time

from trl import ModelConfig

from ..config import ZPPOConfig
from ..precision import has_accelerator
from .parsing import (
    _COLUMN_FIELDS,
    _RUN_FIELDS,
    RUN_FILE,
    ZPPOScriptArguments,
    correctness_spec,
    load_prompts,
    load_reward_funcs,
    registered_rewards,
    resolve_model_path,
)

# --------------------------------------------------------------------------------------------------------------------
# train


def prepare_training(script_args: ZPPOScriptArguments, training_args: ZPPOConfig, model_args: ModelConfig):
    """Load the data, rewards and model and build the trainer (configuration and data errors surface here); returns
    the function that trains, saves and reports."""
    from trl import get_peft_config, get_quantization_config

    from ..callbacks import BufferReportCallback
    from ..data import has_worked_solutions, source_label
    from ..trainer import ZPPOTrainer

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
    from ..round.state import last_complete_checkpoint

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

    from ..models import local_weights_for

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

    from ..evaluation import plain_accuracy, training_sampler

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
