"""Local `evaluate` metric modules shipped with hfllm, loaded by path so they work offline."""

from __future__ import annotations

import functools
from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
NAMES = ("classification", "multilabel", "regression", "entities", "masked_lm")


def metric_path(name: str) -> Path:
    """Return the path of the module file of one of hfllm's metrics."""
    if name not in NAMES:
        raise KeyError(f"unknown hfllm metric {name!r}; the metrics are: {', '.join(NAMES)}")
    return METRICS_DIR / name / f"{name}.py"


@functools.cache
def load_metric(name: str):
    """Return the `evaluate` module for `name`, loaded from the package (never from the Hub)."""
    import evaluate

    return evaluate.load(str(metric_path(name)))


def compute(name: str, **inputs):
    """Return the metric `name` computed once over all of `inputs` (predictions, references, ...)."""
    return load_metric(name).compute(**inputs)
