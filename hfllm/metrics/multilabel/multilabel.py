"""Multi-label classification metrics: subset accuracy, precision/recall/F1 (micro, macro, weighted, per class).

A local `evaluate` module shipped inside hfllm and loaded by path (offline). Inputs are 0/1 indicator
rows, one column per label; conventions follow scikit-learn (zero_division=0, every column counts).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Subset accuracy, Hamming loss and precision/recall/F1 (micro, macro, weighted, per class) for multi-label data."

_INPUTS = """
predictions: list of lists of 0/1, the predicted label indicators.
references: list of lists of 0/1, the gold label indicators.
label_names: optional list of str, one name per column.
"""


def _safe_div(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _f1(precision, recall):
    return _safe_div(2 * precision * recall, precision + recall)


class Multilabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, label_names=None):
        pred = np.asarray(predictions, dtype=np.int64).reshape(len(predictions), -1) > 0
        gold = np.asarray(references, dtype=np.int64).reshape(len(references), -1) > 0
        n_labels = gold.shape[1]
        names = (
            [str(n) for n in label_names] if label_names is not None else [str(i) for i in range(n_labels)]
        )
        tp = (pred & gold).sum(axis=0).astype(np.float64)
        pred_count = pred.sum(axis=0)
        support = gold.sum(axis=0)
        precision = _safe_div(tp, pred_count)
        recall = _safe_div(tp, support)
        f1 = _f1(precision, recall)
        weights = _safe_div(support, support.sum())
        micro_p = float(_safe_div(tp.sum(), pred_count.sum()))
        micro_r = float(_safe_div(tp.sum(), support.sum()))
        return {
            "subset_accuracy": float((pred == gold).all(axis=1).mean()) if len(gold) else 0.0,
            "hamming_loss": float((pred != gold).mean()) if gold.size else 0.0,
            "precision_micro": micro_p,
            "recall_micro": micro_r,
            "f1_micro": float(_f1(np.array(micro_p), np.array(micro_r))),
            "precision_macro": float(precision.mean()) if n_labels else 0.0,
            "recall_macro": float(recall.mean()) if n_labels else 0.0,
            "f1_macro": float(f1.mean()) if n_labels else 0.0,
            "precision_weighted": float(precision @ weights),
            "recall_weighted": float(recall @ weights),
            "f1_weighted": float(f1 @ weights),
            "per_class": {
                name: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(support[i]),
                }
                for i, name in enumerate(names)
            },
        }
