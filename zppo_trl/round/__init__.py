"""One generation round (`run.py`), TRL's rollout pass and the model's forwards it needs (`rollout.py`), the
micro-batch and loss seam (`loss.py`), the round's tensors (`advantages.py`, `batching.py`, `visits.py`), its metrics
(`metrics.py`) and the state a run resumes from (`state.py`)."""
