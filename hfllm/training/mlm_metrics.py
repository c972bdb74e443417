"""Masked-LM metrics: masked-token accuracy without holding logits, perplexity, the unigram baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def argmax_logits(logits: Any, labels: Any) -> Any:
    """Return the predicted token ids, so evaluation keeps ids (8 bytes a token), not vocab-wide logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def masked_accuracy(eval_pred: Any) -> dict[str, float]:
    """Return {"masked_accuracy": share of masked tokens predicted exactly}."""
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    masked = labels != -100
    total = int(masked.sum())
    correct = int((predictions[masked] == labels[masked]).sum()) if total else 0
    return {"masked_accuracy": correct / total if total else 0.0}


def perplexity(loss: float | None) -> float | None:
    """Return exp(loss), capped so a diverged run reports inf instead of overflowing."""
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else float("inf")


def token_counts(dataset: Any, vocab_size: int, special_ids: list[int], batch_size: int = 4096) -> np.ndarray:
    """Return how often each token id occurs in `dataset` (special tokens not counted)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    column = dataset.data.table.column("input_ids")
    import pyarrow.compute as pc

    for chunk in column.chunks:
        ids = pc.list_flatten(chunk).to_numpy(zero_copy_only=False)
        counts += np.bincount(ids, minlength=vocab_size)[:vocab_size]
    counts[[i for i in special_ids if i < vocab_size]] = 0
    return counts


def unigram_log_probs(train: Any, vocab_size: int, special_ids: list[int]) -> np.ndarray:
    """Return add-one smoothed log frequencies of each token id in the train split."""
    counts = token_counts(train, vocab_size, special_ids)
    return np.log((counts + 1) / (counts.sum() + vocab_size))


def unigram_perplexity(train: Any, validation: Any, vocab_size: int, special_ids: list[int]) -> float:
    """Return the perplexity of predicting each validation token from train-split frequencies alone.

    The baseline a masked LM must beat: it knows which words are common, nothing about context.
    Add-one smoothing keeps tokens unseen in training finite.
    """
    log_probs = unigram_log_probs(train, vocab_size, special_ids)
    valid_counts = token_counts(validation, vocab_size, special_ids)
    total = valid_counts.sum()
    if total == 0:
        return float("nan")
    return float(math.exp(-(valid_counts * log_probs).sum() / total))
