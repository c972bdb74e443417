"""Regression metrics: MSE, RMSE, MAE, Pearson and Spearman correlation.

A local `evaluate` module shipped inside hfllm and loaded by path (offline). Correlations are NaN
when either side is constant (as in scipy); Spearman is Pearson on average ranks (ties share a rank).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Mean squared error, root mean squared error, mean absolute error, Pearson and Spearman correlation."
)

_INPUTS = """
predictions: list of float, the predicted values.
references: list of float, the gold values.
"""


def pearson(x, y):
    """Return Pearson's r of two vectors (NaN if either is constant)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    den = np.sqrt((x @ x) * (y @ y))
    return float("nan") if den == 0 else float(np.clip((x @ y) / den, -1.0, 1.0))


def average_ranks(values):
    """Return 1-based ranks of `values`, ties getting the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


class Regression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        pred = np.asarray(predictions, dtype=np.float64)
        gold = np.asarray(references, dtype=np.float64)
        error = pred - gold
        mse = float(np.mean(error**2)) if len(gold) else float("nan")
        return {
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "mae": float(np.mean(np.abs(error))) if len(gold) else float("nan"),
            "pearson": pearson(pred, gold) if len(gold) > 1 else float("nan"),
            "spearman": pearson(average_ranks(pred), average_ranks(gold)) if len(gold) > 1 else float("nan"),
        }
