"""The outputs of a finished run: model/ (safetensors + tokenizer + model card), metrics.json, loss.png."""

from __future__ import annotations

import json
import math
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
    model: Any,
    tokenizer: Any,
    dest: Path,
    card: str,
    state_dict: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Return `dest` after writing the model (safetensors), its tokenizer and README.md there atomically.

    `state_dict`: the gathered weights of a sharded model (see `full_state_dict`). `files`: more text
    files by name (cleaning.json).
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
        for name, text in (files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


# Figures of an evaluation that are not results of the model (left out of the card's model-index).
NOT_RESULTS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "examples")


def model_card(
    card: Any,
    config_yaml: str,
    metrics: dict[str, Any],
    split: str,
    *,
    name: str,
    base_model: str | None,
    data_dir: str,
    inputs: list[dict[str, Any]] | None,
    license: str | None = None,
    language: str | list[str] | None = None,
    library_name: str = "transformers",
) -> str:
    """Return a model card (README.md): Hub metadata built and checked by huggingface_hub (base_model,
    datasets, license, language, tags, model-index with the `split` results), then the recipe's text,
    the data, the results and the full config.

    `card`: the recipe's hfllm.train.recipe.Card; `base_model`: where the run started (a local dir is
    named in the text; the metadata takes a Hub id only); `inputs`: the data manifest's inputs;
    `library_name`: the Hub's loader of the model (peft for an adapter).
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hfllm.models.loader import hub_id

    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    datasets = dataset_names(inputs, data_dir)
    results = [
        EvalResult(
            task_type=card.pipeline_tag,
            dataset_type=datasets[0] if len(datasets) == 1 else Path(data_dir).name,
            dataset_name=Path(data_dir).name,
            dataset_split=split,
            metric_type=key,
            metric_name=key,
            metric_value=value,
        )
        for key, value in scalars.items()
        if math.isfinite(value) and key not in NOT_RESULTS
    ]
    data = ModelCardData(
        base_model=hub_id(base_model),
        datasets=datasets,
        license=license,
        language=language,
        library_name=library_name,
        pipeline_tag=card.pipeline_tag,
        tags=list(dict.fromkeys(["hfllm", card.pipeline_tag, *card.tags])),
        model_name=name,
        eval_results=results or None,
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{_card_text(card, config_yaml, scalars, split, base_model, license, inputs)}"
    return str(ModelCard(text))  # parsing it again checks the metadata (model-index included)


def dataset_names(inputs: list[dict[str, Any]] | None, data_dir: str) -> list[str]:
    """Return the card's `datasets`: Hub ids as they are, local inputs as `path@sha256:<16 hex>`."""
    from hfllm.models.loader import hub_id

    names = []
    for item in inputs or []:
        hub = (item.get("hub") or {}).get("path")
        if hub and hub_id(hub):
            names.append(hub)
        elif item.get("sha256"):
            names.append(f"{item['path']}@sha256:{item['sha256'][:16]}")
        else:
            names.append(str(item.get("path")))
    return list(dict.fromkeys(names)) or [str(data_dir)]


def _card_text(card, config_yaml, scalars, split, base_model, license, inputs) -> str:
    from hfllm.models.loader import hub_id

    if base_model is None:
        base = "trained from scratch"
    elif hub_id(base_model):
        base = f"[{hub_id(base_model)}](https://huggingface.co/{hub_id(base_model)})"
    else:
        base = f"the local model `{base_model}`"
    rows = "\n".join(f"| {key} | {_fmt(value)} |" for key, value in scalars.items())
    files = "\n".join(
        f"| `{i.get('path')}` | {i.get('sha256') or '-'} | {i.get('documents', '-')} |" for i in inputs or []
    )
    return f"""# {card.title}

{card.summary}

- Base model: {base}
- Licence: {license or "not stated (set `license:` in the config)"}

## Data

| input | sha256 | documents |
|---|---|---|
{files or "| (see below) | - | - |"}

```json
{json.dumps(card.data, indent=2, ensure_ascii=False, default=str)}
```

## Results ({split} split)

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
