"""Evaluation reports: the per-class table and the confusion-matrix plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.fsutil import atomic_save_figure, atomic_write_text


def per_class_report(per_class: dict[str, dict[str, Any]], title: str) -> str:
    """Return a fixed-width per-class table (precision, recall, F1, support), like scikit-learn's."""
    width = max([len(name) for name in per_class] + [12])
    lines = [title, "", f"{'':<{width}}  precision     recall         f1    support"]
    for name, row in per_class.items():
        lines.append(
            f"{name:<{width}}  {row['precision']:>9.4f}  {row['recall']:>9.4f}  {row['f1']:>9.4f}  {row['support']:>9d}"
        )
    return "\n".join(lines) + "\n"


def write_report(path: Path, per_class: dict[str, dict[str, Any]], title: str) -> Path:
    """Return `path` after writing the per-class table there."""
    atomic_write_text(path, per_class_report(per_class, title))
    return path


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    """Return `path` after drawing the confusion matrix (rows gold, columns predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(matrix)
    size = max(4.0, 0.55 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="examples")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("gold label")
    ax.set_title(title)
    threshold = values.max() / 2 if values.size else 0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(
                j,
                i,
                str(values[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if values[i, j] > threshold else "black",
            )
    fig.tight_layout()
    return atomic_save_figure(fig, path)
