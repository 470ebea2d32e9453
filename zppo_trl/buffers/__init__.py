"""The buffers a run keeps across rounds: the hard-question buffer (`hard.py`) and which of its questions a round
replays (`replay.py`), ExGRPO's experience buffer (`experience.py`), Retrospective Replay's states (`states.py`).
Pure Python, no trainer: each is updated only from gathered values, so every process holds the same."""
