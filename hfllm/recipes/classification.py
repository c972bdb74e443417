"""`hfllm finetune`: setup (run dir, tokenizer, data, model) -> train -> evaluate -> export."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hfllm.config import to_yaml
from hfllm.config.training_args import build_training_arguments
from hfllm.data import labelled as fdata
from hfllm.errors import ConfigError, InputError
from hfllm.models.loader import check_model_dir, load_for_finetuning, load_tokenizer, model_source
from hfllm.output import log
from hfllm.tasks.classification import (
    LOWER_IS_BETTER,
    MULTI,
    REGRESSION,
    TOKEN,
    clean,
    headline_metric,
    make_compute_metrics,
)

# Settings a checkpoint depends on: resuming with any of them changed is refused.
MUST_MATCH = ("task", "problem_type", "label_all_tokens", "model", "data", "class_weights")


def run_finetune(
    config: Any, resume: str = "auto", overwrite: bool = False, resume_force: bool = False
) -> dict[str, Any]:
    """Return the result of fine-tuning `config`: paths, the headline metrics and timings.

    `resume_force`: resume even when the checkpoints were made with another tokenizer, model size,
    max_length, label set, world size or MUST_MATCH setting (warn instead of refusing)."""
    from hfllm.train.rundir import (
        check_resume_facts,
        is_finished,
        planned_global_batch,
        prepare_run_dir,
        run_facts,
    )

    started = time.time()
    run = prepare_run_dir(
        Path(config.output_dir),
        resume,
        overwrite,
        to_yaml(config),
        MUST_MATCH,
        start=False,
        force=resume_force,
    )
    if run.finished:
        return _finished_result(run, config)
    from hfllm.launch import check_launch

    check_launch(config.training)
    source, is_local = model_source(config.model.name_or_path)
    if is_local:
        check_model_dir(Path(source), config.model.allow_pickle)
    tokenizer = load_tokenizer(source, is_local, config.model.trust_remote_code)
    data, splits = _load_data(config, run.path, source, tokenizer)
    problem_type = fdata.resolve_problem_type(config, data, splits)
    label2id, id2label = fdata.label_maps(data, problem_type)
    num_labels = 1 if problem_type == REGRESSION else len(label2id)
    # The new head's weights are random: seed them, or two runs with one seed differ (the Trainer
    # seeds only once the model exists).
    from transformers import set_seed

    set_seed(int(config.training.get("seed", 42)))
    model = load_for_finetuning(source, config.task, num_labels, id2label, problem_type, config.model)
    _preflight(model, splits, str(data.path))
    facts = run_facts(
        data.manifest.get("tokenizer", {}).get("fingerprint"),
        data.manifest.get("max_length"),
        model.config,
        planned_global_batch(config.training),
        labels=[id2label[i] for i in sorted(id2label)] if id2label else None,
    )
    check_resume_facts(run, facts, resume_force)
    run.start()  # every check passed: now the run dir may change
    trainer = _build_trainer(config, run, model, tokenizer, splits, problem_type, id2label, num_labels)
    from hfllm.train.trainer import train

    log.info(
        "fine-tuning %s for %s (%s) on %d examples",
        source,
        config.task,
        problem_type or "BIO tags",
        len(splits["train"]),
    )
    from hfllm.train.progress import use_progress  # until the runner registers it

    use_progress(trainer)
    output = train(trainer, run)
    metrics = _final_metrics(trainer, splits, output, problem_type, config)
    if not is_finished(run.path):
        _export(trainer, tokenizer, run, config, data, metrics)
    return {
        "status": "ok",
        "task": config.task,
        "problem_type": problem_type,
        "run_dir": str(run.path),
        "model_dir": str(run.model),
        "data_dir": str(data.path),
        "resumed_from": str(run.resume_from) if run.resume_from else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "metrics": {
            split: _headline(metrics[split]) for split in ("train", "validation", "test") if split in metrics
        },
        "best_metric": metrics["best_metric"],
        "seconds": round(time.time() - started, 2),
    }


def _load_data(config: Any, run_path: Path, source: str, tokenizer: Any):
    if config.data.dir:
        data = fdata.open_data_dir(Path(config.data.dir))
    else:
        data = fdata.preprocess_raw_files(config, source, run_path / "data")
    splits = data.load_splits()
    fdata.check_supervised(data, splits, config.task)
    fdata.check_same_tokenizer(tokenizer, data, source)
    return data, splits


def _preflight(model: Any, splits: Any, data_dir: str) -> None:
    from hfllm.models.builders import position_offset
    from hfllm.models.preflight import check_fits_model

    config = model.config
    positions = getattr(config, "max_position_embeddings", None)
    limit = positions - position_offset(config) if positions else None
    check_fits_model(splits, model.get_input_embeddings().num_embeddings, limit, data_dir)


def training_arguments(config: Any, run: Any, has_validation: bool, problem_type: str | None) -> Any:
    """Return the TrainingArguments of the run: the config's, with the best-model metric and paths set."""
    settings = dict(config.training)
    settings["output_dir"] = str(run.checkpoints)
    metric = settings.get("metric_for_best_model") or headline_metric(config.task, problem_type)
    settings["metric_for_best_model"] = metric
    if settings.get("greater_is_better") is None:
        settings["greater_is_better"] = metric.removeprefix("eval_") not in LOWER_IS_BETTER
    if not has_validation:
        if config.early_stopping.patience:
            raise ConfigError("early_stopping.patience needs a validation split, and the data has none")
        log.warning("no validation split: no evaluation during training, the last checkpoint is the model")
        settings.update(eval_strategy="no", load_best_model_at_end=False)
    if "tensorboard" in (settings.get("report_to") or []):
        import os

        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.tensorboard))
    return build_training_arguments(settings, "training")


