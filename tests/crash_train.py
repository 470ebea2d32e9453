"""Run by tests/round/test_crash_resume.py in a subprocess: train the tiny model 4 steps (checkpoints every 2) and, in the
kill modes, SIGKILL this very process at a fixed point. Writes OUT/result.json when it reaches the end.

    python crash_train.py OUT MODE
    MODE: full | kill_after_step3 | kill_during_save4 | kill_before_trainer_state4 | kill_after_save4 | resume
"""

import hashlib
import json
import os
import signal
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
from transformers import TrainerCallback

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.round.state import last_complete_checkpoint
from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

torch.set_num_threads(1)
out_dir, mode = sys.argv[1], sys.argv[2]


def reward(completions, prompt_id, trainer_state, **kwargs):
    # even ids hard until step 3; odd ids right when the sample holds a "1" (partially solved groups, which ExGRPO
    # stores; and gradients, so weights, that depend on the samples)
    return [float(pid % 2 == 1 and "1" in c or trainer_state.global_step >= 3) for c, pid in
            zip([str(c) for c in completions], prompt_id)]  # fmt: skip


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class Killer(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if mode == "kill_after_step3" and state.global_step == 3:
            die()

    def on_save(self, args, state, control, **kwargs):
        if mode == "kill_after_save4" and state.global_step == 4:
            die()


if (
    mode == "kill_during_save4"
):  # die inside the real state write of checkpoint-4: its data is written, not yet renamed
    original_fsync = os.fsync

    def dying_fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if f"checkpoint-4{os.sep}" in path and os.path.basename(path).startswith(".zppo_state."):
            die()
        original_fsync(fd)

    os.fsync = dying_fsync

if mode == "kill_before_trainer_state4":  # checkpoint-4 has model, ZPPO state and optimizer, not trainer_state.json
    from transformers import TrainerState

    original_save = TrainerState.save_to_json

    def dying_save(self, json_path):
        if f"checkpoint-4{os.sep}" in json_path:
            die()
        original_save(self, json_path)

    TrainerState.save_to_json = dying_save

tokenizer = build_char_tokenizer()
args = ZPPOConfig(
    output_dir=os.path.join(out_dir, "run"), per_device_train_batch_size=8, num_generations=4,
    max_completion_length=8, max_steps=6, learning_rate=1e-2, logging_steps=1, report_to="none", use_cpu=True,
    bf16=False, activation_checkpointing=False, save_strategy="steps", save_steps=2, seed=0, disable_tqdm=True,
    teacher_column="solution", hint_ratio=0.5, replay_ratio=0.5, experience_ratio=0.5, experience_start_accuracy=0.0,
    retrospective_ratio=0.5,
)  # fmt: skip
trainer = ZPPOTrainer(model=build_tiny_llama(tokenizer), reward_funcs=reward, args=args,
                      train_dataset=addition_dataset(16), processing_class=tokenizer, callbacks=[Killer()])  # fmt: skip
if mode == "resume":
    print("RESUME", os.path.basename(last_complete_checkpoint(args.output_dir)), flush=True)
trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
with open(os.path.join(out_dir, "result.json"), "w") as f:
    json.dump({"state": trainer.zppo_state(), "weights_sha": hashlib.sha256(weights.numpy().tobytes()).hexdigest()}, f)
