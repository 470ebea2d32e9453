"""Writes the notebooks in notebooks/ (outputs cleared). Edit this file, not the notebooks, then run:
python scripts/make_notebook.py

Each notebook starts with a parameters cell (`# Parameters`) that CI replaces to run it top to bottom on CPU with
`TINY = True` (tests/cli/test_notebook.py); every other cell runs as written.
"""

import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell
# the install cell of every notebook: one pinned source, set in the parameters cell
INSTALL = """if INSTALL:
    if "OWNER" in ZPPO_TRL_SOURCE:
        raise ValueError("Set ZPPO_TRL_SOURCE in the first cell to the zppo-trl repository and tag you install from.")
    print("installing zppo-trl from", ZPPO_TRL_SOURCE)
    !pip install -q "{ZPPO_TRL_SOURCE}\""""
# the cell after the install: log in to the Hub before anything long runs, and only when a repository is named
LOGIN = """# Hub login first, so a long run never ends waiting for a token (only to push: no HUB_MODEL_ID, no push)
if HUB_MODEL_ID and not TINY:
    from huggingface_hub import get_token, interpreter_login, whoami

    if get_token() is None:  # no HF_TOKEN (Colab secret or environment) and no saved token: ask now
        interpreter_login()
    print(f"logged in to the Hub as {whoami()['name']}; the adapter will be pushed to {HUB_MODEL_ID}")
else:
    print("HUB_MODEL_ID is empty: no Hub login, nothing will be pushed (the adapter stays in OUTPUT_DIR)")"""
# the push cell's decision: a named repository only, never a placeholder
PUSH = """if not HUB_MODEL_ID:
    print(f"not pushed: HUB_MODEL_ID is empty (set it in the first cell to push); the adapter is in {OUTPUT_DIR}")
elif TINY:
    print("not pushed: CI run (TINY)")
else:
    trainer.args.hub_model_id = HUB_MODEL_ID
    trainer.push_to_hub(dataset_name="openai/gsm8k")
    print(f"pushed to https://huggingface.co/{HUB_MODEL_ID}")"""
# the precision cell's rule (zppo_trl/precision.py): bf16 where the GPU computes it natively, fp16 on a T4, fp32 on CPU
PRECISION = """from zppo_trl.precision import Precision, pick_precision

# bf16 where the GPU computes it natively (L4, A100), fp16 on a T4 (bf16 only emulated there), fp32 on CPU (CI)
PRECISION = Precision("fp32", "cpu", "CI: tiny model on CPU") if TINY else pick_precision()
DTYPE = PRECISION.model_dtype(frozen_base=True)  # the frozen base (LoRA) in the format the GPU computes in
print(f"precision: {PRECISION.name} ({PRECISION.reason})")"""
PINNED_SOURCE = """# Where zppo-trl is installed from: ONE pinned source. It is not on PyPI yet, and an unpinned `pip install zppo-trl`
# would install whatever anyone publishes under that name. Use the project's git repository at a release tag (or,
# once published, a pinned version such as "zppo-trl==0.1.0").
ZPPO_TRL_SOURCE = "git+https://github.com/OWNER/zppo-trl.git@v0.1.0"  # EDIT: the repository you trust, at a tag"""