def _build_trainer(config, run, model, tokenizer, splits, problem_type, id2label, num_labels):
    from transformers import (
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
    )

    from hfllm.train.trainer import HfllmTrainer

    validation = splits["validation"] if "validation" in splits and len(splits["validation"]) else None
    args = training_arguments(config, run, validation is not None, problem_type)
    if config.task == TOKEN:
        collator = DataCollatorForTokenClassification(tokenizer)
    else:
        collator = (
            FloatLabels(DataCollatorWithPadding(tokenizer)) if problem_type in (MULTI, REGRESSION) else None
        )
        collator = collator or DataCollatorWithPadding(tokenizer)
    callbacks = []  # training.loop.train adds the signal and non-finite-loss callbacks
    if config.early_stopping.patience:
        callbacks.append(
            EarlyStoppingCallback(config.early_stopping.patience, config.early_stopping.threshold)
        )
    weights = None
    if config.class_weights != "none":
        if problem_type in (MULTI, REGRESSION):
            raise ConfigError(
                f"class_weights: only for single-label or token classification, not {problem_type}"
            )
        weights = fdata.class_weights(splits["train"], num_labels, config.class_weights, config.task)
        log.info("class weights: %s", [round(w, 3) for w in weights])
    return HfllmTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=make_compute_metrics(config.task, problem_type, id2label),
        compute_loss_func=weighted_cross_entropy(weights) if weights else None,
        callbacks=callbacks,
    )


class FloatLabels:
    """Wrap a collator so labels become float: BCE (multi-label) and MSE (regression) need float targets."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        batch["labels"] = batch["labels"].float()
        return batch


def weighted_cross_entropy(weights: list[float]):
    """Return a Trainer `compute_loss_func`: cross-entropy weighted per class, -100 ignored.

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
            ignore_index=-100,
        )
        count = num_items_in_batch if num_items_in_batch is not None else (flat != -100).sum()
        return total / count

    return loss


def _final_metrics(
    trainer: Any, splits: Any, output: Any, problem_type: str | None, config: Any
) -> dict[str, Any]:
    """Return train, validation and test metrics of the final (best) model."""
    from transformers import EarlyStoppingCallback

    from hfllm.train.rundir import stdout_to_stderr
    from hfllm.train.trainer import global_batch_size

    # The final evaluations are reports, not training decisions: early stopping must not watch them.
    trainer.remove_callback(EarlyStoppingCallback)
    metrics: dict[str, Any] = {"train": clean(dict(output.metrics))}
    with stdout_to_stderr():
        for name in ("validation", "test"):
            if name in splits and len(splits[name]):
                values = trainer.evaluate(eval_dataset=splits[name], metric_key_prefix=name)
                metrics[name] = clean({k.removeprefix(f"{name}_"): v for k, v in values.items()})
    metrics["global_batch_size"] = global_batch_size(trainer.args)
    metrics["world_size"] = trainer.args.world_size
    metrics["best_metric"] = {
        "name": trainer.args.metric_for_best_model,
        "value": trainer.state.best_metric,
        "checkpoint": trainer.state.best_model_checkpoint,
    }
    return metrics


def _headline(values: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "loss",
        "accuracy",
        "f1_macro",
        "f1_micro",
        "mcc",
        "subset_accuracy",
        "mse",
        "mae",
        "pearson",
        "spearman",
        "entity_f1",
        "entity_precision",
        "entity_recall",
        "token_accuracy",
        "train_loss",
    )
    return {key: values[key] for key in keys if key in values}


def _export(trainer: Any, tokenizer: Any, run: Any, config: Any, data: Any, metrics: dict[str, Any]) -> None:
    from hfllm.train.export import export_model, full_state_dict, model_card, plot_losses, write_metrics
    from hfllm.train.rundir import is_main_process

    state_dict = full_state_dict(trainer)  # every rank takes part under FSDP / DeepSpeed
    if not is_main_process():
        return
    summary = (
        f"Fine-tuned by `hfllm finetune` from `{config.model.name_or_path}` for {config.task}. "
        f"Labels: {', '.join(map(str, (trainer.model.config.id2label or {}).values()))}."
    )
    card = model_card(
        f"{config.task} model",
        summary,
        {"data_dir": str(data.path), "counts": data.manifest.get("counts")},
        to_yaml(config),
        metrics.get("test") or metrics.get("validation") or {},
        pipeline_tag="token-classification" if config.task == TOKEN else "text-classification",
    )
    if data.manifest.get("max_length"):
        # predict truncates to this by default: the length the model was trained on.
        tokenizer.model_max_length = int(data.manifest["max_length"])
    export_model(trainer.model, tokenizer, run.model, card, state_dict)
    plot_losses(trainer.state.log_history, run.loss_plot, title=f"finetune {config.task}")
    write_metrics(run.metrics, metrics)  # last: a run dir with metrics.json and model/ is finished


def _finished_result(run: Any, config: Any) -> dict[str, Any]:
    import json

    metrics = json.loads(run.metrics.read_text(encoding="utf-8"))
    log.info("%s is a finished run; nothing to do (pass --overwrite to train again)", run.path)
    return {
        "status": "already_finished",
        "run_dir": str(run.path),
        "model_dir": str(run.model),
        "data_dir": config.data.dir or str(run.path / "data"),
        "metrics": metrics,
    }


__all__ = ["InputError", "run_finetune"]
