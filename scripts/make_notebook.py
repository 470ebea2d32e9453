"""Writes notebooks/zppo_quickstart.ipynb (outputs cleared). Edit this file, not the notebook, then run:
python scripts/make_notebook.py
"""

import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell
cells = [
    md("""# ZPPO quickstart (Colab T4)

Fine-tune a small instruct model on GSM8K with **ZPPO** ("Teacher in Prompts, Not Gradients", arXiv 2606.18216):
LoRA, a hard-question replay buffer, and BCQ/NCQ hint prompts built from GSM8K's reference solutions.

Written for a free Colab **T4** (16 GB, fp16: the T4 has no bf16) with `Qwen/Qwen2.5-0.5B-Instruct`.
**Not verified on Colab here**: this project's CI has no GPU and no Hub access. CI executes this notebook top to
bottom on CPU with a tiny model built in code and a tiny built-in dataset, by overriding the parameters cell below
(`TINY = True`).

**Install source**: `ZPPO_TRL_SOURCE` in the first cell names the one place zppo-trl is installed from, pinned to a
release tag; edit it before running in Colab."""),
    code("""# Parameters (CI overrides this cell)
# Where zppo-trl is installed from: ONE pinned source. It is not on PyPI yet, and an unpinned `pip install zppo-trl`
# would install whatever anyone publishes under that name. Use the project's git repository at a release tag (or,
# once published, a pinned version such as "zppo-trl==0.1.0").
ZPPO_TRL_SOURCE = "git+https://github.com/OWNER/zppo-trl.git@v0.1.0"  # EDIT: the repository you trust, at a tag
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
TINY = False            # True: a tiny random model + built-in problems, on CPU (what CI runs)
INSTALL = True          # pip install ZPPO_TRL_SOURCE (Colab); CI has zppo-trl installed already
MAX_STEPS = 60
PUSH_TO_HUB = False     # set True and HUB_MODEL_ID to push the adapter with its ZPPO model card
HUB_MODEL_ID = "your-name/qwen2.5-0.5b-gsm8k-zppo"
OUTPUT_DIR = "qwen-zppo-gsm8k\""""),
    code("""if INSTALL:
    if "OWNER" in ZPPO_TRL_SOURCE:
        raise ValueError("Set ZPPO_TRL_SOURCE in the first cell to the zppo-trl repository and tag you install from.")
    print("installing zppo-trl from", ZPPO_TRL_SOURCE)
    !pip install -q "{ZPPO_TRL_SOURCE}\""""),
    md("## 1. Model, tokenizer, data"),
    code("""import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.data import load_embedded_math, to_zppo_format
from zppo_trl.rewards import boxed_accuracy_reward

if TINY:
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer)
    train = load_embedded_math().select(range(16))
    heldout = load_embedded_math().select(range(16, 24))
else:
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float16, device_map="cuda")
    gsm8k = load_dataset("openai/gsm8k", "main")
    train = to_zppo_format(gsm8k["train"]).shuffle(seed=0).select(range(2000))
    heldout = to_zppo_format(gsm8k["test"]).select(range(100))
print(train)
print(train[0]["prompt"], "->", train[0]["answer"])"""),
    md("## 2. Accuracy before training (plain prompts, 4 samples each)"),
    code("""from zppo_trl.evaluation import plain_accuracy

INSTRUCTION = "Put the final answer in \\\\boxed{}."
before = plain_accuracy(model, tokenizer, heldout, num_samples=4, max_new_tokens=16 if TINY else 256,
                        instruction=INSTRUCTION)
print(f"held-out accuracy before: {before['accuracy']:.3f}")"""),
    md("""## 3. Train with ZPPO

Compared with TRL's `GRPOTrainer`, two imports change and three arguments are added: `teacher_column` (the reference
solutions that become the correct BCQ candidate), `replay_ratio` and `hint_ratio` (paper defaults 0.25)."""),
    code("""args = ZPPOConfig(
    output_dir=OUTPUT_DIR,
    teacher_column="solution",
    replay_ratio=0.25,
    hint_ratio=0.25,
    answer_format_instruction=INSTRUCTION,
    num_generations=4 if TINY else 8,
    per_device_train_batch_size=8 if TINY else 16,
    max_completion_length=16 if TINY else 256,
    candidate_max_tokens=32 if TINY else 256,
    hint_prompt_max_tokens=256 if TINY else 1024,
    learning_rate=1e-3 if TINY else 1e-5,
    max_steps=3 if TINY else MAX_STEPS,
    fp16=not TINY, bf16=False,              # T4: fp16
    use_cpu=TINY,
    gradient_checkpointing=not TINY,
    logging_steps=1, save_strategy="no", report_to="none",
)
trainer = ZPPOTrainer(
    model=model,
    processing_class=tokenizer,
    reward_funcs=boxed_accuracy_reward,
    args=args,
    train_dataset=train,
    peft_config=LoraConfig(r=8 if TINY else 16, lora_alpha=16 if TINY else 32,
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
)
trainer.train()
buf = trainer.replay_buffer
print(f"buffer: admitted {buf.total_admitted}, graduated {buf.total_graduated}, in buffer {len(buf)}")"""),
    md("## 4. What the student saw: one hint prompt of the last round"),
    code("""for hint in trainer.last_round["hints"][:1]:
    print(hint["kind"].upper(), "for question", hint["prompt_id"])
    print(hint["prompt"][-1]["content"] if isinstance(hint["prompt"], list) else hint["prompt"])"""),
    md("## 5. Buffer dynamics"),
    code("""from IPython.display import Image, display

trainer.save_model()   # adapter + README.md model card (ZPPO section) + zppo_graduation.png
display(Image(filename=f"{OUTPUT_DIR}/zppo_graduation.png"))"""),
    md("## 6. Accuracy after training"),
    code("""after = plain_accuracy(trainer.model, tokenizer, heldout, num_samples=4, max_new_tokens=16 if TINY else 256,
                       instruction=INSTRUCTION)
print(f"held-out accuracy: before {before['accuracy']:.3f}, after {after['accuracy']:.3f}")"""),
    md("## 7. Push the adapter (with its ZPPO model card) to the Hub"),
    code("""if PUSH_TO_HUB:
    from huggingface_hub import notebook_login

    notebook_login()
    trainer.args.hub_model_id = HUB_MODEL_ID
    trainer.push_to_hub(dataset_name="openai/gsm8k")
else:
    card = open(f"{OUTPUT_DIR}/README.md").read()
    print(card[card.index("## ZPPO training"):])  # the section ZPPO adds to TRL's model card"""),
]
nb = nbf.v4.new_notebook(
    cells=cells,
    metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": []},
    },
)
nbf.write(nb, "notebooks/zppo_quickstart.ipynb")
