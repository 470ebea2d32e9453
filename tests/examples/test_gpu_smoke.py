"""scripts/gpu_smoke.py without a GPU: its run plan covers what the GPU check is for, its configs are the ones it
claims (the Qwen2.5 architectures, 512-token completions forced by min_new_tokens, GRPO with the buffer against
ZPPO, fp16 as a T4 runs it), and `--dry-run` drives its harness through one tiny CPU training step."""

import importlib.util
import os
import sys

import torch
from paths import ROOT


def load_smoke():
    spec = importlib.util.spec_from_file_location("gpu_smoke", os.path.join(ROOT, "scripts", "gpu_smoke.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_plan_pairs_grpo_with_the_buffer_and_zppo_over_both_quantisations_precisions_and_sizes():
    smoke = load_smoke()
    runs = smoke.plan()
    configurations = {(r.model, r.quant, r.precision) for r in runs}
    for configuration in configurations:  # every configuration runs both methods, so they compare like for like
        assert {r.method for r in runs if (r.model, r.quant, r.precision) == configuration} == set(smoke.METHODS)
    for size in ("0.5B", "1.5B"):
        assert {r.quant for r in runs if r.model == size} == {True, False}
        assert {r.precision for r in runs if r.model == size} == {"bf16", "fp16"}
    quick = smoke.plan(quick=True)
    assert {r.model for r in quick} == {"0.5B"} and {r.precision for r in quick} == {"bf16", "fp16"}
    assert [r for r in smoke.plan(liger=True) if r.liger] and len({r.name for r in runs}) == len(runs)


def test_the_architectures_are_qwen25_at_their_published_sizes():
    smoke = load_smoke()
    # Qwen2.5-0.5B: 0.49B parameters, Qwen2.5-1.5B: 1.54B (tied embeddings, 151,936-token vocabulary)
    assert round(smoke.parameter_count("0.5B") / 1e9, 2) == 0.49
    assert round(smoke.parameter_count("1.5B") / 1e9, 2) == 1.54
    tokenizer = smoke.build_tokenizer(smoke.QWEN25_SHARED["vocab_size"])
    assert len(tokenizer) == 151936 and tokenizer.decode([151935]) == "<t151835>"  # every sampled id decodes


def test_run_configs_force_512_tokens_and_differ_only_in_the_method(tmp_path):
    smoke = load_smoke()
    grpo, zppo = (smoke.run_args(smoke.Run("0.5B", True, "fp16", method), str(tmp_path), cpu=True)
                  for method in ("grpo+buffer", "zppo"))  # fmt: skip
    for args in (grpo, zppo):
        assert args.max_completion_length == args.generation_kwargs["min_new_tokens"] == 512
        assert args.fp16 and not args.bf16 and args.model_init_kwargs["dtype"] == torch.float16
        assert args.model_init_kwargs["quantization_config"].bnb_4bit_compute_dtype == torch.float16  # T4: fp16
    assert (grpo.hint_ratio, grpo.replay_ratio) == (0.0, 0.25) and (zppo.hint_ratio, zppo.replay_ratio) == (0.25, 0.25)
    differing = {k for k, v in grpo.to_dict().items() if zppo.to_dict().get(k) != v}
    assert differing == {"hint_ratio"}
    assert smoke.hashed_reward(["a", "a", "b"]) == smoke.hashed_reward(["a", "a", "b"])  # fixed by the text


def test_dry_run_builds_the_plan_and_trains_a_tiny_step_through_the_harness(capsys):
    assert load_smoke().main(["--dry-run", "--quick"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("PLAN qwen2.5-0.5B") == 4 and "min_new_tokens 512" in printed
    harness = next(line for line in printed.splitlines() if line.startswith("HARNESS"))
    assert "completion length 8" in harness and "finite losses True" in harness and "hint prompts" in harness
