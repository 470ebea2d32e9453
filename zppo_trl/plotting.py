"""Buffer-dynamics figure from a run's saved logs (the only module that imports matplotlib).

`plot_graduation(run_dir)` reads `run_dir/trainer_state.json` (ZPPOTrainer writes it at the end of every run, not
only in checkpoints) and writes `run_dir/zppo_graduation.png`: cumulative graduations (solid) and admissions (dashed)
per entry bin k (correct plain rollouts out of G at admission) over training steps, in the style of the paper's
Fig. 4, and the buffer size over steps.
"""

from __future__ import annotations

import json
import os
import re

FIGURE_NAME = "zppo_graduation.png"
_BIN_KEY = re.compile(r"^zppo/total_(admitted|graduated)_bin_(\d+)$")


def buffer_series(log_history: list[dict]) -> dict:
    """`{"steps": [...], "buffer_size": [...], "admitted": {k: [...]}, "graduated": {k: [...]}}` from TRL logs."""
    rows = [h for h in log_history if "zppo/buffer_size" in h]
    series = {
        "steps": [h.get("step", i + 1) for i, h in enumerate(rows)],
        "buffer_size": [h["zppo/buffer_size"] for h in rows],
        "admitted": {},
        "graduated": {},
    }
    for i, h in enumerate(rows):
        for key, value in h.items():
            match = _BIN_KEY.match(key)
            if match:
                kind, k = match.group(1), int(match.group(2))
                series[kind].setdefault(k, [0.0] * len(rows))[i] = value
    return series


def plot_graduation(run_dir: str, out_path: str | None = None) -> str:
    """Write the figure for the run in `run_dir`; returns its path. Raises naming the file when logs are missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state_path = os.path.join(run_dir, "trainer_state.json")
    if not os.path.exists(state_path):
        raise FileNotFoundError(f"{state_path} not found: plot a folder written by ZPPOTrainer (its output_dir).")
    with open(state_path) as f:
        log_history = json.load(f)["log_history"]
    series = buffer_series(log_history)
    rows = [h for h in log_history if "zppo/buffer_size" in h]
    if not series["steps"]:
        raise ValueError(f"{state_path} holds no zppo/* metrics: was the run trained with ZPPOTrainer?")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    colors = plt.get_cmap("viridis")
    bins = sorted(series["admitted"])
    for j, k in enumerate(bins):
        color = colors(j / max(1, len(bins) - 1) * 0.85)
        left.plot(
            series["steps"],
            series["graduated"].get(k, [0] * len(series["steps"])),
            color=color,
            label=f"graduated, entry bin {k}",
        )
        left.plot(
            series["steps"],
            series["admitted"][k],
            color=color,
            linestyle="--",
            alpha=0.6,
            label=f"admitted, entry bin {k}",
        )
    left.set(title="Cumulative admissions and graduations", xlabel="step", ylabel="questions")
    left.legend(fontsize=7)
    right.plot(series["steps"], series["buffer_size"], color="black")
    exit_rates = [h["zppo/exit_rate"] for h in rows if "zppo/exit_rate" in h]
    exit_text = f", exit rate {exit_rates[-1]:.0%}" if exit_rates else ""  # graduated / (graduated + evicted)
    right.set(
        title=f"Buffer size (still in buffer {series['buffer_size'][-1]:.0f}{exit_text})",
        xlabel="step",
        ylabel="questions",
    )
    fig.tight_layout()
    out_path = out_path or os.path.join(run_dir, FIGURE_NAME)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
