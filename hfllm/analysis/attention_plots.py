"""Heat maps of attention weights: all heads of one layer in a grid, and one head enlarged."""

from __future__ import annotations

import math
from pathlib import Path

from hfllm.fsutil import atomic_save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_heads(heads: list[list[list[float]]], tokens: list[str], layer: int, path: Path) -> Path:
    """Return `path` after drawing every head of `layer` as a small heat map (rows: queries, columns: keys)."""
    plt = _pyplot()
    n = len(heads)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 2.6 * cols), 2.6 * rows + 0.6), squeeze=False)
    top = max(max(row) for matrix in heads for row in matrix)  # one colour scale for the whole layer
    for index, ax in enumerate(axes.flat):
        if index >= n:
            ax.axis("off")
            continue
        ax.imshow(heads[index], cmap="viridis", vmin=0.0, vmax=top)
        ax.set_title(f"head {index}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"layer {layer}, {n} heads (rows attend to columns; colour scale 0 to {top:.2f})", fontsize=10
    )
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def plot_head(matrix: list[list[float]], tokens: list[str], layer: int, head: int | None, path: Path) -> Path:
    """Return `path` after drawing one head (or the heads' mean) with the tokens on both axes."""
    plt = _pyplot()
    size = max(4.0, 0.35 * len(tokens) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(max(row) for row in matrix))
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("attended to (key)")
    ax.set_ylabel("attending (query)")
    ax.set_title(f"layer {layer}, {'head ' + str(head) if head is not None else 'mean over heads'}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout()
    return atomic_save_figure(fig, path)
