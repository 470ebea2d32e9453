"""`zppo-trl` as a ZPPO user meets it: `--help` with ZPPO's options first and the library's
defaults, the example configs shipped and named, `--resume_from_checkpoint true|last|PATH`, `eval` that runs no
code named by a run folder, and a TRL-shaped dataset (`prompt` + gold `solution`) scored by
`trl.rewards.accuracy_reward` through the CLI and the API. Runs use the tiny model saved to a folder."""

import json
import os
import re
import sys

from cli_runs import one_step, write_jsonl
from datasets import Dataset
from paths import ROOT

from zppo_trl.cli import main, parse_command, registered_rewards, resume_value, shipped_configs, take_debug_flag


def default_shown(text: str, flag: str) -> str:
    """The `(default: X)` argparse prints for `--flag` in a help text."""
    block = re.search(rf"^  --{flag}[ ,].*?\(default: ([^)]*)\)", text, flags=re.S | re.M)
    assert block, f"--{flag} is not in the help"
    return block.group(1)


def test_train_help_shows_zppo_options_first_with_the_library_defaults(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    # the CPU demo's config (replay 2.0, hint 1.0, threshold 0.25, 32 tokens, LoRA) applies only when the demo runs
    shown = {flag: default_shown(text, flag) for flag in
             ("replay_ratio", "hint_ratio", "hard_threshold", "candidate_max_tokens", "use_peft")}  # fmt: skip
    assert shown == {"replay_ratio": "0.25", "hint_ratio": "0.25", "hard_threshold": "0.5",
                     "candidate_max_tokens": "512", "use_peft": "False"}  # fmt: skip
    sections = [text.index(title) for title in ("ZPPO options", "data and rewards", "model, LoRA", "training (TRL")]
    assert sections == sorted(sections) and text.index("--replay_ratio") < text.index("--learning_rate")
    assert "--lr_scheduler_type" not in text and "--help-all lists every one" in text
    assert len(text.splitlines()) < 500

    assert main(["train", "--help-all"]) == 0
    everything = capsys.readouterr().out
    assert "--lr_scheduler_type" in everything and everything.index("ZPPO options") < everything.index(
        "--lr_scheduler"
    )
    # a config named with --help shows its values: that is the run it describes
    assert main(["train", "--config", "cpu_demo", "--help"]) == 0
    assert default_shown(capsys.readouterr().out, "replay_ratio") == "2.0"


def test_a_bare_debug_is_ours_and_debug_with_a_value_is_transformers():
    assert take_debug_flag(["train", "--max_steps", "1", "--debug"]) == (["train", "--max_steps", "1"], True)
    assert take_debug_flag(["train", "--debug", "--max_steps", "1"]) == (["train", "--max_steps", "1"], True)
    # TrainingArguments' own `debug` option takes a value: left for the parser
    assert take_debug_flag(["train", "--debug", "underflow_overflow"]) == (["train", "--debug", "underflow_overflow"],
                                                                          False)  # fmt: skip


def test_example_configs_ship_with_the_package_and_are_named_by_the_cli(capsys):
    examples = sorted(f.removesuffix(".yaml") for f in os.listdir(os.path.join(ROOT, "examples", "configs")))
    shipped = shipped_configs()
    assert sorted(shipped) == examples
    for name, path in shipped.items():
        with open(os.path.join(ROOT, "examples", "configs", f"{name}.yaml")) as a, open(path) as b:
            assert a.read() == b.read(), f"zppo_trl/configs/{name}.yaml differs from examples/configs/{name}.yaml"
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(path in listing for path in shipped.values())
    # by name; GPU-only settings overridden by flags so the config parses on CPU
    _, training, model, given = parse_command("train", ["--config", "qwen2.5_gsm8k_lora", "--load_in_4bit", "false"])
    assert model.model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and training.max_completion_length == 512
    assert "bf16" not in given and "dtype" not in given  # precision is left to the device


def test_resume_from_checkpoint_true_last_or_a_path(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    assert [resume_value(v) for v in ("true", "last", "Last", "false", "none", None, True, "out/checkpoint-2")] == [
        True, True, True, None, None, None, True, "out/checkpoint-2"
    ]  # fmt: skip
    run = tmp_path / "run"
    _, training, _, _ = parse_command("train", one_step(tiny_model_dir, run, "--resume_from_checkpoint", "last")[1:])
    assert training.resume_from_checkpoint is True

    # nothing to resume from: a configuration error, said before anything loads
    assert main(one_step(tiny_model_dir, run, "--resume_from_checkpoint", "true")) == 2
    assert "holds no complete checkpoint" in capsys.readouterr().err
    saving = ["--save_strategy", "steps", "--save_steps", "1"]
    assert main([*one_step(tiny_model_dir, run), *saving]) == 0
    assert (run / "checkpoint-1").is_dir()
    capsys.readouterr()
    assert main([*one_step(tiny_model_dir, run), *saving, "--max_steps", "2", "--resume_from_checkpoint", "last"]) == 0
    printed = capsys.readouterr().out
    assert "[zppo] step 2:" in printed and "[zppo] step 1:" not in printed  # step 1 came from the checkpoint
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 2


def test_eval_imports_no_code_named_by_a_run_folder(tiny_model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    import shutil

    folder = tmp_path / "downloaded-run"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "zppo_run.json").write_text(json.dumps({"reward_funcs": ["planted.reward"],
                                                      "correctness_reward": "planted.reward"}))  # fmt: skip
    work = tmp_path / "work"  # the working directory, first on sys.path for dotted rewards
    work.mkdir()
    marker = tmp_path / "imported"
    (work / "planted.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef reward(completions, **kw):\n"
                                     "    return [0.0] * len(completions)\n")  # fmt: skip
    monkeypatch.chdir(work)
    monkeypatch.delitem(sys.modules, "planted", raising=False)
    flags = ["--max_eval_prompts", "2", "--num_samples", "1", "--max_completion_length", "4"]
    assert main(["eval", "--model_name_or_path", str(folder), *flags]) == 2
    err = capsys.readouterr().err
    assert "'planted.reward', which is not a registered reward" in err and "--reward_funcs planted.reward" in err
    assert not marker.exists() and "planted" not in sys.modules
    # named on the command line, it is the user's choice and is imported
    assert main(["eval", "--model_name_or_path", str(folder), *flags, "--reward_funcs", "planted.reward"]) == 0
    assert marker.exists()


def trl_shaped_rows(n: int) -> list[dict]:
    """TRL's shape: `prompt` as chat messages and `solution` holding the gold answer (what accuracy_reward reads)."""
    return [{"prompt": [{"role": "user", "content": f"What is {a} + 3?"}], "solution": str(a + 3)} for a in range(n)]


def test_a_trl_shaped_dataset_trains_through_the_cli_with_trls_accuracy_reward(
    tiny_model_dir,  # noqa: F811
    tmp_path,
    capsys,
):
    data = write_jsonl(tmp_path / "trl.jsonl", trl_shaped_rows(6))
    run = tmp_path / "run"
    flags = ["--dataset_name", data, "--reward_funcs", "trl.rewards.accuracy_reward"]
    assert main([*one_step(tiny_model_dir, run), *flags]) == 0
    printed = capsys.readouterr().out
    assert "[zppo] data: 6 training questions" in printed
    assert "[zppo] teacher: none. The `solution` column holds the gold answers" in printed
    state = json.loads((run / "zppo_buffer_state.json").read_text())["payload"]
    assert state["buffer"]["total_admitted"] > 0  # scored by accuracy_reward: a random model solves none
    # the record names the registered name, so `eval` can score with it from the folder alone
    assert json.loads((run / "zppo_run.json").read_text())["correctness_reward"] == "accuracy_reward"
    assert registered_rewards()["accuracy_reward"].__module__.startswith("trl.rewards")


def test_a_trl_shaped_dataset_trains_through_the_api_with_trls_accuracy_reward(make_trainer):
    from trl.rewards import accuracy_reward

    from zppo_trl.data import has_worked_solutions, to_zppo_format

    dataset = Dataset.from_list(trl_shaped_rows(8))
    converted = to_zppo_format(dataset)  # the gold stays in `solution` for TRL's rewards; `answer` is a copy
    assert converted["solution"] == converted["answer"] == [str(a + 3) for a in range(8)]
    assert not has_worked_solutions(converted)
    assert accuracy_reward([[{"content": "\\boxed{3}"}], [{"content": "4"}]], solution=["3", "3"]) == [1.0, 0.0]
    for data in (dataset, converted):  # as TRL's users pass it, and converted
        trainer = make_trainer(accuracy_reward, dataset=data, max_steps=1)
        trainer.train()
        assert trainer.reward_func_names == ["accuracy_reward"]
        assert trainer.replay_buffer.total_admitted > 0  # scored: every rollout of the random model is wrong
