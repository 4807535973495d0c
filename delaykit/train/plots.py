"""Loss curves of a run as a PNG a person can look at (``delaykit train plot RUN_DIR``).

Reads the run's ``metrics.jsonl`` and draws every loss it holds (keys ending in a loss name: ``loss``, ``text``,
``audio``, ``vad``, ``mel``, ``stft``...) against the step, one panel per metric, with accuracies (``*_acc``)
in a panel of their own. matplotlib is an optional dependency (``pip install delaykit[plot]``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .loop import METRICS_NAME

SKIPPED = {"step", "seen", "train_hours", "seen_per_second", "time", "lr", "grad_norm", "codebooks", "restarted"}


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The run's rows by step; where a killed run logged steps past its last checkpoint and the resumed run
    logged them again, the later row wins."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics to plot")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted({row["step"]: row for row in rows}.values(), key=lambda row: row["step"])


def plot_run(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write the run's curves to ``output`` (default ``RUN_DIR/metrics.png``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    rows = read_metrics(run_dir)
    steps = [row["step"] for row in rows]
    losses = sorted({k for row in rows for k in row if k not in SKIPPED and not k.endswith("_acc")})
    accuracies = sorted({k for row in rows for k in row if k.endswith("_acc")})
    panels = [[k] for k in losses] + ([accuracies] if accuracies else [])
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), sharex=True, squeeze=False)
    for axis, keys in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            axis.plot(steps, [row.get(key, float("nan")) for row in rows], label=key, linewidth=1.2)
        axis.set_ylabel(keys[0] if len(keys) == 1 else "accuracy")
        if len(keys) > 1:
            axis.legend(loc="lower right", fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.suptitle(str(Path(run_dir).name))
    figure.tight_layout()
    output = Path(output) if output is not None else Path(run_dir) / "metrics.png"
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
