"""`ZPPOConfig`: GRPOConfig plus the ZPPO fields. Only the new fields live here; see `trl.GRPOConfig` for the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from trl import GRPOConfig

from .methods.baselines import HINT_TYPES
from .round.advantages import ADVANTAGE_ESTIMATORS
from .templates import ANSWER_FORMAT_INSTRUCTION


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
            How the teacher's solution reaches the student on the round's hardest questions: `"bcq_ncq"` (ZPPO),
            or one of the paper's baselines, `"hint"` (an answer-free hint in `<hint>` tags) or `"prefix"` (the
            first `prefix_fraction` of a correct solution starts the answer, masked from the loss) or
            `"teacher_response"` (GRPO† + teacher response: no extra group; one wrong rollout of the question's plain
            group is replaced by a correct teacher response scored 1, after the buffer update, and the advantages
            are recomputed; off-policy by design, the baseline the paper argues against); see
            `zppo_trl.baselines`. All use the same buffer, the same hardest-first choice and the same `hint_ratio` cap
            (one group per question for `hint`/`prefix`, up to two for `bcq_ncq`, one injected response per group for
            `teacher_response`). `use_bcq`/`use_ncq` apply to `"bcq_ncq"` only: turning either off with another type
            raises, as does a baseline with `hint_ratio=0`, and `teacher_response` with `beta != 0` or
            `multi_objective_aggregation="normalize_then_sum"`.
        prefix_fraction (`float`, *optional*, defaults to `0.4`):
            α of the Prefix baseline: the share of a correct teacher solution's tokens given as the start of the answer.

        > Parameters of the other source papers' replay methods (off by default; combine freely with ZPPO)

        experience_ratio (`float`, *optional*, defaults to `0.0`):
            ExGRPO (arXiv 2510.02245): the experience buffer keeps the successful rollouts (token ids, generating
            log-probs) of partially solved questions (0 < k < G correct) and retires a question solved G/G. Once a
            round's plain pass@1 exceeds `experience_start_accuracy`, `experience_ratio * N` questions per round are
            drawn (accuracy buckets weighted by N(k/G; 0.5, 1)) and rolled out G times; the last rollout of each such
            group is replaced by the question's stored success with the lowest mean entropy under the current policy,
            trained with the shaped, unclipped weight f(w) = w / (w + `experience_beta`) (see `zppo_trl.experience`).
            Needs `beta=0`, token-level importance sampling and a `loss_type` whose loss is linear in the ratio
            (`grpo`, `bnpo`, `dr_grpo`, `dapo`, `cispo`). A question may sit in both buffers but is replayed by at
            most one per round (ZPPO's replay draws first).
        experience_start_accuracy, experience_beta, experience_capacity:
            The delayed-start threshold (0.35), β of f(w) (0.1) and the number of questions kept (FIFO).
        retrospective_ratio (`float`, *optional*, defaults to `0.0`):
            Retrospective Replay (arXiv 2504.14363), adapted to GRPO without a value model (ours; see
            `zppo_trl.retrospective`): a prefix of a successful rollout of a hard question (the first
            `retrospective_state_fraction` of its tokens, cut at a step boundary) is a state; a stored state is
            continued G times as its own group, the prefix masked from the loss (the Prefix baseline's path), while its
            continuations succeed more often than the question's plain rollouts.
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
            An OpenAI-compatible chat endpoint (`vllm serve`, `trl vllm-serve`, any provider); the API key is read
            from the `OPENAI_API_KEY` environment variable, never from the config.
        teacher_num_samples (`int`, *optional*, defaults to `4`):
            G_T, teacher samples per hard question on every visit (paper §2 step 3).
        teacher_max_new_tokens, teacher_timeout, teacher_max_concurrency, teacher_compress:
            Sampling length, per-request timeout (s), concurrent server requests, and the paper's optional
            5-line compression of each kept sample (model teacher).

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
            Leave the rollouts of groups whose rewards are all equal (all right or all wrong: zero advantage, no
            gradient) out of the loss normaliser: out of `num_items_in_batch` for `dapo`/`cispo`/`vespo`, and out of
            the micro-batch for the per-micro-batch normalisers of `grpo`/`sapo`/`bnpo`/`dr_grpo`/`luspo` (which
            then run as one forward, without the plain/hint split), so the informative groups get the step they
            would get alone. `False` is the paper's token-level aggregation over every rollout.
            With `beta > 0` the dropped rollouts' KL term goes too (they carry no other loss).

        > Parameters that control the published model

        base_model_id (`str`, *optional*):
            Hub id of the base model (e.g. `"Qwen/Qwen2.5-0.5B-Instruct"`), recorded as `base_model_name_or_path` in
            a saved adapter's `adapter_config.json` and as `base_model` in its model card, so that the pushed adapter
            loads anywhere. Needed only when the model was loaded from a local folder: a Hub id is recorded as it
            is, and the embedded SmolLM2-135M-Instruct is recognised by itself. Without it, a local base is kept as a
            path and a push warns that nobody else can load the adapter.
        push_dataset_rows (`bool`, *optional*, defaults to `False`):
            Upload the buffered questions' dataset rows with a Hub push. By default what a push uploads holds no
            dataset text: the output folder's `zppo_buffer_state.json` keeps question ids and statistics, and
            checkpoints keep the rows only while they are not uploaded (`hub_strategy` "every_save" or "end");
            under "checkpoint" / "all_checkpoints" they are left out and a resume finds them again in the training
            set by question id.

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
        for name in ("replay_capacity", "candidate_max_tokens", "hint_prompt_max_tokens"):
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
        for name in ("experience_capacity", "retrospective_capacity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}. Keep the default or raise it.")
        if self.experience_ratio > 0:
            _check_experience_compatible(self)
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
                "config is saved with the model and "
                "pushed to the Hub, so they would be published. Remove them from the URL and put the key in the "
                "OPENAI_API_KEY environment variable (sent as a Bearer token, never saved)."
            )
        if self.teacher_base_url is not None and self.teacher_model is None:
            raise ValueError(
                f"`teacher_base_url={self.teacher_base_url!r}` needs `teacher_model`, the model name the server serves."
            )
        for name in ("teacher_num_samples", "teacher_max_new_tokens", "teacher_max_concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        _check_range("teacher_timeout", self.teacher_timeout, 0.0, None, low_open=True, fix="Use e.g. 60 seconds.")
        super().__post_init__()


_SECRET_QUERY_KEYS = {"key", "api_key", "apikey", "api-key", "token", "access_token", "password", "secret"}


def url_has_credentials(url: str) -> bool:
    """Whether `url` carries a secret: a user or password before the host, or a key/token/password query field."""
    parts = urlsplit(url)
    return (
        parts.username is not None
        or parts.password is not None
        or any(name.lower() in _SECRET_QUERY_KEYS for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    )


# TRL losses that are linear in the importance ratio coef (see `experience.shaped_surrogate`)
EXPERIENCE_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")


def _check_experience_compatible(config) -> None:
    """ExGRPO's shaped weight reaches TRL's loss as a surrogate log-prob with a ratio of exactly 1; the options below
    read the log-probs in other ways (a KL term, a sequence-level ratio, a mask on the ratio, a non-linear gate)."""
    faults = []
    if config.beta != 0:
        faults.append(f"beta={config.beta} (set beta=0.0)")
    if config.loss_type not in EXPERIENCE_LOSS_TYPES:
        faults.append(f"loss_type={config.loss_type!r} (use one of {EXPERIENCE_LOSS_TYPES})")
    if config.importance_sampling_level != "token":
        faults.append(f"importance_sampling_level={config.importance_sampling_level!r} (use 'token')")
    if getattr(config, "off_policy_mask_threshold", None) is not None:
        faults.append(f"off_policy_mask_threshold={config.off_policy_mask_threshold} (leave it None)")
    if config.multi_objective_aggregation != "sum_then_normalize":
        faults.append(f"multi_objective_aggregation={config.multi_objective_aggregation!r} (use 'sum_then_normalize')")
    if faults:
        raise ValueError(
            f"`experience_ratio={config.experience_ratio}` (ExGRPO) cannot be combined with " + "; ".join(faults) + "."
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
