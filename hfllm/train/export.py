"""The outputs of a finished run: model/ (safetensors + tokenizer + model card), metrics.json, loss.png."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hfllm.fsutil import atomic_save_figure, atomic_write_json, atomic_write_text


def full_state_dict(trainer: Any) -> dict[str, Any] | None:
    """Return the whole model's state dict gathered from every rank under FSDP or DeepSpeed, else None.

    Collective: every rank must call it (then rank 0 exports). A sharded model's own
    save_pretrained fails ("invalid python storage") or would write only one shard.
    """
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        return trainer.accelerator.get_state_dict(trainer.model)
    return None


def export_model(
    model: Any, tokenizer: Any, dest: Path, card: str, state_dict: dict[str, Any] | None = None
) -> Path:
    """Return `dest` after writing the model (safetensors), its tokenizer and README.md there atomically.

    `state_dict`: the gathered weights of a sharded model (see `full_state_dict`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save_pretrained(str(staging), state_dict=state_dict)
        if hasattr(model, "peft_config"):  # an adapter: name its base, keep its head config beside it
            from hfllm.models.adapters import finish_adapter_dir

            finish_adapter_dir(model, staging)
        tokenizer.save_pretrained(str(staging))
        (staging / "README.md").write_text(card, encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def model_card(
    title: str,
    summary: str,
    data: dict[str, Any],
    config_yaml: str,
    metrics: dict[str, Any],
    pipeline_tag: str = "fill-mask",
    library_name: str | None = None,
) -> str:
    """Return a model card (README.md) that states the data, the full config and the metrics.

    `library_name`: the Hub's loader of the model (default transformers; peft for an adapter)."""
    rows = "\n".join(
        f"| {key} | {_fmt(value)} |" for key, value in metrics.items() if not isinstance(value, (dict, list))
    )
    return f"""---
library_name: {library_name or "transformers"}
pipeline_tag: {pipeline_tag}
tags:
- hfllm
---

# {title}

{summary}

## Data

```json
{json.dumps(data, indent=2, ensure_ascii=False, default=str)}
```

## Metrics

| metric | value |
|---|---|
{rows}

## Config

The resolved config this model was trained with (`hfllm` reproduces the run from it):

```yaml
{config_yaml.rstrip()}
```
"""


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_metrics(path: Path, metrics: dict[str, Any]) -> Path:
    """Return `path` after writing `metrics` there as JSON, atomically."""
    atomic_write_json(Path(path), metrics)
    return Path(path)


def loss_curves(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Return the train and eval loss points (step, loss) from a Trainer's log history."""
    from hfllm.tasks.masked_lm import eval_loss

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], eval_loss(e)) for e in log_history if "eval_loss" in e and "step" in e]
    return {"train": train, "eval": _dedupe(evals)}


def _dedupe(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Keep the first eval per step (a final re-evaluation of the best model repeats a step)."""
    seen: dict[int, float] = {}
    for step, value in points:
        seen.setdefault(step, value)
    return sorted(seen.items())


def plot_losses(
    log_history: list[dict[str, Any]],
    path: Path,
    title: str = "loss",
    baselines: dict[str, float] | None = None,
) -> Path:
    """Return `path` after drawing train and eval loss against steps there (PNG, Agg backend).

    `baselines` maps a label to a loss drawn as a dashed horizontal line (e.g. the unigram baseline).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = loss_curves(log_history)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in curves.items():
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if name == "eval" else None, markersize=3, label=f"{name} loss")
    for label, value in (baselines or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, color="gray", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return atomic_save_figure(fig, path)


__all__ = ["atomic_write_text", "export_model", "loss_curves", "model_card", "plot_losses", "write_metrics"]
