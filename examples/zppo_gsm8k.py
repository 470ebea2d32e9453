# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "zppo-trl",
# ]
# ///
"""ZPPO on GSM8K with LoRA, in the shape of TRL's `examples/scripts/grpo.py`: the same TrlParser over script, trainer
and model arguments (flags and a `--config` YAML share one schema), with `GRPOConfig`/`GRPOTrainer` swapped for
`ZPPOConfig`/`ZPPOTrainer` and GSM8K's reasoning used as the BCQ teacher.

    python examples/zppo_gsm8k.py --output_dir zppo-Qwen2.5-0.5B-gsm8k --max_steps 200

    accelerate launch --config_file examples/accelerate/multi_gpu_ddp.yaml examples/zppo_gsm8k.py \\
        --output_dir zppo-Qwen2.5-0.5B-gsm8k --max_steps 200

    uv run examples/zppo_gsm8k.py --output_dir zppo-Qwen2.5-0.5B-gsm8k   # the header above names its dependencies

Defaults (`EXAMPLE_DEFAULTS`): Qwen/Qwen2.5-0.5B-Instruct, openai/gsm8k (main), LoRA r 16 on the attention and MLP
projections, 8 completions of up to 512 tokens per question, lr 1e-5; every one can be changed by a flag. Precision
follows the GPU as in `zppo-trl train` (bf16 where native, fp16 on a T4, fp32 on CPU); --bf16 / --fp16 choose.
Runtime and memory: not measured (this project's CI has no GPU). Afterwards, look at
OUTPUT_DIR/zppo_graduation.png (questions admitted to and graduated from the replay buffer) and the card's "ZPPO
training" section in OUTPUT_DIR/README.md, and score the adapter with
`zppo-trl eval --model_name_or_path OUTPUT_DIR --dataset_name openai/gsm8k --dataset_config main`.
"""

import sys

from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from zppo_trl import ZPPOConfig, ZPPOTrainer
from zppo_trl.cli import device_flags, given_keys
from zppo_trl.data import load_source, pick_split, to_zppo_format
from zppo_trl.precision import model_dtype_name, pick_precision, precision_of
from zppo_trl.rewards import boxed_accuracy_reward

EXAMPLE_DEFAULTS = dict(
    model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct",
    dataset_name="openai/gsm8k",
    dataset_config="main",
    output_dir="zppo-Qwen2.5-0.5B-gsm8k",
    teacher_column="solution",  # GSM8K's reasoning, parsed by to_zppo_format into a solution ending in \boxed{}
    answer_format_instruction="Put the final answer in \\boxed{}.",  # what boxed_accuracy_reward reads
    use_peft=True,
    lora_r=16,
    lora_alpha=32,
    lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    learning_rate=1e-5,  # LoRA takes a larger step than the paper's full fine-tuning 1e-6
    per_device_train_batch_size=16,  # 2 questions x 8 completions per micro-batch
    num_generations=8,
    max_completion_length=512,
    candidate_max_tokens=256,
    hint_prompt_max_tokens=1024,
    activation_checkpointing=True,
    logging_steps=5,
    report_to="none",
)


def make_parser() -> TrlParser:
    parser = TrlParser((ScriptArguments, ZPPOConfig, ModelConfig))
    parser.set_defaults(**EXAMPLE_DEFAULTS)  # flags and a --config YAML still override them
    return parser


def parse_config(argv: list[str] | None = None):
    """`(script_args, training_args, model_args)`: this example's defaults, then the YAML, then the flags; precision
    by the device for the settings not given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    given = given_keys(argv)
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        args=[*device_flags(pick_precision(), given), *argv]
    )
    if "dtype" not in given:  # a frozen base (LoRA, QLoRA) in the 16-bit format the GPU computes in
        frozen = model_args.use_peft or model_args.load_in_4bit or model_args.load_in_8bit
        model_args.dtype = model_dtype_name(precision_of(training_args), frozen)
    return script_args, training_args, model_args


def main(argv: list[str] | None = None) -> ZPPOTrainer:
    script_args, training_args, model_args = parse_config(argv)

    ################
    # Model
    ################
    training_args.model_init_kwargs = dict(
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )

    ################
    # Dataset: GSM8K's `question` becomes a chat prompt, its `answer` the gold `answer` and a worked `solution`
    ################
    source = load_source(script_args.dataset_name, script_args.dataset_config)
    train_dataset = to_zppo_format(pick_split(source, script_args.dataset_train_split)[0])

    ################
    # Training
    ################
    trainer = ZPPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        reward_funcs=boxed_accuracy_reward,
        train_dataset=train_dataset,
        quantization_config=get_quantization_config(model_args),  # --load_in_4bit: QLoRA
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    # Save and push to hub
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    return trainer


if __name__ == "__main__":
    main()
