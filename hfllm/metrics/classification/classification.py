"""Single-label classification metrics: accuracy, precision/recall/F1 (macro, micro, weighted, per class), MCC.

A local `evaluate` module shipped inside hfllm and loaded by path, so it works offline. Numbers follow
scikit-learn's conventions (zero_division=0; the label set is the union of references and predictions
unless `labels` is given). Computed once, on the full set of gathered predictions.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Accuracy, precision, recall and F1 (macro, micro, weighted, per class) and Matthews correlation."
)

_INPUTS = """
predictions: list of int, the predicted class ids.
references: list of int, the gold class ids.
labels: optional list of int, the classes to report (default: those seen in references or predictions).
label_names: optional list of str, names for `labels` (default: the ids as strings).
"""


def confusion(references, predictions, labels):
    """Return the confusion matrix (rows: gold, columns: predicted) over `labels`."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for gold, pred in zip(references, predictions, strict=True):
        if gold in index and pred in index:
            matrix[index[gold], index[pred]] += 1
    return matrix


def _safe_div(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _f1(precision, recall):
    return _safe_div(2 * precision * recall, precision + recall)


def matthews(matrix):
    """Return the multiclass Matthews correlation coefficient of a confusion matrix (0 when undefined)."""
    t = matrix.sum(axis=1).astype(np.float64)
    p = matrix.sum(axis=0).astype(np.float64)
    c = float(np.trace(matrix))
    s = float(matrix.sum())
    den = (s * s - p @ p) * (s * s - t @ t)
    return 0.0 if den <= 0 else float((c * s - t @ p) / np.sqrt(den))


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None, label_names=None):
        predictions = [int(p) for p in predictions]
        references = [int(r) for r in references]
        if labels is None:
            labels = sorted(set(references) | set(predictions))
        labels = [int(label) for label in labels]
        names = [str(n) for n in label_names] if label_names is not None else [str(label) for label in labels]
        matrix = confusion(references, predictions, labels)
        tp = np.diag(matrix).astype(np.float64)
        pred_count = matrix.sum(axis=0)
        support = matrix.sum(axis=1)
        precision = _safe_div(tp, pred_count)
        recall = _safe_div(tp, support)
        f1 = _f1(precision, recall)
        weights = _safe_div(support, support.sum())
        micro_p = float(_safe_div(tp.sum(), pred_count.sum()))
        micro_r = float(_safe_div(tp.sum(), support.sum()))
        n = len(references)
        result = {
            "accuracy": float(sum(g == p for g, p in zip(references, predictions, strict=True)) / n)
            if n
            else 0.0,
            "precision_macro": float(precision.mean()) if labels else 0.0,
            "recall_macro": float(recall.mean()) if labels else 0.0,
            "f1_macro": float(f1.mean()) if labels else 0.0,
            "precision_micro": micro_p,
            "recall_micro": micro_r,
            "f1_micro": float(_f1(np.array(micro_p), np.array(micro_r))),
            "precision_weighted": float(precision @ weights),
            "recall_weighted": float(recall @ weights),
            "f1_weighted": float(f1 @ weights),
            "mcc": matthews(matrix),
            "per_class": {
                name: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(support[i]),
                }
                for i, name in enumerate(names)
            },
            "confusion_matrix": matrix.tolist(),
            "labels": names,
        }
        return result
