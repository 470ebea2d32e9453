"""Retrospective Replay (RRL, arXiv 2504.14363), adapted to GRPO: which partial reasoning *states* of hard questions
are kept, which are replayed, and when a state is dropped. Its buffer is `buffers/states.py`; here the pure pieces
(where a rollout is cut, which states a round replays) and the round's steps. The round rolls out the continuations
through the Prefix baseline's path in `baselines.py` (the state is a prefix the student continues, its tokens carry
no loss, the reward reads state + continuation).

The paper observes that early in training the model explores solution ideas it cannot yet finish, that the policy
gradient suppresses them, and replays *promising intermediate states* found early so that the stronger later policy
restarts generation from them. It finds them with PPO's value model. GRPO has no value model, so this adaptation
(ours) judges a state by Monte-Carlo evidence the trainer already has:

- **State**: a prefix of a *correct* plain rollout of a hard question (`rollout_state`): its first `state_fraction`
  of tokens, snapped back to the last line break or sentence end inside the cut (a step boundary), never blank and
  never stating the gold answer (`baselines.mentions_answer`, the Hint baseline's rule, stricter than comparing the
  extracted final answer: a line that already computed the answer is cut off too, so the continuation must still
  do the last step rather than copy it). Only correct rollouts: one of their continuations is known to succeed, which
  is the only evidence a value-free method has for free.
- **Harvest** (`RetrospectiveBuffer.harvest`): a plain visit with `0 < accuracy < hard_threshold` (hard, as in the
  ZPPO buffer, and solved at least once) offers one state; at most one state per question. The offer replaces the
  stored state unless the stored one has been replayed and its *measured* continuation success (successes / tries,
  no prior) beats the question's plain accuracy: measured evidence beats the single success a fresh harvest has,
  and between two states with one success each the newer one comes from a policy closer to the one that continues
  it. The paper stores states early: `harvest_until_round` closes the harvest after that many rounds (default
  None: always open, since "early" depends on the run's length).
- **Promise** (`is_promising`): continuation success with the harvest counted as a 1-of-1 prior,
  `(successes + 1) / (tries + 1)`, above the question's latest plain accuracy. The prior makes a fresh state
  promising (a hard question's accuracy is < 1) and fades as replays are measured. A state that is not promising
  after `min_tries` replayed continuations is dropped; so is every state of a question that graduates (plain
  accuracy >= `hard_threshold`).
- **Selection** (`select_states`): lowest latest plain accuracy first, ties in a random order drawn from the
  caller's rng (ours: the same hardest-first order as ZPPO's hints, so a comparison of methods compares mechanisms,
  not question choice). Eligible: states that are promising, and states with fewer than `min_tries` tries (ours: a
  state that looks unpromising after a small first replay would otherwise never be tried again, never reach a
  verdict, and hold a slot until evicted).
- **Capacity**: a count of states, oldest stored first out (FIFO); a replaced state is a new state (FIFO tail).

Continuations of a replayed state are not plain rollouts: they update the state's counts (`record_replay`), never the
question's plain accuracy (`record_plain`), as hint rollouts never change the ZPPO buffer. Only plain rollouts are
harvested. Every counter and state is in `state_dict()`, identical on every process when every process feeds the
same visits (the trainer gathers them), like `buffer.HardQuestionBuffer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import torch

from ..buffers.replay import ratio_count, round_rng
from ..buffers.states import RetrospectiveBuffer, is_promising
from ..round.visits import HardVisit, fit_to_unit
from ..text import completion_text
from .baselines import PREFIX_KEY, mentions_answer, prefix_row, solution_prefix

# a step boundary ends right after a line break, or after sentence-ending punctuation followed by whitespace (so
# "8.5" is not one); the whitespace after a sentence is left to the continuation, as BPE tokenizers write " The"
_STEP_BOUNDARY = re.compile(r"\n|[.!?](?=\s)")


# --------------------------------------------------------------------------------------------------------------------
# states: where a rollout is cut


def rollout_state(
    completion: str,
    answer: str,
    tokenize: Callable[[str], Sequence[int]],
    detokenize: Callable[[Sequence[int]], str],
    state_fraction: float = 0.5,
) -> str | None:
    """The state a correct rollout offers: the first `ceil(state_fraction * n)` of its `n` tokens (at least one, never
    all, as `baselines.solution_prefix`), snapped back to the last step boundary (line break, sentence end) inside
    the cut. The cut never states the gold `answer` (`mentions_answer`): when the last boundary's prefix does, an
    earlier boundary is used. Without a usable boundary the token cut itself is kept, provided it is not blank and
    neither it nor the word it ends inside states the answer (a cut "…is 1" of "…is 18" hands over half of 18).
    None when nothing qualifies.

    Example:
    ```python
    >>> words = lambda text: re.findall(r"\\S+|\\s+", text)
    >>> rollout_state("3 + 4 = 7.\\nThen 7 + 1 = 8.\\nSo \\\\boxed{8}", "8", words, "".join, 0.9)  # "…8.\\n" has 8
    '3 + 4 = 7.\\n'
    ```
    """
    if not 0.0 < state_fraction < 1.0:
        raise ValueError(f"`state_fraction` must be in (0, 1), got {state_fraction!r}. Use 0.5 (ours).")
    cut = solution_prefix(completion, state_fraction, tokenize, detokenize)
    # the text after the cut, when the tokenizer round-trips: decides whether a final "." ends a sentence
    rest = completion[len(cut) :] if completion.startswith(cut) else ""
    ends = [m.end() for m in _STEP_BOUNDARY.finditer(cut + rest[:1]) if m.end() <= len(cut)]
    for end in reversed(ends):
        state = cut[:end]
        if state.strip() and not mentions_answer(state, answer):
            return state
    word_tail = re.match(r"\S*", rest).group() if cut and not cut[-1].isspace() else ""
    if cut.strip() and not mentions_answer(cut + word_tail, answer):
        return cut
    return None


def harvest_state(
    completions: Sequence[str],
    correct: Sequence[bool],
    answer: str,
    tokenize: Callable[[str], Sequence[int]],
    detokenize: Callable[[Sequence[int]], str],
    state_fraction: float = 0.5,
) -> str | None:
    """The state a plain group offers: that of its first correct rollout that has one (`rollout_state`), or None.
    Rollouts of a group are i.i.d. samples, so the first correct one is as good as a random one."""
    for completion, ok in zip(completions, correct, strict=True):
        if ok and (state := rollout_state(completion, answer, tokenize, detokenize, state_fraction)) is not None:
            return state
    return None


# --------------------------------------------------------------------------------------------------------------------
# replay selection and reports


def select_states(buffer: RetrospectiveBuffer, n: int, rng, exclude: Iterable = ()) -> list:
    """Up to `n` question ids whose state a round replays, each at most once: eligible states (promising, or with
    fewer than `min_tries` tries) of questions not in `exclude`, lowest latest plain accuracy first, ties in an order
    shuffled by `rng` (a `random.Random`) from the sorted ids, so the choice is the same on every process for the
    same buffer and seed."""
    if n <= 0:
        return []
    exclude = set(exclude)
    ids = sorted((pid for pid in buffer if pid not in exclude), key=lambda pid: (isinstance(pid, str), pid))
    eligible = [pid for pid in ids if is_promising(s := buffer.state(pid)) or s.tries < buffer.min_tries]
    rng.shuffle(eligible)
    eligible.sort(key=lambda pid: buffer.state(pid).accuracy)  # stable: the shuffle breaks ties
    return eligible[:n]


def continuation_success_vs_plain(buffer: RetrospectiveBuffer) -> dict:
    """What the benchmark reports: for each held state that was replayed, its measured continuation success
    (successes / tries, no prior) beside its question's latest plain accuracy, their means (None without a replayed
    state), the number of held states never replayed, and over every recorded replay (dropped states included) the
    continuations' success rate beside the tries-weighted plain accuracy of their questions at the time."""
    replayed = [(pid, s) for pid in buffer if (s := buffer.state(pid)).tries]
    success = [s.successes / s.tries for _, s in replayed]
    plain = [s.accuracy for _, s in replayed]
    tries = buffer.replay_tries
    return {
        "prompt_ids": [pid for pid, _ in replayed],
        "continuation_success": success,
        "plain_accuracy": plain,
        "mean_continuation_success": sum(success) / len(success) if success else None,
        "mean_plain_accuracy": sum(plain) / len(plain) if plain else None,
        "unreplayed": len(buffer) - len(replayed),
        "all_replays_success": buffer.replay_successes / tries if tries else None,
        "all_replays_plain_accuracy": buffer.replay_plain_expected / tries if tries else None,
    }