quickstart = [
    md("""# ZPPO quickstart (Colab T4)

Fine-tune a small instruct model on GSM8K with **ZPPO** ("Teacher in Prompts, Not Gradients", arXiv 2606.18216):
LoRA, a hard-question replay buffer, and BCQ/NCQ hint prompts built from GSM8K's reference solutions.

Written for a free Colab **T4** (16 GB, fp16: the T4 has no native bf16) with `Qwen/Qwen2.5-0.5B-Instruct`.

**On a Colab T4, an ESTIMATE (not measured: this project had no GPU):**
- time: about 25-40 min. 60 steps at ~15-25 s (two generation passes of 16 x 256 tokens, the second for the hint
  prompts, ~6-10 s each; the LoRA update ~2 s), plus two evaluations of 100 questions x 4 samples (~3-5 min each).
- peak GPU memory: about 3-5 GiB of 15. fp16 weights 1.0 GiB, LoRA with its Adam states 35 MiB, KV cache ~0.1 GiB,
  checkpointed activations of ~7k tokens ~0.5 GiB, CUDA context ~0.5 GiB.

**Not verified on Colab here**: this project's CI has no GPU and no Hub access. CI executes this notebook top to
bottom on CPU with a tiny model built in code and a tiny built-in dataset, by overriding the parameters cell below
(`TINY = True`). To push the adapter, set `HUB_MODEL_ID` to a repository of yours: the next cells log in first; with
it empty, nothing is pushed and "Run all" still completes.

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
HUB_MODEL_ID = ""       # a Hub repository of yours, e.g. "NAME/qwen2.5-0.5b-gsm8k-zppo", to push to; empty: no push
OUTPUT_DIR = "qwen-zppo-gsm8k\""""),
    code(INSTALL),
    code(LOGIN),
    md("## 1. Model, tokenizer, data"),
    code(
        """import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.data import load_embedded_math, to_zppo_format
from zppo_trl.rewards import boxed_accuracy_reward

"""
        + PRECISION
        + """

if TINY:
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer)
    train = load_embedded_math().select(range(16))
    heldout = load_embedded_math().select(range(16, 24))
else:
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=DTYPE, device_map="cuda")
    gsm8k = load_dataset("openai/gsm8k", "main")
    train = to_zppo_format(gsm8k["train"]).shuffle(seed=0).select(range(2000))
    heldout = to_zppo_format(gsm8k["test"]).select(range(100))
print(train)
print(train[0]["prompt"], "->", train[0]["answer"])"""
    ),
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
    **PRECISION.training_flags(),           # bf16 / fp16 (T4) / CPU, by the device
    activation_checkpointing=not TINY,
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
    md("## 7. The model card, and the push to the repository you named (`HUB_MODEL_ID`)"),
    code(
        """card = open(f"{OUTPUT_DIR}/README.md").read()
print(card[card.index("## ZPPO training"):])  # the section ZPPO adds to TRL's model card

"""
        + PUSH
    ),
]

