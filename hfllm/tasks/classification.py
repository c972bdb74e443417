"""What each supervised task predicts and how it is scored: shared by finetune, evaluate and predict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hfllm.errors import InputError
from hfllm.metrics import compute

SEQUENCE = "sequence-classification"
TOKEN = "token-classification"
MASKED_LM = "masked-lm"
SINGLE = "single_label_classification"
MULTI = "multi_label_classification"
REGRESSION = "regression"

# Metrics where smaller is better: best-checkpoint selection and early stopping must know.
LOWER_IS_BETTER = {"loss", "mse", "rmse", "mae", "hamming_loss", "perplexity"}


def task_of(model_config: Any, where: str = "model") -> str:
    """Return the task a saved model was built for, from the head named in its config's architectures."""
    for arch in getattr(model_config, "architectures", None) or []:
        if arch.endswith("ForSequenceClassification"):
            return SEQUENCE
        if arch.endswith("ForTokenClassification"):
            return TOKEN
        if arch.endswith("ForMaskedLM") or arch.endswith("ForPreTraining"):
            return MASKED_LM
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            raise InputError(
                f"{where}: a causal language model ({arch}): it generates text rather than labels",
                "use `hfllm generate --model DIR` (and `hfllm evaluate` for its perplexity)",
            )
    raise InputError(
        f"{where}: config.json names no classification or masked-LM head (architectures: "
        f"{getattr(model_config, 'architectures', None)})",
        "give a model dir written by `hfllm finetune` or `hfllm pretrain` (its model/)",
    )


def problem_type_of(model_config: Any) -> str:
    """Return the sequence-classification problem type of a model config (single-label when unset)."""
    return getattr(model_config, "problem_type", None) or (
        REGRESSION if model_config.num_labels == 1 else SINGLE
    )


def headline_metric(task: str, problem_type: str | None) -> str:
    """Return the metric that picks the best checkpoint by default for a task."""
    if task == TOKEN:
        return "entity_f1"
    return {MULTI: "f1_micro", REGRESSION: "mse"}.get(problem_type or SINGLE, "f1_macro")


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
    """Return (predicted, gold) tag sequences from token logits, keeping positions whose label is not -100."""
    predicted_ids = np.asarray(logits).argmax(axis=-1)
    predicted, gold = [], []
    for row_pred, row_gold in zip(predicted_ids, np.asarray(labels), strict=True):
        keep = row_gold != -100
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
            metrics = compute("seqeval_bio", predictions=predicted, references=gold)
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