# --------------------------------------------------------------------------------------------------------------------
# the round's steps (the state is `round.state.RunState`: its `states` buffer and `state_rows`)


def plan_states(state, num_new: int, unit: int, exclude: set, seams) -> list[tuple[str, dict]]:
    """The round's state continuations, identical on every process: `retrospective_ratio * N` stored states
    (hardest question first, none of a question that already has a hint group this round), cut to a multiple of
    `unit` (or repeated up to one unit), as `("retrospective", prefix row)`. Chosen before this round's states are
    harvested, so a state is always one found in an earlier round."""
    count = ratio_count(seams.args.retrospective_ratio, num_new)
    if count == 0:
        return []
    rng = round_rng(seams.args.seed, state.round, "retrospective")
    pids = select_states(state.retrospective, count, rng, exclude=exclude)
    rows = [
        prefix_row(state.retrospective_rows[pid], pid, "retrospective", state.retrospective.state(pid).prefix, seams)
        for pid in pids
    ]
    return fit_to_unit([("retrospective", row) for row in rows], unit)


def harvest_states(state, visits: list[HardVisit], correct, scored, completions: list, seams) -> None:
    """Every plain visit of the round updates its question's state; a hard visit solved at least once offers the
    state of its first correct rollout that has one (`harvest_state`)."""
    G, buffer, text = seams.num_generations, state.retrospective, seams.text
    for g, visit in enumerate(visits):
        n = int(scored[g].sum())
        if n == 0:
            continue
        accuracy = int(correct[g].sum()) / n
        found = None
        if 0 < accuracy < seams.args.hard_threshold:
            texts = [completion_text(c) for c in completions[g * G : (g + 1) * G]]
            answer = str(visit.row.get("answer", ""))
            found = harvest_state(
                texts, correct[g].tolist(), answer, text.tokenize, text.decode, seams.args.retrospective_state_fraction
            )
        if found is None:
            buffer.record_plain(visit.prompt_id, accuracy)
        else:
            buffer.harvest(visit.prompt_id, found, accuracy, state.round)
            state.retrospective_rows[visit.prompt_id] = visit.row
    state.retrospective_rows = {pid: state.retrospective_rows[pid] for pid in buffer.ids()}