qlora = [
    md("""# QLoRA + ZPPO on one GPU (T4 or L4)

Train a LoRA adapter (r = 16) on a **4-bit (NF4) quantised** `Qwen/Qwen2.5-1.5B-Instruct` with ZPPO on GSM8K, scored by
`final_answer_reward` (the last `\\boxed{}`, else the last number), and push the adapter with its ZPPO model card.
The precision follows the card: **fp16 on a T4** (compute capability 7.5, bf16 only emulated), **bf16 on an L4** (8.9);
under fp16 the LoRA adapters train in float32.

**On a Colab T4, an ESTIMATE (not measured: this project had no GPU):**
- time: about 60-90 min. 100 steps at ~35-50 s (two generation passes of 16 x 256 tokens through dequantised 4-bit
  layers, ~12-20 s each; the update over ~16 x 450 tokens ~8 s).
- peak GPU memory: about 6-9 GiB of 15. Section 2 derives weights 1.19 GiB and ~3 MiB per trained token (~1,650 tokens
  per micro-batch, less with checkpointing), plus the KV cache and the CUDA context (~1 GiB).

To push the adapter, set `HUB_MODEL_ID` to a repository of yours: the next cells log in first; with it empty, nothing
is pushed and "Run all" still completes.

**Not verified on a GPU here**: this project's CI has no GPU and no Hub access. CI executes this notebook top to bottom
on CPU with the tiny Llama from `zppo_trl.tiny`, built in code, and skips 4-bit quantisation (`QUANTIZE = False`:
bitsandbytes' 4-bit layers are not what this CPU check is about), by overriding the parameters cell (`TINY = True`).
A 3B model (`Qwen/Qwen2.5-3B-Instruct`) fits too: rerun the estimate cell for it before training.

**Install source**: `ZPPO_TRL_SOURCE` in the first cell names the one place zppo-trl is installed from, pinned to a
release tag; edit it before running in Colab."""),
    code(f"""# Parameters (CI overrides this cell)
{PINNED_SOURCE}
MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
TINY = False            # True: the tiny random Llama + built-in problems, on CPU (what CI runs)
INSTALL = True          # pip install ZPPO_TRL_SOURCE (Colab); CI has zppo-trl installed already
MAX_STEPS = 100
HUB_MODEL_ID = ""       # a Hub repository of yours to push to, e.g. "NAME/qwen2.5-1.5b-zppo-qlora"; empty: no push
OUTPUT_DIR = "qwen1.5b-zppo-qlora\""""),
    code(INSTALL),
    code(LOGIN),
    md("""## 1. The card decides the precision and the batch

`QUANTIZE` is the one switch between the real run and CI: **CI sets it to False** (tiny model, fp32, CPU); on a GPU the
model is loaded in NF4 with bitsandbytes and computes in fp16 (T4) or bf16 (GPUs that compute it natively)."""),
    code(
        """import torch

"""
        + PRECISION
        + """

QUANTIZE = not TINY  # CI ONLY: False, the tiny CPU run skips 4-bit quantisation (no bitsandbytes 4-bit on CPU here)
if TINY:
    CARD, GPU_GIB = "CPU (CI, tiny model)", None
else:
    CARD = torch.cuda.get_device_name()
    GPU_GIB = torch.cuda.get_device_properties(0).total_memory / 2**30
# micro-batch rows per card, sized by the estimate in section 2 (T4: 2, L4 and larger: 4); 16 rollouts per step
PER_DEVICE_BATCH = 8 if TINY else (2 if GPU_GIB < 20 else 4)
GRAD_ACCUM = 1 if TINY else 16 // PER_DEVICE_BATCH
print(f"{CARD}: {DTYPE}, quantised: {QUANTIZE}, micro-batch {PER_DEVICE_BATCH} x {GRAD_ACCUM} accumulation steps")"""
    ),
    md("""## 2. Memory budget: an ESTIMATE, not a measurement

No GPU measurement was made by this project. The budget below is **derived**, from the architecture (exact) and from
one CPU measurement on another model (scaled), as follows:

* **Weights (exact count, from the config on the `meta` device: nothing is allocated or downloaded)**: the decoder's
  linear layers in NF4, 0.5 byte per weight plus one fp32 scale per block of 64 (0.0625 byte); embeddings and norms
  in 16 bits (2 bytes); the LoRA matrices (r = 16 on `q_proj`, `k_proj`, `v_proj`, `o_proj`) in fp32 with their
  gradient and two Adam states, 16 bytes per parameter.
* **Activations per trained token**: `docs/scaling.md` measured **2.43 MiB per token** for a LoRA r = 16
  forward + backward of SmolLM2-135M on CPU in fp32 (`examples/activation_memory.py`, hidden 576 x 30 layers).
  Scaled by the ratio of hidden size x layers, and halved for 16-bit activations.
* **Budget**: 80% of the card's memory, minus the weights, divided by the per-token cost.

For `Qwen/Qwen2.5-1.5B-Instruct` (1.544B parameters: 1.310B in NF4, 233.5M embedding/norm; LoRA 4.36M): weights
0.69 + 0.43 + 0.07 = **1.19 GiB**; activations 2.43 x (1536 x 28) / (576 x 30) / 2 = **3.02 MiB per token**.

| card | memory | precision | tokens per micro-batch (estimate) | rows chosen (section 1) | tokens they train |
|---|---|---|---|---|---|
| T4 | 15.0 GiB | fp16 | (0.8 x 15.0 - 1.19) GiB / 3.02 MiB = **~3,660** | 2 (+ up to 1 hint/replay) | ~1,650 |
| L4 | 22.5 GiB | bf16 | (0.8 x 22.5 - 1.19) GiB / 3.02 MiB = **~5,690** | 4 (+ up to 2 hint/replay) | ~3,300 |

Tokens trained per micro-batch, as `docs/scaling.md` counts them: rows x (1 + replay_ratio) x (prompt ~200 +
completion 256) plus rows x hint_ratio x (hint prompt 768 + completion 256). What the estimate leaves out, so treat
it as a rough guide: the scaling ignores the vocabulary (Qwen's 151,936 logits per token against SmolLM2's 49,152:
the logits part is under-counted), generation's KV cache, and CUDA's own overhead (~0.5 GiB); gradient checkpointing
(on below) cuts the activation part well below the measured slope. The cell below recomputes the estimate for
whichever `MODEL` is set, and section 4 prints the real peak to compare."""),
    code("""from transformers import AutoConfig, AutoModelForCausalLM

MiB, GiB = 2**20, 2**30
SMOL_MIB_PER_TOKEN, SMOL_HIDDEN_X_LAYERS = 2.43, 576 * 30  # docs/scaling.md: CPU, fp32, LoRA r=16, SmolLM2-135M
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def estimate_memory(config, targets, r=16, half=True):
    \"\"\"An ESTIMATE, not a measurement: (weights GiB, activation MiB per trained token) for QLoRA on `config`.\"\"\"
    with torch.device("meta"):  # the architecture only: no weights are allocated or downloaded
        model = AutoModelForCausalLM.from_config(config)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    nf4 = sum(m.weight.numel() for m in layers.values())  # decoder linears: NF4 + one fp32 scale per 64 weights
    other = sum(p.numel() for p in model.parameters()) - nf4  # embeddings, norms: kept in 16 bits
    lora = sum(r * (m.in_features + m.out_features) for n, m in layers.items() if n.rsplit(".", 1)[-1] in targets)
    weights = nf4 * (0.5 + 4 / 64) + other * 2 + lora * (4 + 4 + 8)  # LoRA: fp32 weight, gradient, 2 Adam states
    per_token = SMOL_MIB_PER_TOKEN * config.hidden_size * config.num_hidden_layers / SMOL_HIDDEN_X_LAYERS
    return weights / GiB, per_token * (0.5 if half else 1.0)  # 16-bit activations: half of fp32


if TINY:
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    config = build_tiny_llama(build_char_tokenizer()).config
else:
    config = AutoConfig.from_pretrained(MODEL)  # config.json only
weights_gib, mib_per_token = estimate_memory(config, LORA_TARGETS)
print(f"ESTIMATE for {MODEL if not TINY else 'the tiny CI model'}: weights {weights_gib:.2f} GiB, "
      f"{mib_per_token:.3f} MiB per trained token")
for card, memory_gib in [("T4", 15.0), ("L4", 22.5)] + ([(CARD, GPU_GIB)] if GPU_GIB else []):
    tokens = (0.8 * memory_gib - weights_gib) * 1024 / mib_per_token
    print(f"  {card}: {memory_gib:.1f} GiB -> about {tokens:,.0f} trained tokens per micro-batch (estimate)")"""),
    md("## 3. Model, data, train"),
    code("""from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoTokenizer, BitsAndBytesConfig

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.data import load_embedded_math, to_zppo_format
from zppo_trl.rewards import final_answer_reward

if TINY:
    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(tokenizer)
    train = load_embedded_math().select(range(16))
else:
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=DTYPE)
    model = AutoModelForCausalLM.from_pretrained(
        MODEL, quantization_config=quantization if QUANTIZE else None, dtype=DTYPE, device_map={"": 0}
    )
    gsm8k = load_dataset("openai/gsm8k", "main")
    train = to_zppo_format(gsm8k["train"]).shuffle(seed=0).select(range(2000))

args = ZPPOConfig(
    output_dir=OUTPUT_DIR,
    base_model_id=MODEL,                    # adapter_config.json and the card name the Hub id, never a local folder
    teacher_column="solution",
    answer_format_instruction="Put the final answer in \\\\boxed{}.",
    num_generations=4 if TINY else 8,
    per_device_train_batch_size=PER_DEVICE_BATCH,
    gradient_accumulation_steps=GRAD_ACCUM,
    max_completion_length=16 if TINY else 256,
    candidate_max_tokens=32 if TINY else 256,
    hint_prompt_max_tokens=256 if TINY else 768,
    learning_rate=1e-3 if TINY else 1e-5,
    max_steps=2 if TINY else MAX_STEPS,
    **PRECISION.training_flags(),           # bf16 / fp16 (T4) / CPU, by the device
    activation_checkpointing=not TINY,
    logging_steps=1, save_strategy="no", report_to="none",
)
trainer = ZPPOTrainer(
    model=model,
    processing_class=tokenizer,
    reward_funcs=final_answer_reward,
    args=args,
    train_dataset=train,
    peft_config=LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"),
)
trainer.train()
buf = trainer.replay_buffer
print(f"buffer: admitted {buf.total_admitted}, graduated {buf.total_graduated}, in buffer {len(buf)}")"""),
    md("## 4. Measured peak against the estimate"),
    code("""if torch.cuda.is_available():
    print(f"{CARD}: peak allocated {torch.cuda.max_memory_allocated() / GiB:.2f} GiB of {GPU_GIB:.1f} GiB "
          f"(estimate: weights {weights_gib:.2f} GiB + activations)")
else:
    print("no GPU: nothing measured (CI)")"""),
    md("""## 5. Push the adapter

The cell first checks the folder `push_to_hub` uploads (what `upload_folder` sends: not `_*`, not `checkpoint-*`):
`adapter_config.json` names the base by its Hub id, `README.md` is the ZPPO model card, and no file holds a local path.
It then pushes to `HUB_MODEL_ID` (logged in at the start), or, with it empty (and in CI), says so and stops."""),
    code(
        """import fnmatch
import json
import os

trainer.save_model()  # what push_to_hub saves before uploading: adapter, README.md card, buffer figure
folder = trainer.args.output_dir
files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)
upload = [f for f in files if not any(fnmatch.fnmatch(f.split(os.sep)[0], p) for p in ("_*", "checkpoint-*"))]
base = json.load(open(os.path.join(folder, "adapter_config.json")))["base_model_name_or_path"]
assert base == MODEL and not os.path.exists(base), f"adapter_config.json names {base!r}, not the Hub id {MODEL!r}"
assert "README.md" in upload and "## ZPPO training" in open(os.path.join(folder, "README.md")).read()
local = {os.path.abspath(folder), os.getcwd()} | ({os.path.expanduser("~")} - {"/"})
text_files = [f for f in upload if f.endswith((".json", ".md", ".txt", ".jinja"))]
leaks = [f for f in text_files if any(p in open(os.path.join(folder, f)).read() for p in local)]
assert not leaks, f"files holding a local path: {leaks}"
print(f"upload folder checked: {len(upload)} files, base {base}, no local path: {upload}")

"""
        + PUSH
    ),
]

