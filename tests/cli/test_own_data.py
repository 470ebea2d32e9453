"""Bring your own data to `zppo-trl train` / `eval`: local .jsonl/.csv files and folders, column flags,
plain and GSM8K answers, empty rows, the unknown-schema error, and CPU picked by itself. Every run goes through the
CLI's parser (`main`) with the tiny model saved to a folder and no device flags."""

import csv
import json
import logging
import re

import pytest
from cli_runs import one_step, write_jsonl

from zppo_trl.cli import has_accelerator, load_prompts, main, parse_command

NO_GPU = not has_accelerator()


def test_jsonl_with_plain_answers_trains_on_cpu_by_itself(tiny_model_dir, tmp_path, capsys, caplog):
    rows = [{"question": f"What is {a} + 3?", "answer": a + 3} for a in range(6)]  # plain answers, even numbers
    rows += [{"question": "", "answer": "1"}, {"question": "What is 1 + 1?", "answer": ""}]
    data = write_jsonl(tmp_path / "mine.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="zppo_trl.data"):
        assert main(one_step(tiny_model_dir, tmp_path / "run", "--dataset_name", data)) == 0
    printed = capsys.readouterr().out
    if NO_GPU:
        assert "[zppo] no GPU found: running on CPU in float32" in printed
    assert "[zppo] data: 6 training questions from local data `mine.jsonl`" in printed
    assert "skipped 2 of 8 rows with an empty question or answer" in caplog.text and "[6, 7]" in caplog.text
    assert (tmp_path / "run" / "model.safetensors").exists()

    script, *_ = parse_command("train", ["--model_name_or_path", tiny_model_dir, "--dataset_name", data])
    dataset = load_prompts(script, "train", None)
    assert dataset["answer"] == ["3", "4", "5", "6", "7", "8"] and "solution" not in dataset.column_names
    assert dataset[0]["prompt"] == [{"role": "user", "content": "What is 0 + 3?"}]  # a chat, like the embedded data


def test_csv_with_other_column_names_via_the_flags(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["qid", "q", "a", "worked"])
        for a in range(4):
            writer.writerow([f"c{a}", f"What is {a} * 2?", a * 2, f"{a} * 2 = {a * 2}. \\boxed{{{a * 2}}}"])
    flags = ["--dataset_name", str(path), "--question_column", "q", "--answer_column", "a",
             "--solution_column", "worked", "--id_column", "qid", "--use_peft"]  # fmt: skip
    assert main(one_step(tiny_model_dir, tmp_path / "run", *flags)) == 0
    printed = capsys.readouterr().out
    assert "[zppo] teacher: the dataset's `solution` column" in printed and "4 training questions" in printed
    state = json.loads((tmp_path / "run" / "zppo_buffer_state.json").read_text())
    buffered = {entry[0] for entry in state["payload"]["buffer"]["entries"]}  # [prompt_id, accuracy, ...]
    assert buffered and buffered <= {"c0", "c1", "c2", "c3"}

    script, *_ = parse_command("train", ["--model_name_or_path", tiny_model_dir, *flags])
    dataset = load_prompts(script, "train", None)
    assert dataset["prompt_id"] == ["c0", "c1", "c2", "c3"] and dataset["answer"] == ["0", "2", "4", "6"]
    assert dataset[3]["solution"] == "3 * 2 = 6. \\boxed{6}"


def test_folder_with_train_and_test_files(tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"question": f"What is {a} + 1?", "answer": str(a + 1)} for a in range(5)])
    write_jsonl(folder / "test.jsonl", [{"question": f"What is {a} + 2?", "answer": str(a + 2)} for a in range(3)])
    assert main(one_step(tiny_model_dir, tmp_path / "run", "--dataset_name", str(folder))) == 0
    printed = capsys.readouterr().out
    assert "5 training questions from local data `data`" in printed
    assert f"evaluate it: zppo-trl eval --model_name_or_path {tmp_path / 'run'} --dataset_name {folder}" in printed
    # eval takes the folder's test split (3 questions), with the run's reward and lengths
    flags = ["--dataset_name", str(folder), "--num_samples", "2"]
    assert main(["eval", "--model_name_or_path", str(tmp_path / "run"), *flags]) == 0
    printed = capsys.readouterr().out
    assert "[zppo] eval: 3 questions x 2 samples, at most 8 new tokens, reward boxed_accuracy_reward" in printed
    assert "[zppo] plain accuracy:" in printed
    # the same files named one by one
    files = ["--data_files", f"train={folder / 'train.jsonl'}", f"test={folder / 'test.jsonl'}"]
    script, *_ = parse_command("eval", ["--model_name_or_path", tiny_model_dir, *files])
    assert len(load_prompts(script, "train", None)) == 5 and len(load_prompts(script, "test", None)) == 3


