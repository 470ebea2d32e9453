"""Record what every method does, round by round, on the tiny model: the buffers, the round record (new, replayed
and experience ids, the hint prompts as the student saw them), the advantages of the round's rows and the logged
losses and zppo/* metrics. tests/round/test_pinned_behaviour.py compares a fresh recording with the committed one
(tests/fixtures/pinned_rounds.json), so a change to the trainer's structure that changes what is trained fails.

    python tests/pinned_rounds.py tests/fixtures/pinned_rounds.json   # re-record (only for a change of behaviour)
"""

import json
import math
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
from transformers import TrainerCallback

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

# the graduation benchmark's methods (examples/graduation_benchmark.py), at the tiny model's size
METHODS = {
    "grpo": dict(replay_ratio=0.0, hint_ratio=0.0),
    "grpo_replay": dict(replay_ratio=0.5, hint_ratio=0.0),
    "hints_only": dict(replay_ratio=0.0, hint_ratio=0.5),
    "zppo": dict(replay_ratio=0.5, hint_ratio=0.5),
    "hint": dict(replay_ratio=0.5, hint_ratio=0.5, hint_type="hint"),
    "prefix": dict(replay_ratio=0.5, hint_ratio=0.5, hint_type="prefix"),
    "teacher_response": dict(replay_ratio=0.5, hint_ratio=0.5, hint_type="teacher_response"),
    "grpo_replay_exclude": dict(replay_ratio=0.5, hint_ratio=0.0, exclude_zero_variance_groups=True),
    "zppo_exclude": dict(replay_ratio=0.5, hint_ratio=0.5, exclude_zero_variance_groups=True),
    "zppo_grpo_loss_exclude": dict(
        replay_ratio=0.5, hint_ratio=0.5, exclude_zero_variance_groups=True, loss_type="grpo"
    ),
    "exgrpo": dict(replay_ratio=0.0, hint_ratio=0.0, experience_ratio=0.5, experience_start_accuracy=0.0),
    "retrospective": dict(replay_ratio=0.5, hint_ratio=0.0, retrospective_ratio=0.5),
    "zppo_exgrpo_retrospective": dict(
        replay_ratio=0.5, hint_ratio=0.5, experience_ratio=0.5, experience_start_accuracy=0.0, retrospective_ratio=0.5
    ),  # fmt: skip
    "zppo_next_round": dict(replay_ratio=0.5, hint_ratio=0.5, hint_schedule="next_round", retrospective_ratio=0.5),
    "zppo_four_updates": dict(replay_ratio=0.5, hint_ratio=0.5, steps_per_generation=2, gradient_accumulation_steps=1),
}


# worked solutions with a sentence free of the answer, so the Hint baseline has a hint to build
DATA = addition_dataset(16).map(lambda row: {"solution": "Add the units first, then the tens. " + row["solution"]})


def reward(completions, prompt_id, trainer_state, **kwargs):
    # even ids hard until step 3 (admissions, then graduations); odd ids right when the sample holds a "1"
    # (groups with and without reward variance, so advantages and losses depend on what was sampled)
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(pid % 2 == 1 and "1" in t or trainer_state.global_step >= 3) for t, pid in zip(texts, prompt_id)]


class Record(TrainerCallback):
    def __init__(self):
        self.rounds, self.trainer = [], None

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        self.rounds.append({
            "step": state.global_step,
            "buffer": t.replay_buffer.state_dict(),
            "last": t.last_round,
            "experience": t.experience_buffer.state_dict(),
            "retrospective": t.retrospective_buffer.state_dict(),
            "advantages": list(t._logs["advantages"]),
        })  # fmt: skip


def record(method: str) -> dict:
    torch.manual_seed(0)
    tokenizer = build_char_tokenizer()
    with tempfile.TemporaryDirectory() as out:
        args = ZPPOConfig(
            output_dir=out, per_device_train_batch_size=8, num_generations=4, max_completion_length=8, max_steps=4,
            learning_rate=1e-2, logging_steps=1, report_to="none", use_cpu=True, bf16=False,
            activation_checkpointing=False, save_strategy="no", seed=0, disable_tqdm=False, teacher_column="solution",
            **METHODS[method],
        )  # fmt: skip
        callback = Record()
        trainer = ZPPOTrainer(model=build_tiny_llama(tokenizer), reward_funcs=reward, args=args,
                              train_dataset=DATA, processing_class=tokenizer, callbacks=[callback])  # fmt: skip
        callback.trainer = trainer
        trainer.train()
    logged = [{k: v for k, v in h.items() if k == "loss" or k.startswith("zppo/")}
              for h in trainer.state.log_history if "loss" in h]  # fmt: skip
    return {"rounds": callback.rounds, "logged": logged}


if __name__ == "__main__":
    torch.set_num_threads(1)
    with open(sys.argv[1], "w") as f:
        json.dump({method: record(method) for method in METHODS}, f, indent=0, sort_keys=True)
        f.write("\n")


def assert_same(recorded, expected, where="") -> None:
    """`recorded == expected`, floats to 1e-5 relative (the last bits of a float can differ between CPU kinds), with
    the path of the first difference in the message."""
    if isinstance(expected, dict):
        assert isinstance(recorded, dict) and recorded.keys() == expected.keys(), (
            where,
            sorted(recorded),
            sorted(expected),
        )
        for key in expected:
            assert_same(recorded[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(recorded, list) and len(recorded) == len(expected), (where, recorded, expected)
        for i, (a, b) in enumerate(zip(recorded, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and isinstance(recorded, (int, float)):
        assert math.isclose(recorded, expected, rel_tol=1e-5, abs_tol=1e-7) or (
            recorded != recorded and expected != expected
        ), (where, recorded, expected)
    else:
        assert recorded == expected, (where, recorded, expected)