own_data = [
    md("""# GRPO vs ZPPO on your own data

Two runs on a question/answer file of your own, identical except for what makes ZPPO: **GRPO** is `ZPPOTrainer`
with `replay_ratio=0`, `hint_ratio=0` and `advantage_estimator="grpo"` (TRL's GRPO, step for step); **ZPPO** keeps
the defaults (replay and hints at 0.25, ZPPO's advantage). Then each run's buffer figure and its per-bin graduation,
side by side. The replay buffer is kept in both runs (with the ratios at 0 it only records), so both can be plotted.

Written for a Colab GPU with `Qwen/Qwen2.5-0.5B-Instruct`. On a free Colab **T4** (fp16, chosen by the device), an
ESTIMATE, not measured (this project had no GPU): about 30-50 min for the two runs of 60 steps (each ~15-25 s: two
generation passes of 16 x 256 tokens and a LoRA update; the GRPO run skips the hint pass), and a peak of about 3-5 GiB
of the T4's 15 (fp16 weights 1.0 GiB, one run's model at a time). Nothing is pushed to the Hub.

**Not verified on Colab here**: CI has no GPU and no Hub
access; it executes this notebook top to bottom on CPU with the tiny model from `zppo_trl.tiny` by overriding the
parameters cell (`TINY = True`).

**Install source**: `ZPPO_TRL_SOURCE` in the first cell names the one place zppo-trl is installed from, pinned to a
release tag; edit it before running in Colab."""),
    code(f"""# Parameters (CI overrides this cell)
{PINNED_SOURCE}
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
TINY = False            # True: a tiny random model, on CPU (what CI runs)
INSTALL = True          # pip install ZPPO_TRL_SOURCE (Colab); CI has zppo-trl installed already
MAX_STEPS = 60
DATA_FILE = "my_problems.jsonl"  # your file: .jsonl, .json, .csv or .parquet; the next cell writes an example
OUTPUT_DIR = "grpo-vs-zppo\""""),
    code(INSTALL),
    md("""## 1. Your data

A `.jsonl` file, one question per line. The column names are yours; section 2 maps them (here `question`, `final`
for the gold answer, `worked` for a reference solution, which ZPPO's hint prompts show, and `id`). The cell writes a
small example; replace `DATA_FILE` with your own file and skip it."""),
    code("""import json
import random

rng = random.Random(0)
with open(DATA_FILE, "w") as f:
    for i in range(48):
        boxes, per_box = rng.randint(2, 30), rng.randint(2, 9)
        sold = rng.randint(1, boxes * per_box - 1)
        left = boxes * per_box - sold
        row = {
            "id": f"shop-{i:02d}",
            "question": f"A shop has {boxes} boxes of {per_box} pens and sells {sold} pens. How many pens are left?",
            "final": str(left),
            "worked": f"{boxes} * {per_box} = {boxes * per_box}; {boxes * per_box} - {sold} = {left}. "
                      f"The answer is \\\\boxed{{{left}}}.",
        }
        f.write(json.dumps(row) + "\\n")
print(open(DATA_FILE).readline())"""),
    md("""## 2. Load it the way `zppo-trl train --dataset_name FILE` does

`load_source` reads a local file (or folder, or Hub name); `to_zppo_format` maps your columns to ZPPO's `prompt`,
`answer`, `solution` and `prompt_id` (the flags `--question_column` etc. of the CLI)."""),
    code("""from zppo_trl.data import load_source, pick_split, to_zppo_format

raw, split = pick_split(load_source(DATA_FILE), "train")  # one file: its only split
dataset = to_zppo_format(raw, question_column="question", answer_column="final", solution_column="worked",
                         id_column="id")
print(split, dataset)
print(dataset[0])"""),
    md("## 3. The same config, twice"),
    code(
        """import os

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.rewards import final_answer_reward

if TINY:
    from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama

    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
else:
    tokenizer = AutoTokenizer.from_pretrained(MODEL)

"""
        + PRECISION
        + """


def fresh_model():
    \"\"\"The same starting weights for both runs.\"\"\"
    if TINY:
        return build_tiny_llama(tokenizer, seed=0)
    return AutoModelForCausalLM.from_pretrained(MODEL, dtype=DTYPE, device_map={"": 0})


COMMON = dict(
    teacher_column="solution",
    answer_format_instruction="Put the final answer in \\\\boxed{}.",
    num_generations=4 if TINY else 8,
    per_device_train_batch_size=8 if TINY else 16,
    max_completion_length=16 if TINY else 256,
    candidate_max_tokens=32 if TINY else 256,
    hint_prompt_max_tokens=256 if TINY else 1024,
    learning_rate=1e-3 if TINY else 1e-5,
    max_steps=3 if TINY else MAX_STEPS,
    **PRECISION.training_flags(),  # bf16 / fp16 (T4) / CPU, by the device
    activation_checkpointing=not TINY,
    seed=0, logging_steps=1, save_strategy="no", report_to="none",
)
RUNS = {
    "GRPO": dict(replay_ratio=0.0, hint_ratio=0.0, advantage_estimator="grpo"),
    "ZPPO": dict(),  # the defaults: replay_ratio=0.25, hint_ratio=0.25, advantage_estimator="zppo"
}
trainers = {}
for name, overrides in RUNS.items():
    args = ZPPOConfig(output_dir=os.path.join(OUTPUT_DIR, name.lower()), **COMMON, **overrides)
    trainer = ZPPOTrainer(
        model=fresh_model(),
        processing_class=tokenizer,
        reward_funcs=final_answer_reward,
        args=args,
        train_dataset=dataset,
        peft_config=LoraConfig(r=8 if TINY else 16, lora_alpha=16 if TINY else 32,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    trainers[name] = trainer
    buf = trainer.replay_buffer
    print(f"{name}: admitted {buf.total_admitted}, graduated {buf.total_graduated}, in buffer {len(buf)}")"""
    ),
    md("## 4. Buffer figures side by side"),
    code("""import base64

from IPython.display import HTML, display

from zppo_trl.plotting import plot_graduation

figures = {name: plot_graduation(t.args.output_dir) for name, t in trainers.items()}  # each run's output_dir
cells = "".join(
    f"<td><b>{name}</b><br><img width='480' src='data:image/png;base64,"
    f"{base64.b64encode(open(path, 'rb').read()).decode()}'></td>"
    for name, path in figures.items()
)
display(HTML(f"<table><tr>{cells}</tr></table>"))
print("figures:", figures)"""),
    md("""## 5. Graduation per entry bin

Entry bin k = correct plain rollouts out of G when the question entered the buffer. Graduated / admitted per bin,
and the exit rate (of the questions that left the buffer, the share that graduated; n/a until one was evicted)."""),
    code("""import pandas as pd

bins = sorted({k for t in trainers.values() for k in t.replay_buffer.admitted_by_bin})
table = {}
for name, t in trainers.items():
    buf = t.replay_buffer
    for k in bins:
        admitted, graduated = buf.admitted_by_bin.get(k, 0), buf.graduated_by_bin.get(k, 0)
        table.setdefault(f"entry bin {k}", {})[name] = f"{graduated}/{admitted}"
    table.setdefault("all bins", {})[name] = f"{buf.total_graduated}/{buf.total_admitted}"
    rate = buf.exit_rate()
    table.setdefault("exit rate", {})[name] = "n/a" if rate is None else f"{rate:.0%}"
print("graduated/admitted")
print(pd.DataFrame(table).T.to_string())"""),
]


def write(cells: list, path: str) -> None:
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating a notebook changes only the cells that changed
    nb = nbf.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "accelerator": "GPU",
            "colab": {"provenance": []},
        },
    )
    nbf.write(nb, path)


write(quickstart, "notebooks/zppo_quickstart.ipynb")
write(qlora, "notebooks/zppo_qlora_one_gpu.ipynb")
write(own_data, "notebooks/grpo_vs_zppo_own_data.ipynb")
