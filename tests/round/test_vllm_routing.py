"""With vLLM, the round's rows reach the engine as TRL sends them: one generation request per round with
`hint_schedule="next_round"`, two (plain, then hints) with `"same_round"`. vLLM is stubbed at its boundary only
(`trainer.vllm_generation`, TRL's own object for it), so TRL's vLLM path (tokenised prompts in, completion ids and
log-probs out, the importance-sampling correction) runs on CPU; a real engine needs a GPU."""

import pytest
import torch
from scripted import ScriptedReward

from zppo_trl.tiny import addition_dataset


class FakeVLLM:
    """TRL's `VLLMGeneration` as the trainer calls it in colocate mode: one completion per prompt row."""

    def __init__(self, vocab_size: int):
        self.requests, self.vocab_size = [], vocab_size

    def sync_weights(self):
        pass

    def generate(self, prompts, images, num_generations, profiler=None):
        self.requests.append(len(prompts))
        generator = torch.Generator().manual_seed(len(self.requests))
        completions = [torch.randint(5, self.vocab_size, (6,), generator=generator).tolist() for _ in prompts]
        return prompts, completions, [[[-1.0] for _ in c] for c in completions], None


@pytest.mark.parametrize("schedule, passes", [("next_round", [1, 1, 1]), ("same_round", [2, 2, 2])])
def test_each_round_sends_its_rows_in_one_request_with_the_next_round_schedule(make_trainer, tokenizer, schedule,
                                                                                passes):  # fmt: skip
    trainer = make_trainer(ScriptedReward(), teacher_column="solution", hint_ratio=1.0, hint_schedule=schedule,
                           max_steps=3, dataset=addition_dataset(16))  # fmt: skip
    trainer.use_vllm, trainer.vllm_generation, trainer._last_loaded_step = True, FakeVLLM(len(tokenizer)), 0
    requests_per_round = []
    original = trainer._generate_and_score_completions

    def counted(inputs):
        before = len(trainer.vllm_generation.requests)
        output = original(inputs)
        requests_per_round.append(len(trainer.vllm_generation.requests) - before)
        return output

    trainer._generate_and_score_completions = counted
    trainer.train()
    assert requests_per_round == passes
    rows = trainer.vllm_generation.requests
    assert rows[0] == 8 and sum(rows) > 8 * 3  # the first round is plain only; later ones carry the hint rows too
