"""The paper's prompt templates (App. D.1, Figs. 8, 16–18): the BCQ and NCQ sentences, the answer-format instruction
and the teacher's compression prompt, as module constants (each builder takes its own as an argument too)."""

BCQ_TEMPLATE = (
    "Here are two candidate responses in <candidate> </candidate> tags to the question above. One is correct and "
    "another is wrong. Use these as references to help you solve the problem."
)
NCQ_TEMPLATE = (
    "The following answers are all WRONG: {answers}. Below are the incorrect reasoning processes in "
    "<candidate> </candidate> tags."
)
NCQ_NO_ANSWER = "(no final answer given)"  # ours: used when the answer extractor read no answer in any wrong rollout
ANSWER_FORMAT_INSTRUCTION = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. The "
    "reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)
COMPRESSION_TEMPLATE = (
    "Compress the response below into a summary (in 5 lines max). Rules:\n"
    "• Response is in <response>...</response> tags\n"
    "• Summary should be in <summary>...</summary> tags and should be in 5 lines max\n"
    "• Keep ONLY the essential reasoning steps and the final answer\n"
    "• Remove ALL exploratory text, self-corrections, retries, and filler\n"
    "• Do NOT re-derive or add new information\n"
    "• End with the final answer in \\boxed{{}} format <response>\n{candidate} </response>"
)
CANDIDATE_OPEN, CANDIDATE_CLOSE = "<candidate>", "</candidate>"
