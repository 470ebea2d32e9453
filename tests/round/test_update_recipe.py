"""The update recipe and the sampler: what TRL's defaults do to ZPPO, and that evaluation samples as training does.

ZPPOConfig keeps TRL's optimizer defaults (a drop-in for GRPOConfig); the trainer says where they differ from the
paper's recipe (Tab. 8), and with the paper's 4 updates per rollout the clip acts, which with one update it cannot."""

import warnings

from zppo_trl import ZPPOConfig
from zppo_trl.evaluation import plain_accuracy, training_sampler
from zppo_trl.rewards import final_answer_reward
from zppo_trl.tiny import addition_dataset, build_tiny_llama
from zppo_trl.validation import paper_recipe_differences, updates_per_rollout

PAPER = dict(steps_per_generation=4, lr_scheduler_type="constant", weight_decay=0.1)


def digit_share(completions, **kwargs):  # a dense reward: groups have variance, so advantages are not all zero
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def _clip_fractions(trainer) -> list[float]:
    return [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]


def test_trls_defaults_are_kept_and_named_where_they_differ_from_the_paper(make_trainer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(final_answer_reward)
    messages = [str(w.message) for w in caught if "not the paper's" in str(w.message)]
    assert len(messages) == 1, messages
    for part in ("1 optimizer update(s) per rollout", "lr_scheduler_type='linear'", "weight_decay=0.0",
                 "the clip never acts"):  # fmt: skip
        assert part in messages[0]
    assert updates_per_rollout(trainer.args) == 1 and trainer.args.lr_scheduler_type == "linear"


def test_the_papers_recipe_is_not_warned_about_and_its_clip_acts(make_trainer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(digit_share, max_steps=4, learning_rate=0.05, **PAPER)
    assert not [w for w in caught if "not the paper's" in str(w.message)]
    assert paper_recipe_differences(trainer.args) == [] and updates_per_rollout(trainer.args) == 4
    trainer.train()
    fractions = _clip_fractions(trainer)
    assert len(fractions) == 4 and fractions[0] == 0.0  # the first update of a round: ratio 1
    assert max(fractions[1:]) > 0, fractions  # later updates of the same rollouts: the ratio moved, the clip acts


def test_with_one_update_per_rollout_the_clip_never_acts(make_trainer):
    trainer = make_trainer(digit_share, max_steps=4, learning_rate=0.05)
    trainer.train()
    assert _clip_fractions(trainer) == [0.0] * 4


def test_evaluation_samples_with_the_training_sampler(tokenizer, tmp_path):
    args = ZPPOConfig(str(tmp_path), use_cpu=True, bf16=False, report_to="none", min_p=0.1, top_k=5,
                      generation_kwargs={"typical_p": 0.9, "max_new_tokens": 3})  # fmt: skip
    assert training_sampler(args) == {"temperature": 1.0, "top_p": 1.0, "top_k": 5, "min_p": 0.1,
                                      "repetition_penalty": 1.0, "typical_p": 0.9}  # fmt: skip
    # the sampler reaches generation: keeping only the top token makes every seed sample the same completions
    model, data = build_tiny_llama(tokenizer), addition_dataset(8).map(lambda r, i: {"answer": str(i % 10)},
                                                                        with_indices=True)  # fmt: skip
    runs = {seed: plain_accuracy(model, tokenizer, data, num_samples=4, max_new_tokens=6, seed=seed, sampler={"top_k": 1},
                                 reward=final_answer_reward)["per_question"] for seed in (0, 1)}  # fmt: skip
    free = {seed: plain_accuracy(model, tokenizer, data, num_samples=4, max_new_tokens=6, seed=seed,
                                 reward=final_answer_reward)["per_question"] for seed in (0, 1)}  # fmt: skip
    assert runs[0] == runs[1]
    assert free[0] != free[1] or runs[0] != free[0]  # the default sampler really samples
