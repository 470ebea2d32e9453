"""`ZPPOConfig`: GRPOConfig plus the ZPPO fields. Only the new fields live here; see `trl.GRPOConfig` for the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from .methods import exgrpo
from .methods.baselines import HINT_TYPES
from .round.advantages import ADVANTAGE_ESTIMATORS
from .teachers.server import url_has_credentials
from .templates import ANSWER_FORMAT_INSTRUCTION

HINT_SCHEDULES = ("same_round", "next_round")


@dataclass
class ZPPOConfig(GRPOConfig):
    r"""
    Configuration class for [`ZPPOTrainer`] (ZPPO, "Teacher in Prompts, Not Gradients", arXiv 2606.18216).

    This class holds only the ZPPO-specific parameters; every [`trl.GRPOConfig`] parameter works as in TRL.
    Defaults are the paper's (Tab. 8, App. C), with one exception: `answer_format_instruction` defaults to `None`
    (the paper appends its `<think>`/`\boxed{}` instruction to every prompt), because a library default that
    rewrites every prompt would silently change the user's data and chat format; pass `"paper"` for the paper's
    sentence. "Ours" marks choices the paper leaves open.

    Parameters:
        > Parameters that control the replay buffer

        hard_threshold (`float`, *optional*, defaults to `0.5`):
            τ: a question whose plain-rollout accuracy is below it is admitted to the buffer; a buffered question
            graduates when a later plain visit reaches it.
        replay_ratio (`float`, *optional*, defaults to `0.25`):
            Buffered questions replayed per round, as a fraction of the new prompts N (uniform draw, added to them).
        replay_capacity (`int`, *optional*, defaults to `10000`):
            Maximum number of questions in the buffer; the oldest is evicted beyond it (FIFO).

        > Parameters that control the hint prompts (BCQ / NCQ)

        hint_ratio (`float`, *optional*, defaults to `0.25`):
            At most this fraction of N hint prompts per round, for the hardest questions of the round.
        use_bcq (`bool`, *optional*, defaults to `True`):
            Build binary-choice prompts (one correct teacher candidate, one wrong student candidate).
        use_ncq (`bool`, *optional*, defaults to `True`):
            Build negative-choice prompts (the wrong answers and reasoning of the student).
        candidate_max_tokens (`int`, *optional*, defaults to `512`):
            Token budget of one candidate inside a hint prompt; longer ones keep their head and final answer.
        hint_prompt_max_tokens (`int`, *optional*, defaults to `4096`):
            Token budget of a whole hint prompt (question + candidates); the paper's maximum prompt length.
        bcq_match_lengths (`bool`, *optional*, defaults to `False`):
            Cut the longer BCQ candidate to the shorter one's length, a model-free way to hide which is correct by
            length. Off by default: it is not the paper's method (the paper has the teacher compress both,
            `teacher_compress`), and where the teacher's worked solution is the longer one it cuts the reasoning
            out, the content BCQ exists to show. Both candidates are otherwise shown whole, each cut only when over
            `candidate_max_tokens` (head and final answer kept).
        answer_format_instruction (`str`, *optional*):
            Sentence appended to every plain and hint prompt (and at evaluation); `None` appends nothing. The
            paper's sentence is `zppo_trl.ANSWER_FORMAT_INSTRUCTION`; pass `"paper"` to use it.

        hint_type (`str`, *optional*, defaults to `"bcq_ncq"`):
            How the teacher's solution reaches the student on the round's hardest questions: `"bcq_ncq"` (ZPPO), or
            one of the paper's baselines (`zppo_trl.methods.baselines`): `"hint"` (an answer-free hint in the prompt),
            `"prefix"` (the first `prefix_fraction` of a correct solution starts the answer, masked from the loss),
            `"teacher_response"` (GRPO† + teacher response: one wrong rollout of the plain group replaced by a correct
            teacher response scored 1; off-policy by design). All share the buffer, the hardest-first choice and the
            `hint_ratio` cap; `use_bcq`/`use_ncq` apply to `"bcq_ncq"` only.
        hint_schedule (`str`, *optional*, defaults to `"same_round"`):
            When a round's hint groups are rolled out. `"same_round"` (the paper's order): built from this round's
            plain rollouts and rolled out in a second generation pass of the same round. `"next_round"`: rolled out
            with the next round's plain prompts in its one generation pass (fresh on-policy samples; only the wrong
            candidate comes from a policy one update older). The first round then has no hint groups, and the hints
            planned in the last round are left in the saved state (a continued run rolls them out). Applies to every
            extra group (BCQ/NCQ, Hint, Prefix, Retrospective Replay's states); a prompt of another form than the
            plain rows (a Prefix or state row is rendered text) still takes a pass of its own.
        prefix_fraction (`float`, *optional*, defaults to `0.4`):
            α of the Prefix baseline: the share of a correct teacher solution's tokens given as the start of the answer.

        > Parameters of the other source papers' replay methods (off by default; combine freely with ZPPO)

        experience_ratio (`float`, *optional*, defaults to `0.0`):
            ExGRPO (arXiv 2510.02245, `zppo_trl.methods.exgrpo`): once a round's plain pass@1 exceeds
            `experience_start_accuracy`, `experience_ratio * N` partially solved questions per round are rolled out G
            times, the last rollout replaced by a stored success of the question trained with the shaped, unclipped
            weight f(w) = w / (w + `experience_beta`). Needs `beta=0`, token-level importance sampling and a
            `loss_type` linear in the ratio (`grpo`, `bnpo`, `dr_grpo`, `dapo`, `cispo`).
        experience_start_accuracy, experience_beta, experience_capacity:
            The delayed-start threshold (0.35), β of f(w) (0.1) and the number of questions kept (FIFO).
        retrospective_ratio (`float`, *optional*, defaults to `0.0`):
            Retrospective Replay (arXiv 2504.14363), adapted to GRPO (ours, `zppo_trl.methods.retrospective`): a
            prefix of a successful rollout of a hard question is a state, continued G times as its own group (the
            prefix masked from the loss) while its continuations beat the question's plain rollouts.
        retrospective_state_fraction, retrospective_capacity:
            The share of the rollout kept as the state (0.5) and the number of states kept (FIFO).

        > Parameters that control the teacher

        teacher_column (`str`, *optional*):
            Dataset column with a reference solution per question, used as the correct BCQ candidate (trusted, not
            re-scored). A `teacher=` callable passed to the trainer takes precedence.
        teacher_model (`str`, *optional*):
            A teacher model sampled `teacher_num_samples` times per hard question, correct samples kept: a local HF
            model id/path, or, with `teacher_base_url`, the model name an OpenAI-compatible server serves.
        teacher_base_url (`str`, *optional*):
            An OpenAI-compatible chat endpoint; the API key is read from `OPENAI_API_KEY`, never from the config.
        teacher_num_samples, teacher_max_new_tokens, teacher_timeout, teacher_max_concurrency, teacher_compress:
            G_T samples per hard question on every visit (4, paper §2 step 3), sampling length, per-request
            wall-clock timeout (s), concurrent server requests, and the paper's optional 5-line compression.

        > Parameters that control correctness and advantages

        correctness_reward (`str`, *optional*):
            Name (function `__name__`) or index of the reward function that decides correctness; the first one by
            default. Only it drives the buffer and the choice of wrong candidates.
        correct_threshold (`float`, *optional*, defaults to `0.5`):
            A rollout is correct when the correctness reward is `>=` this value.
        advantage_estimator (`str`, *optional*, defaults to `"zppo"`):
            `"zppo"`: the paper's "Norm w/o Zero" (group-centred, then normalised over the non-trivial groups of
            the round; trivial groups get 0). `"grpo"`: TRL's own estimator (`scale_rewards` etc. apply).
        exclude_zero_variance_groups (`bool`, *optional*, defaults to `False`):
            Leave the rollouts of groups whose rewards are all equal (no gradient) out of the loss normaliser, so the
            informative groups get the step they would get alone. `False` is the paper's token-level aggregation.

        > Parameters that control the published model

        base_model_id (`str`, *optional*):
            Hub id of the base model, recorded in a saved adapter's `adapter_config.json` and model card so that a
            pushed adapter loads anywhere; needed only when the model was loaded from a local folder.
        push_dataset_rows (`bool`, *optional*, defaults to `False`):
            Upload the buffered questions' dataset rows with a Hub push. By default what a push uploads holds no
            dataset text (ids and statistics); rows stay in local checkpoints, or are found again by id on resume.

    NOTE: the only GRPOConfig default changed is `epsilon_high=0.28` (paper clip range (0.20, 0.28)). The optimizer
    fields keep TRL's defaults (one update per rollout, linear decay, no weight decay), so that switching from
    GRPOConfig changes no optimizer setting; the trainer warns once where they differ from the paper's update recipe.
    The paper's full recipe, to set explicitly when you want it: `steps_per_generation=4 *
    gradient_accumulation_steps` (4 updates per rollout step, so the clip acts), `learning_rate=1e-6` (constant,
    `lr_scheduler_type="constant"`), `weight_decay=0.1`, `max_grad_norm=1.0`, `bf16=True`, `temperature=1.0`,
    `top_p=1.0`, `num_generations=8`, `beta=0.0` (no KL), `loss_type="dapo"` (token-level), `num_iterations=1`,
    `max_completion_length=12288`, 384 new prompts per rollout step.
    Dynamic sampling must stay off: it would discard exactly the all-wrong groups ZPPO exists for.
    """

    hard_threshold: float = field(
        default=0.5,
        metadata={"help": "τ: questions with plain accuracy below it enter the buffer and graduate on reaching it."},
    )
    replay_ratio: float = field(
        default=0.25,
        metadata={"help": "Buffered questions replayed per round, as a fraction of the new prompts (uniform draw)."},
    )
    replay_capacity: int = field(
        default=10_000,
        metadata={"help": "Maximum number of questions in the replay buffer; the oldest is evicted beyond it."},
    )
    hint_ratio: float = field(
        default=0.25,
        metadata={"help": "At most this fraction of the new prompts are added as BCQ/NCQ hint prompts per round."},
    )
    use_bcq: bool = field(
        default=True,
        metadata={"help": "Build binary-choice hint prompts: one correct teacher and one wrong student candidate."},
    )
    use_ncq: bool = field(
        default=True,
        metadata={"help": "Build negative-choice hint prompts: the student's wrong answers and reasoning."},
    )
    candidate_max_tokens: int = field(
        default=512,
        metadata={"help": "Token budget of one candidate in a hint prompt; the head and final answer are kept."},
    )
    hint_prompt_max_tokens: int = field(
        default=4096,
        metadata={"help": "Token budget of a whole hint prompt (question plus candidates)."},
    )
    bcq_match_lengths: bool = field(
        default=False,
        metadata={
            "help": "Cut the longer BCQ candidate to the shorter one's length (a model-free cue remover that cuts the "
            "teacher's reasoning out; not the paper's). False: both candidates whole, each within candidate_max_tokens."
        },
    )
    answer_format_instruction: str | None = field(
        default=None,
        metadata={
            "help": "Sentence appended to every plain and hint prompt and at evaluation; 'paper' uses the paper's "
            "<think>/\\boxed{} instruction, None appends nothing."
        },
    )
    hint_type: str = field(
        default="bcq_ncq",
        metadata={
            "help": "How the teacher's solution reaches the student on hard questions: 'bcq_ncq' (ZPPO), or the "
            "paper's baselines 'hint' (answer-free hint in the prompt), 'prefix' (forced solution prefix) or "
            "'teacher_response' (a correct teacher response injected into the student's group).",
            "choices": list(HINT_TYPES),
        },
    )
    hint_schedule: str = field(
        default="same_round",
        metadata={
            "help": "When hint groups are rolled out: 'same_round' (the paper's order, a second generation pass) or "
            "'next_round' (with the next round's plain prompts, in one generation pass).",
            "choices": list(HINT_SCHEDULES),
        },
    )
    prefix_fraction: float = field(
        default=0.4,
        metadata={"help": "Prefix baseline: share of a correct teacher solution's tokens that start the answer."},
    )
    experience_ratio: float = field(
        default=0.0,
        metadata={
            "help": "ExGRPO experience replay (arXiv 2510.02245): partially solved questions replayed per round, as a "
            "fraction of N; each group is G fresh rollouts with the last replaced by the question's lowest-entropy "
            "stored success. 0 turns it off; ExGRPO's paper uses 0.5."
        },
    )
    experience_start_accuracy: float = field(
        default=0.35,
        metadata={"help": "ExGRPO's delayed start: replay begins once a round's plain pass@1 exceeds this value."},
    )
    experience_beta: float = field(
        default=0.1,
        metadata={"help": "β of ExGRPO's shaped importance weight f(w) = w / (w + β) on a replayed trajectory."},
    )
    experience_capacity: int = field(
        default=10_000,
        metadata={"help": "Questions the experience buffer holds; the oldest is evicted beyond it (FIFO)."},
    )
    retrospective_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Retrospective Replay (arXiv 2504.14363, adapted to GRPO): stored promising states (prefixes of "
            "successful rollouts of hard questions) continued per round, as a fraction of N, each as its own group "
            "with the prefix masked from the loss. 0 turns it off."
        },
    )
    retrospective_state_fraction: float = field(
        default=0.5,
        metadata={"help": "Retrospective Replay: share of a successful rollout's tokens kept as the stored state."},
    )
    retrospective_capacity: int = field(
        default=10_000,
        metadata={"help": "States the Retrospective Replay buffer holds (one per question); FIFO eviction beyond it."},
    )
    teacher_column: str | None = field(
        default=None,
        metadata={"help": "Dataset column holding a reference solution per question, used as the BCQ candidate."},
    )
    teacher_model: str | None = field(
        default=None,
        metadata={
            "help": "A teacher model sampled for BCQ candidates: a local HF model id/path, or with teacher_base_url "
            "the model name served there."
        },
    )
    teacher_base_url: str | None = field(
        default=None,
        metadata={"help": "URL of an OpenAI-compatible chat server for the teacher, e.g. http://localhost:8000/v1."},
    )
    teacher_num_samples: int = field(
        default=4,
        metadata={"help": "G_T: teacher samples per hard question (model or server teacher); correct ones are kept."},
    )
    teacher_max_new_tokens: int = field(
        default=1024, metadata={"help": "Maximum new tokens per teacher sample (model or server teacher)."}
    )
    teacher_timeout: float = field(
        default=60.0, metadata={"help": "Seconds before a server-teacher request is abandoned (then retried)."}
    )
    teacher_max_concurrency: int = field(
        default=8, metadata={"help": "Maximum concurrent requests to the teacher server."}
    )
    teacher_compress: bool = field(
        default=False,
        metadata={"help": "Have the model teacher rewrite each kept sample as a 5-line summary (paper App. D.1)."},
    )
    correctness_reward: str | None = field(
        default=None,
        metadata={"help": "Name or index of the reward function that decides correctness (default: the first)."},
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base model, written into a saved adapter's config and model card when the model "
            "was loaded from a local folder (the embedded SmolLM2 is recognised by itself)."
        },
    )
    push_dataset_rows: bool = field(
        default=False,
        metadata={
            "help": "Upload the buffered questions' dataset rows (question, answer, solution, any other column) with "
            "a Hub push. False: pushed files hold question ids and statistics only; rows stay in local checkpoints "
            "(or, when hub_strategy uploads checkpoints, are found again in the training set by id on resume)."
        },
    )
    correct_threshold: float = field(
        default=0.5,
        metadata={"help": "A rollout is correct when the correctness reward is at least this value."},
    )
    advantage_estimator: str = field(
        default="zppo",
        metadata={
            "help": "Advantage estimator: 'zppo' (paper's Norm w/o Zero) or 'grpo' (TRL's own).",
            "choices": list(ADVANTAGE_ESTIMATORS),
        },
    )
    exclude_zero_variance_groups: bool = field(
        default=False,
        metadata={
            "help": "Leave zero-variance groups (all rollouts scored the same: no gradient) out of the loss "
            "normaliser, so informative groups are not diluted. False: the paper's token-level aggregation."
        },
    )
    epsilon_high: float | None = field(
        default=0.28,
        metadata={"help": "Upper clip epsilon; ZPPO uses the paper's 0.28 (clip range 0.20, 0.28)."},
    )

    def __post_init__(self):
        # Checked before GRPOConfig's own checks so that the message names the field (TRL's does not).
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError(
                f"`num_generations` must be >= 2, got {self.num_generations}: a group of one rollout has no baseline "
                "and never tells hard from easy. Use 8 (paper default) or at least 2."
            )
        _check_range("hard_threshold", self.hard_threshold, 0.0, 1.0, low_open=True, fix="Use 0.5 (paper default).")
        _check_range("correct_threshold", self.correct_threshold, None, None, fix="Use 0.5 for 0/1 rewards.")
        for name in ("replay_ratio", "hint_ratio"):
            _check_range(name, getattr(self, name), 0.0, None, fix="Use 0.25 (paper default) or 0 to turn it off.")
        for name in POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}. Keep the default or raise it.")
        if self.candidate_max_tokens > self.hint_prompt_max_tokens:
            raise ValueError(
                f"`candidate_max_tokens` ({self.candidate_max_tokens}) must not exceed `hint_prompt_max_tokens` "
                f"({self.hint_prompt_max_tokens}). Lower the first or raise the second."
            )
        if self.hint_type not in HINT_TYPES:
            raise ValueError(f"`hint_type` must be one of {HINT_TYPES}, got {self.hint_type!r}.")
        if self.hint_schedule not in HINT_SCHEDULES:
            raise ValueError(f"`hint_schedule` must be one of {HINT_SCHEDULES}, got {self.hint_schedule!r}.")
        _check_range("prefix_fraction", self.prefix_fraction, 0.0, 1.0, low_open=True, fix="Use 0.4 (paper default).")
        if self.hint_type != "bcq_ncq" and not (self.use_bcq and self.use_ncq):
            raise ValueError(
                f"`use_bcq={self.use_bcq}`, `use_ncq={self.use_ncq}` with `hint_type={self.hint_type!r}`: use_bcq and "
                "use_ncq choose between ZPPO's two hint prompts and apply to hint_type='bcq_ncq' only. Leave them True."
            )
        if self.hint_type != "bcq_ncq" and self.hint_ratio == 0:
            raise ValueError(
                f"`hint_type={self.hint_type!r}` with `hint_ratio=0` builds nothing: set hint_ratio > 0 (0.25, the "
                "paper's) or hint_type='bcq_ncq' for GRPO with the buffer (GRPO†)."
            )
        if self.hint_type == "teacher_response" and self.beta != 0:
            raise ValueError(
                f"`hint_type='teacher_response'` with `beta={self.beta}`: the injected response would need its "
                "reference log-probs, another forward pass ZPPO does not run. Set beta=0.0 (the paper's) or choose "
                "another hint_type."
            )
        if self.hint_type == "teacher_response" and self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"`hint_type='teacher_response'` with `multi_objective_aggregation="
                f"{self.multi_objective_aggregation!r}`: the advantages recomputed after the injection follow TRL's "
                "'sum_then_normalize' only. Set multi_objective_aggregation='sum_then_normalize' (the default)."
            )
        for name in ("experience_ratio", "retrospective_ratio"):
            _check_range(name, getattr(self, name), 0.0, None, fix="Use 0 (off) or e.g. 0.5 (ExGRPO's paper).")
        _check_range("experience_start_accuracy", self.experience_start_accuracy, 0.0, 1.0, fix="Use 0.35 (ExGRPO's).")
        _check_range("experience_beta", self.experience_beta, 0.0, None, low_open=True, fix="Use 0.1 (ExGRPO's).")
        _check_range(
            "retrospective_state_fraction", self.retrospective_state_fraction, 0.0, 1.0, low_open=True, fix="Use 0.5."
        )
        if self.experience_ratio > 0:
            exgrpo.check_compatible(self)
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ValueError(
                f"`advantage_estimator` must be one of {ADVANTAGE_ESTIMATORS}, got {self.advantage_estimator!r}."
            )
        if self.answer_format_instruction is not None and self.answer_format_instruction.strip().lower() == "paper":
            self.answer_format_instruction = ANSWER_FORMAT_INSTRUCTION
        if self.teacher_column is not None and not self.teacher_column.strip():
            raise ValueError("`teacher_column` is an empty string. Name a dataset column, or leave it None.")
        if self.teacher_column is not None and self.teacher_model is not None:
            raise ValueError(
                f"both `teacher_column={self.teacher_column!r}` and `teacher_model={self.teacher_model!r}` are set: "
                "choose one teacher source (unset the other)."
            )
        if self.teacher_base_url is not None and url_has_credentials(self.teacher_base_url):
            # the config is saved (training_args.bin, checkpoints) and shown (model card): a secret must not be in it
            raise ValueError(
                "`teacher_base_url` carries credentials (user:password@host, or a key or token in its query): the "
                "config is saved with the model and pushed to the Hub, so they would be published. Remove them from "
                "the URL and put the key in the OPENAI_API_KEY environment variable (sent as a Bearer token, never saved)."
            )
        if self.teacher_base_url is not None and self.teacher_model is None:
            raise ValueError(
                f"`teacher_base_url={self.teacher_base_url!r}` needs `teacher_model`, the model name the server serves."
            )
        _check_range("teacher_timeout", self.teacher_timeout, 0.0, None, low_open=True, fix="Use e.g. 60 seconds.")
        super().__post_init__()


POSITIVE_INT_FIELDS = (
    "replay_capacity",
    "candidate_max_tokens",
    "hint_prompt_max_tokens",
    "experience_capacity",
    "retrospective_capacity",
    "teacher_num_samples",
    "teacher_max_new_tokens",
    "teacher_max_concurrency",
)


def _check_range(name, value, low, high, low_open=False, fix=""):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN fails
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        hi = "" if high is None else f"{high}]"
        rule = f"in {lo}{hi or 'inf)'}" if lo else "a number"
        raise ValueError(f"`{name}` must be {rule}, got {value!r}. {fix}".strip())
