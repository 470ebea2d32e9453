"""Helpers for tests that run the CLI: a one-step `zppo-trl train` command line, a JSON-lines data file, and the
files a Hub push of an output folder would send."""

import fnmatch
import json
import os


def one_step(model_dir, output_dir, *flags):
    """`zppo-trl train` for one tiny step: only sizes and logging, no device flags."""
    return ["train", "--model_name_or_path", model_dir, "--output_dir", str(output_dir), "--max_steps", "1",
            "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "8",
            "--activation_checkpointing", "false", "--save_strategy", "no", "--report_to", "none",
            "--disable_tqdm", "true", *flags]  # fmt: skip


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def upload_files(folder):
    """The files `Trainer.push_to_hub` would send: `upload_folder(ignore_patterns=["_*", "checkpoint-*"])`."""
    files = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), folder)
            if not any(
                fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split(os.sep)[0], p) for p in ("_*", "checkpoint-*")
            ):
                files.append(rel)
    return sorted(files)
