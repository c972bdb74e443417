"""`hfllm finetune` for sequence and token classification: the hooks the runner calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.data import labelled
from hfllm.errors import ConfigError
from hfllm.output import log
from hfllm.tasks.names import LOWER_IS_BETTER, MULTI, REGRESSION, TOKEN, headline_metric
from hfllm.train.recipe import Card, Inputs, Recipe


class Classification(Recipe):
    """Fine-tune a model with a new classification head (single/multi-label, regression, BIO tags)."""

    name = "classification"
    command = "finetune"
    must_match = ("task", "problem_type", "label_all_tokens", "model", "data", "class_weights")
    headline = (
        "loss", "accuracy", "f1_macro", "f1_micro", "mcc", "subset_accuracy", "mse", "mae", "pearson",
        "spearman", "entity_f1", "entity_precision", "entity_recall", "token_accuracy", "loss_mean",
    )  # fmt: skip

    def reads(self, config: Any) -> tuple[str, ...]:
        return tuple(p for p in (config.model.name_or_path, config.data.dir) if p)

    def setup(self, config: Any) -> Inputs:
        from hfllm.models.adapters import quantized_loading
        from hfllm.models.loader import check_model_dir, load_model, load_tokenizer, resolve
        from hfllm.models.preflight import check_fits_model

        source = resolve(config.model.name_or_path)
        if source.local:  # checked before raw files are preprocessed with its tokenizer
            check_model_dir(Path(source.location), config.model.allow_pickle)
        tokenizer = load_tokenizer(
            config.model.name_or_path, config.model.trust_remote_code, "model.name_or_path"
        )
        data, splits = labelled.load(config, source.location, tokenizer)
        problem_type = labelled.resolve_problem_type(config, data, splits)
        label2id, id2label = labelled.label_maps(data, problem_type)
        head: dict[str, Any] = {"num_labels": 1 if problem_type == REGRESSION else len(label2id)}
        if id2label:
            head.update(id2label=id2label, label2id=label2id)
        if problem_type:
            head["problem_type"] = problem_type
        model = load_model(
            config.model.name_or_path,
            config.task,
            config.model.trust_remote_code,
            config.model.allow_pickle,
            # Starting from a classifier with another label set replaces its head.
            ignore_mismatched_sizes=True,
            **head,
            **quantized_loading(config),
        )
        check_fits_model(splits, model, str(data.path))
        log.info(
            "fine-tuning %s for %s (%s) on %d examples",
            source.name,
            config.task,
            problem_type or "BIO tags",
            len(splits["train"]),
        )
        return Inputs(
            model=model,
            tokenizer=tokenizer,
            data=data,
            splits=splits,
            model_name=config.model.name_or_path,
            max_length=data.manifest.get("max_length"),
            base_model=config.model.name_or_path,
            facts={"labels": [id2label[i] for i in sorted(id2label)] if id2label else None},
            info={"task": config.task, "problem_type": problem_type},
        )

    def training_settings(self, config: Any, inputs: Inputs, settings: dict[str, Any]) -> dict[str, Any]:
        metric = settings.get("metric_for_best_model") or headline_metric(
            config.task, inputs.info["problem_type"]
        )
        settings["metric_for_best_model"] = metric
        if settings.get("greater_is_better") is None:
            settings["greater_is_better"] = metric.removeprefix("eval_") not in LOWER_IS_BETTER
        if inputs.validation is None and config.early_stopping.patience:
            raise ConfigError("early_stopping.patience needs a validation split, and the data has none")
        return settings

    def trainer_parts(self, config: Any, inputs: Inputs) -> dict[str, Any]:
        from transformers import (
            DataCollatorForTokenClassification,
            DataCollatorWithPadding,
            EarlyStoppingCallback,
        )

        from hfllm.tasks.classification import FloatLabels, make_compute_metrics, weighted_cross_entropy

        problem_type, id2label = inputs.info["problem_type"], inputs.model.config.id2label
        if config.task == TOKEN:
            collator = DataCollatorForTokenClassification(inputs.tokenizer)
        elif problem_type in (MULTI, REGRESSION):
            collator = FloatLabels(DataCollatorWithPadding(inputs.tokenizer))  # BCE and MSE take floats
        else:
            collator = DataCollatorWithPadding(inputs.tokenizer)
        callbacks = []
        if config.early_stopping.patience:
            callbacks.append(
                EarlyStoppingCallback(config.early_stopping.patience, config.early_stopping.threshold)
            )
        weights = self._class_weights(config, inputs)
        return {
            "data_collator": collator,
            "compute_metrics": make_compute_metrics(
                config.task, problem_type, id2label if inputs.facts["labels"] else None
            ),
            "compute_loss_func": weighted_cross_entropy(weights) if weights else None,
            "callbacks": callbacks,
        }

    @staticmethod
    def _class_weights(config: Any, inputs: Inputs) -> list[float] | None:
        if config.class_weights == "none":
            return None
        problem_type = inputs.info["problem_type"]
        if problem_type in (MULTI, REGRESSION):
            raise ConfigError(
                f"class_weights: only for single-label or token classification, not {problem_type}"
            )
        weights = labelled.class_weights(
            inputs.splits["train"], inputs.model.config.num_labels, config.class_weights, config.task
        )
        log.info("class weights: %s", [round(w, 3) for w in weights])
        return weights

    def card(self, config: Any, inputs: Inputs, metrics: dict[str, Any]) -> Card:
        labels = ", ".join(map(str, inputs.facts["labels"] or []))
        return Card(
            title=f"{config.task} model",
            summary=f"Fine-tuned by `hfllm finetune` from `{config.model.name_or_path}` for {config.task}."
            + (f" Labels: {labels}." if labels else ""),
            pipeline_tag="token-classification" if config.task == TOKEN else "text-classification",
            data={"data_dir": str(inputs.data.path), "counts": inputs.data.manifest.get("counts")},
        )

    def before_export(self, inputs: Inputs) -> None:
        if inputs.max_length:
            # predict truncates to this by default: the length the model was trained on.
            inputs.tokenizer.model_max_length = int(inputs.max_length)
