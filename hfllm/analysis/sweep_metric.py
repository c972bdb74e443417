"""Where `hfllm sweep` finds a trial's metric: the one place that knows the training commands' result JSON.

A metric is named by a dotted key into the result, e.g. `validation.f1_macro` or `validation.loss`. The
training commands are moving to one schema, `metrics: {train: {...}, validation: {...}, test: {...}}`;
until pretrain follows it (it prints `eval_loss`, `perplexity`, ... at the top level), `validation.X`
also finds `eval_X` and `X`. When a key is in neither the result nor the run's metrics.json, the trial
has no value (recorded as failed, naming the key).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def metric_value(result: dict[str, Any], key: str, run_dir: Path | None = None) -> float | None:
    """Return the metric `key` of a finished trial from its result JSON, else its run dir's metrics.json."""
    sources: list[Any] = [result.get("metrics"), result]
    if run_dir is not None and (Path(run_dir) / "metrics.json").is_file():
        try:
            sources.append(json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    for source in sources:
        for candidate in (key, *aliases(key)):
            value = dig(source, candidate)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
    return None


def aliases(key: str) -> list[str]:
    """Return today's other names of `key` (`validation.loss` -> `eval_loss`, `loss`)."""
    split, _, name = key.partition(".")
    if split == "validation" and name:
        return [f"eval_{name}", name]
    return []


def intermediate_key(key: str) -> str:
    """Return the name of the metric in the Trainer's evaluation logs (trainer_state.json log_history)."""
    split, _, name = key.partition(".")
    name = name if split in ("validation", "eval") and name else key
    return name if name.startswith("eval_") else f"eval_{name}"


def dig(data: Any, dotted: str) -> Any:
    """Return data[a][b][c] for "a.b.c", or None where a key is missing."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data