def record_replays(state, states: list[tuple[str, dict]], correct: torch.Tensor, scored: torch.Tensor) -> tuple:
    """Each replayed state's continuations (`correct`, `scored`: `(groups, G)`, scored on state + continuation)
    update its counts, when the question still holds that state: a harvest between planning and rolling out (this
    round's, or with `hint_schedule="next_round"` the next round's too) may have replaced it, and the counts belong
    to the state that was continued. Returns the round's `(successes, tries)`."""
    for g, (_, row) in enumerate(states):
        held = state.retrospective.state(row["prompt_id"])
        if held is not None and held.prefix == row[PREFIX_KEY][0]:
            state.retrospective.record_replay(row["prompt_id"], int(correct[g].sum()), int(scored[g].sum()))
    return int(correct.sum()), int(scored.sum())


def metrics(state, replays: tuple[int, int]) -> dict[str, float]:
    counters, (successes, tries) = state.retrospective.counters(), replays
    return {
        "zppo/retrospective/buffer_size": float(len(state.retrospective)),
        "zppo/retrospective/total_stored": float(counters["stored"]),
        "zppo/retrospective/total_dropped_unpromising": float(counters["dropped_unpromising"]),
        "zppo/retrospective/continuation_success": successes / tries if tries else float("nan"),
    }
