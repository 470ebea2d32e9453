"""The methods a round can run, one module each, a pure core first, then the round's steps (`round/run.py` calls
them in order): ZPPO's BCQ/NCQ hint groups (`zppo.py`), the paper's baselines Hint, Prefix and teacher-response
injection (`baselines.py`), ExGRPO experience replay (`exgrpo.py`), Retrospective Replay (`retrospective.py`)."""
