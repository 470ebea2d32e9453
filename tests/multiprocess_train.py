"""Run by tests/round/test_multiprocess.py under `torchrun --standalone --nproc_per_node 2`: trains the tiny model with
ZPPO (checkpoints every 2 steps) and writes, per rank, the buffer state and hint prompts of every round to
OUT/{tag}rank{r}.json. `python multiprocess_train.py OUT [kill | resume | VARIANT]`: `kill` SIGKILLs rank 0 after
step 3 (checkpoint-2 is the newest complete one); `resume` continues from the newest complete checkpoint (chosen by
the main process and broadcast); a VARIANT (see VARIANTS) trains a baseline or option instead of ZPPO's defaults."""

import json
import os
import signal
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
from transformers import TrainerCallback

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.tiny import addition_dataset, build_char_tokenizer, build_tiny_llama

torch.set_num_threads(1)
out_dir = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else ""
resume = mode == "resume"
VARIANTS = {  # the other methods' rounds must be identical on both ranks too
    "prefix_exclude": dict(hint_type="prefix", exclude_zero_variance_groups=True),
    "teacher_response": dict(hint_type="teacher_response"),
    "experience": dict(experience_ratio=0.5, experience_start_accuracy=0.0),
    "retrospective": dict(retrospective_ratio=0.5),
    "next_round": dict(hint_schedule="next_round", retrospective_ratio=0.5),
}
variant = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] in VARIANTS else None
HARD = set(range(0, 16, 2))


def scripted_reward(completions, prompt_id, trainer_state, **kwargs):
    # hard questions flip to solved at step 3, so graduations happen too; with a variant, the easy ones score by the
    # sampled text, so groups with and without reward variance both occur
    if variant:
        return [float(pid not in HARD and "1" in str(c) or trainer_state.global_step >= 3)
                for c, pid in zip(completions, prompt_id)]  # fmt: skip
    return [float(pid not in HARD or trainer_state.global_step >= 3) for pid in prompt_id]


class Record(TrainerCallback):
    rounds = []

    def on_step_end(self, args, state, control, **kwargs):
        t = self.trainer
        if mode == "kill" and state.global_step == 3 and t.accelerator.is_main_process:
            os.kill(os.getpid(), signal.SIGKILL)  # torchrun then stops the other rank
        logged = {k: v for k, v in state.log_history[-1].items() if k.startswith("zppo/")} if state.log_history else {}
        self.rounds.append({"step": state.global_step, "buffer": t.replay_buffer.state_dict(), "last": t.last_round,
                            "experience": t.experience_buffer.state_dict(),
                            "retrospective": t.retrospective_buffer.state_dict(), "logged": logged})  # fmt: skip


tokenizer = build_char_tokenizer()
args = ZPPOConfig(
    output_dir=os.path.join(out_dir, "run"),
    per_device_train_batch_size=6,
    num_generations=4,
    max_completion_length=8,
    max_steps=5,
    learning_rate=1e-2,
    logging_steps=1,
    report_to="none",
    use_cpu=True,
    bf16=False,
    activation_checkpointing=False,
    save_strategy="steps",
    save_steps=2,
    seed=0,
    disable_tqdm=True,
    teacher_column="solution",
    hint_ratio=1.0,
    replay_ratio=0.5,
    **(VARIANTS[variant] if variant else {}),
)  # 6 rows per rank, G=4: groups straddle the two ranks on purpose
record = Record()
trainer = ZPPOTrainer(
    model=build_tiny_llama(tokenizer),
    reward_funcs=scripted_reward,
    args=args,
    train_dataset=addition_dataset(16),
    processing_class=tokenizer,
    callbacks=[record],
)
record.trainer = trainer
trainer.train(resume_from_checkpoint=True if resume else None)
tag = "resumed-" if resume else f"{variant}-" if variant else ""
with open(os.path.join(out_dir, f"{tag}rank{trainer.accelerator.process_index}.json"), "w") as f:
    json.dump({"num_processes": trainer.accelerator.num_processes, "rounds": record.rounds}, f)
# An orderly teardown: leaving the process group to interpreter exit let a gloo thread abort one rank ("terminate
# called without an active exception", SIGABRT) after a run that had finished and written everything (seen in CI)
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