def test_gsm8k_schema_file(tiny_model_dir, tmp_path, capsys):
    rows = [
        {"question": "A shop sells 1,200 pens a day. How many in 2 days?",
         "answer": "1,200*2=<<1200*2=2400>>2,400\n#### 2,400"},
        {"question": "Tom has 3 apples and eats 1. How many are left?", "answer": "3-1=<<3-1=2>>2\n#### 2"},
        {"question": "What is 5 + 5?", "answer": "10"},  # a plain answer in a GSM8K-looking table is no error
    ]  # fmt: skip
    data = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    assert main(one_step(tiny_model_dir, tmp_path / "run", "--dataset_name", data)) == 0
    assert "[zppo] teacher: the dataset's `solution` column" in capsys.readouterr().out
    script, *_ = parse_command("train", ["--model_name_or_path", tiny_model_dir, "--dataset_name", data])
    dataset = load_prompts(script, "train", None)
    assert dataset["answer"] == ["2400", "2", "10"]
    assert dataset[0]["solution"].endswith("\\boxed{2400}.") and "<<" not in dataset[0]["solution"]
    assert dataset[2]["solution"] == ""  # no reference solution: the teacher skips it (NCQ only)


def test_unrecognised_schema_names_the_columns_and_the_flags(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """A data error is the message alone and exit status 2; --debug (or ZPPO_DEBUG=1) raises it with its traceback."""
    monkeypatch.delenv("ZPPO_DEBUG", raising=False)
    data = write_jsonl(tmp_path / "odd.jsonl", [{"text": "What is 1 + 1?", "label": "2"}])
    cases = [
        ([], ValueError, r"Columns found: \['text', 'label'\].*--question_column.*--answer_column"),
        (["--question_column", "text", "--answer_column", "gold"], ValueError,
         r"--answer_column='gold' is not a column"),
    ]  # fmt: skip
    for flags, error, message in cases:
        assert main(one_step(tiny_model_dir, tmp_path / "run", "--dataset_name", data, *flags)) == 2
        printed = capsys.readouterr().err
        assert re.search(message, printed) and "Traceback" not in printed and "--debug" in printed
        with pytest.raises(error, match=message):
            main(one_step(tiny_model_dir, tmp_path / "run", "--dataset_name", data, *flags, "--debug"))
    missing = one_step(tiny_model_dir, tmp_path / "run", "--dataset_name", str(tmp_path / "missing.jsonl"))
    assert main(missing) == 2 and "missing.jsonl': no such file" in capsys.readouterr().err
    monkeypatch.setenv("ZPPO_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        main(missing)


def test_device_flags_and_yaml_keys_win(tiny_model_dir, tmp_path, capsys):
    flags = ["--model_name_or_path", tiny_model_dir, "--use_cpu", "true", "--bf16", "false", "--dtype", "bfloat16"]
    _, training, model, given = parse_command("train", flags)
    assert "no GPU found" not in capsys.readouterr().out and model.dtype == "bfloat16"
    assert {"use_cpu", "bf16", "dtype", "model_name_or_path"} <= given
    config = tmp_path / "c.yaml"
    config.write_text("use_cpu: true\nbf16: false\n")
    _, training, _, _ = parse_command("train", ["--config", str(config), "--model_name_or_path", tiny_model_dir])
    assert training.use_cpu and not training.bf16 and "no GPU found" not in capsys.readouterr().out
    if NO_GPU:
        _, training, model, _ = parse_command("eval", ["--model_name_or_path", tiny_model_dir])
        assert training.use_cpu and not training.bf16 and not training.fp16 and model.dtype == "float32"
