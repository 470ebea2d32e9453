"""Where is the embedded model's zone? Plain vs BCQ-hinted accuracy of SmolLM2-135M-Instruct per task family.

    python examples/probe_zone.py                      # every family in zppo_trl.demo_tasks.FAMILIES
    python examples/probe_zone.py --families add_2d,add_sub --questions 8 --samples 8

Per family: `--questions` questions (seed `--seed`), `--samples` completions each at temperature 1 (top-k off, as
TRL samples), `--max_new_tokens` new tokens, the demo's answer-format instruction, scored with the demo's
correctness reward (`final_answer_reward`). The BCQ prompt is the one ZPPO builds (`prompts.build_hint_prompt`,
the demo's token budgets): the family's worked solution as the correct candidate and one of the question's own
wrong plain samples (seeded choice) as the wrong one; a question with no wrong plain sample gets no BCQ samples.
Prints a markdown table (and writes it to `--out` as JSON when given). `--save_completions FILE` writes every plain
completion as JSON lines (family, question, answer, completion, the extracted final answer).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from zppo_trl.demo_tasks import FAMILIES, generate
from zppo_trl.models import embedded_model_path
from zppo_trl.prompts import HintNotBuilt, build_hint_prompt
from zppo_trl.rewards import answer_extractor, final_answer_reward
from zppo_trl.text import append_to_prompt

INSTRUCTION = "Put the final answer in \\boxed{}, for example \\boxed{7}."


@torch.no_grad()
def sample(model, tokenizer, prompts: list, num_samples: int, max_new_tokens: int) -> list[list[str]]:
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(
        **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
        num_return_sequences=num_samples, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    decoded = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return [decoded[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


def probe_family(model, tokenizer, family, args) -> dict:
    tasks = generate(family, args.questions, args.seed)
    questions = [[{"role": "user", "content": t.question}] for t in tasks]
    golds = [str(t.answer) for t in tasks]
    plain = sample(model, tokenizer, [append_to_prompt(q, args.instruction) for q in questions], args.samples,
                   args.max_new_tokens)  # fmt: skip
    plain_scores = [final_answer_reward(c, [g] * len(c)) for c, g in zip(plain, golds)]

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    hinted, hinted_golds = [], []
    for i, (question, task, completions, scores) in enumerate(zip(questions, tasks, plain, plain_scores)):
        wrong = [c for c, s in zip(completions, scores) if s == 0.0]
        if not wrong:
            continue
        rng = random.Random(f"{args.seed}-{family}-{i}")
        try:
            prompt = build_hint_prompt(
                "bcq", question, wrong, rng, correct=task.solution, instruction=args.instruction,
                max_prompt_tokens=args.hint_prompt_max_tokens, max_candidate_tokens=args.candidate_max_tokens,
                count_tokens=count, extract_answer=answer_extractor(final_answer_reward),
            )  # fmt: skip
        except HintNotBuilt:  # every wrong rollout blank: the trainer would build no BCQ either
            continue
        hinted.append(prompt)
        hinted_golds.append(golds[i])
    bcq_scores = []
    if hinted:
        bcq = sample(model, tokenizer, hinted, args.samples, args.max_new_tokens)
        bcq_scores = [final_answer_reward(c, [g] * len(c)) for c, g in zip(bcq, hinted_golds)]
    flat_plain = [s for row in plain_scores for s in row]
    flat_bcq = [s for row in bcq_scores for s in row]
    per_question = [int(sum(row)) for row in plain_scores]
    return {
        "family": family,
        "description": FAMILIES[family][1],
        "plain_correct": int(sum(flat_plain)),
        "plain_samples": len(flat_plain),
        "plain_per_question": per_question,
        "bcq_correct": int(sum(flat_bcq)),
        "bcq_samples": len(flat_bcq),
        "bcq_questions": len(hinted),
        "plain_completions": [
            {
                "family": family,
                "question": t.question,
                "answer": g,
                "completion": c,
                "final_answer": answer_extractor(final_answer_reward)(c),
            }
            for t, g, cs in zip(tasks, golds, plain)
            for c in cs
        ],  # fmt: skip
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--hint_prompt_max_tokens", type=int, default=256)
    parser.add_argument("--candidate_max_tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instruction", default=INSTRUCTION, help="answer-format instruction ('' for none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--save_completions", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    results = []
    print("| family | plain accuracy | BCQ-hinted accuracy | samples (plain / BCQ) | plain correct per question |")
    print("|---|---|---|---|---|")
    for family in args.families.split(","):
        start = time.time()
        r = probe_family(model, tokenizer, family, args)
        r["seconds"] = round(time.time() - start, 1)
        results.append(r)
        bcq = f"{r['bcq_correct']}/{r['bcq_samples']}" if r["bcq_samples"] else "n/a"
        print(f"| {family} ({r['description']}) | {r['plain_correct']}/{r['plain_samples']} | {bcq} | "
              f"{r['plain_samples']} / {r['bcq_samples']} | {r['plain_per_question']} |", flush=True)  # fmt: skip
    if args.save_completions:
        with open(args.save_completions, "w") as f:
            f.writelines(json.dumps(c) + "\n" for r in results for c in r["plain_completions"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
