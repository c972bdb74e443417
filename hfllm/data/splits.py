"""De-duplication and the deterministic train/validation/test assignment (made before any tokenizer)."""

from __future__ import annotations

import numpy as np

from hfllm.data.sources import SPLITS
from hfllm.errors import InputError


def keep_mask(drop: np.ndarray, hashes: np.ndarray, dedup: bool) -> tuple[np.ndarray, int]:
    """Return which rows survive the filters and exact de-duplication (first copy wins), and the duplicates."""
    keep = drop == 0
    if not dedup:
        return keep, 0
    kept_rows = np.flatnonzero(keep)
    _, first = np.unique(hashes[kept_rows], return_index=True)
    unique = np.zeros(len(drop), dtype=bool)
    unique[kept_rows[first]] = True
    return unique, int(keep.sum() - unique.sum())


def carve_count(n: int, ratio: float, reserved: int) -> int:
    """Return how many of `n` documents a `ratio` gets: at least one when the ratio is > 0 and train keeps some."""
    if ratio <= 0:
        return 0
    count = int(round(n * ratio))
    if count == 0 and n - reserved >= 2:
        count = 1
    return count


def assign_splits(
    keep: np.ndarray, given: np.ndarray, validation: float, test: float, seed: int
) -> dict[str, np.ndarray]:
    """Return the sorted row indices of each split.

    `given` holds the split code each row's input was named for (-1: pooled). A split with inputs of its
    own uses them; otherwise its ratio of the pool (pooled rows plus rows given as train) is drawn with a
    seeded permutation, so the same inputs and seed always give the same splits and no row is in two.
    """
    rows = np.flatnonzero(keep)
    codes = given[rows]
    has_given = {name: bool((codes == i).any()) for i, name in enumerate(SPLITS)}
    pool = rows[(codes == -1) | (codes == 0)]
    out = {name: rows[codes == i] for i, name in enumerate(SPLITS) if has_given[name]}
    n_test = 0 if has_given["test"] else carve_count(len(pool), test, 0)
    n_val = 0 if has_given["validation"] else carve_count(len(pool), validation, n_test)
    order = pool[np.random.default_rng(seed).permutation(len(pool))]
    carved = {"test": order[:n_test], "validation": order[n_test : n_test + n_val]}
    for name, taken in carved.items():
        if not has_given[name]:
            out[name] = taken
    out["train"] = order[n_test + n_val :]
    # Sorted indices keep each split in input order, so reading it back walks the Arrow file forward.
    return {name: np.sort(out.get(name, np.empty(0, dtype=np.int64))) for name in SPLITS}


def check_train(splits: dict[str, np.ndarray], kept: int) -> None:
    """Raise InputError when the train split came out empty."""
    if len(splits["train"]) == 0:
        raise InputError(
            f"no documents left for the train split ({kept} kept after cleaning)",
            "give more data, lower split.validation/split.test, or relax the clean.* filters",
        )
