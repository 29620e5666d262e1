"""Confusion-matrix plot (PNG) of an evaluation report; matplotlib with the Agg backend, imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gateway.evaluation.aami import CLASS_NAMES


def plot_confusion(report: dict[str, Any], path: str | Path) -> None:
    """Row-normalised confusion matrices (detected and reference positions) side by side, counts annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    for ax, key, title in zip(axes, ("detected", "reference"), ("gateway's detected beats", "reference positions")):
        conf = np.asarray(report[key]["confusion"], dtype=float)
        rows = conf.sum(axis=1, keepdims=True)
        frac = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for i in range(conf.shape[0]):
            for j in range(conf.shape[1]):
                ax.text(j, i, f"{int(conf[i, j])}\n{100 * frac[i, j]:.1f}%", ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(title)
    fig.suptitle(f"model {report.get('model')}  records: {len(report['records'])}  (first 5 min excluded)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
