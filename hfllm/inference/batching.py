"""Batched forward passes over tokenized rows: sorted by length so padding stays small, results in input order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def length_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Yield lists of row indices, longest rows first, `batch_size` at a time."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size].tolist()


def forward_logits(
    model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], batch_size: int
) -> list[np.ndarray]:
    """Return the logits of each row (trimmed to the row's own length for token-level heads), in order."""
    import torch

    out: list[np.ndarray | None] = [None] * len(rows)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in length_batches([len(r["input_ids"]) for r in rows], batch_size):
            features = [{k: rows[i][k] for k in MODEL_INPUTS if k in rows[i]} for i in batch]
            padded = tokenizer.pad(features, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in padded.items()}).logits.float().cpu().numpy()
            for j, i in enumerate(batch):
                out[i] = logits[j, : len(rows[i]["input_ids"])] if logits.ndim == 3 else logits[j]
    return out  # type: ignore[return-value]
