"""How classification outputs become predictions and metrics: shared by finetune, evaluate and predict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hfllm.metrics import compute
from hfllm.tasks.names import IGNORE_INDEX, MULTI, REGRESSION, SINGLE, TOKEN
from hfllm.tasks.tagging import tag_scheme


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sequence_outputs(logits: np.ndarray, problem_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (predictions, scores) from sequence-classification logits of shape (n, num_labels).

    single-label: class id and its softmax probability; multi-label: 0/1 per label (sigmoid >= 0.5) and
    the sigmoid probabilities; regression: the value itself (score = value).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if problem_type == REGRESSION:
        values = logits.reshape(len(logits), -1)[:, 0]
        return values, values
    if problem_type == MULTI:
        probs = sigmoid(logits)
        return (probs >= 0.5).astype(np.int64), probs
    probs = softmax(logits)
    return probs.argmax(axis=-1), probs


def flat_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Return only the scalar metrics (the Trainer logs floats; reports keep the nested ones)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def sequence_metrics(
    predictions: np.ndarray, references: np.ndarray, problem_type: str, id2label: dict[int, str] | None
) -> dict[str, Any]:
    """Return the full metrics of a sequence-classification problem (with per-class entries)."""
    if problem_type == REGRESSION:
        return compute(
            "regression", predictions=np.ravel(predictions).tolist(), references=np.ravel(references).tolist()
        )
    names = [id2label[i] for i in sorted(id2label)] if id2label else None
    if problem_type == MULTI:
        return compute(
            "multilabel",
            predictions=np.asarray(predictions, dtype=np.int64).tolist(),
            references=(np.asarray(references) > 0.5).astype(np.int64).tolist(),
            label_names=names,
        )
    predictions = np.asarray(predictions, dtype=np.int64).tolist()
    references = np.asarray(references, dtype=np.int64).tolist()
    # Every label the model knows is reported (support 0 when absent), but averages follow scikit-learn
    # and run over the labels that occur in references or predictions.
    present = sorted(set(references) | set(predictions))
    result = compute(
        "classification",
        predictions=predictions,
        references=references,
        labels=present,
        label_names=[id2label[i] for i in present] if id2label else None,
    )
    return result


def token_tags(
    logits: np.ndarray, labels: np.ndarray, id2label: dict[int, str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Return (predicted, gold) tag sequences from token logits, keeping positions whose label is not IGNORE_INDEX."""
    predicted_ids = np.asarray(logits).argmax(axis=-1)
    predicted, gold = [], []
    for row_pred, row_gold in zip(predicted_ids, np.asarray(labels), strict=True):
        keep = row_gold != IGNORE_INDEX
        predicted.append([id2label[int(i)] for i in row_pred[keep]])
        gold.append([id2label[int(i)] for i in row_gold[keep]])
    return predicted, gold


def make_compute_metrics(task: str, problem_type: str | None, id2label: dict[int, str] | None):
    """Return a Trainer `compute_metrics` for the task.

    The Trainer hands it the predictions of the whole split, already gathered across processes
    with `gather_for_metrics` (which drops the samples repeated to even out the last batch), so
    each metric is computed once, on every sample exactly once.
    """

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits = (
            eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        )
        labels = eval_pred.label_ids
        if task == TOKEN:
            predicted, gold = token_tags(logits, labels, id2label or {})
            scheme = tag_scheme(id2label.values()) if id2label else None
            metrics = compute("entities", predictions=predicted, references=gold, scheme=scheme)
        else:
            predictions, _ = sequence_outputs(logits, problem_type or SINGLE)
            metrics = sequence_metrics(predictions, labels, problem_type or SINGLE, id2label)
        # Undefined values (a constant regression output has no correlation) are left out of the logs.
        return {key: value for key, value in clean(flat_scalars(metrics)).items() if value is not None}

    return compute_metrics


def clean(metrics: Any) -> Any:
    """Return `metrics` with NaN/inf replaced by None, recursively (JSON has no NaN; jq refuses it)."""
    if isinstance(metrics, dict):
        return {key: clean(value) for key, value in metrics.items()}
    if isinstance(metrics, list):
        return [clean(value) for value in metrics]
    if isinstance(metrics, float) and not math.isfinite(metrics):
        return None
    return metrics


class FloatLabels:
    """Wrap a collator so labels become float: BCE (multi-label) and MSE (regression) need float targets."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        batch["labels"] = batch["labels"].float()
        return batch


def weighted_cross_entropy(weights: list[float]):
    """Return a Trainer `compute_loss_func`: cross-entropy weighted per class, IGNORE_INDEX ignored.

    Summed and divided by the number of labelled items in the whole accumulated batch, so gradient
    accumulation and several processes give the same loss as one big batch.
    """
    import torch

    table = torch.tensor(weights, dtype=torch.float32)

    def loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        logits = outputs["logits"]
        flat = labels.reshape(-1)
        total = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            flat,
            weight=table.to(logits.device),
            reduction="sum",
            ignore_index=IGNORE_INDEX,
        )
        count = num_items_in_batch if num_items_in_batch is not None else (flat != IGNORE_INDEX).sum()
        return total / count

    return loss
