"""`hfllm pretrain` with the masked-LM objective: the hooks the runner calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.errors import InputError
from hfllm.output import log
from hfllm.train.recipe import Card, Inputs, Recipe, lm_eval_history

COLUMNS = ("input_ids", "attention_mask", "special_tokens_mask", "token_type_ids")


class MaskedLM(Recipe):
    """Masked-language-model pretraining from random initialisation or a checkpoint."""

    name = "masked-lm"
    command = "pretrain"
    must_match = (
        "data_dir",
        "model",
        "masking",
        "training.per_device_train_batch_size",
        "training.gradient_accumulation_steps",
        "training.seed",
    )
    headline = ("loss", "perplexity", "masked_accuracy", "unigram_perplexity", "tokens_per_second")

    def reads(self, config: Any) -> tuple[str, ...]:
        return tuple(p for p in (config.data_dir, config.model.name_or_path) if p)

    def setup(self, config: Any) -> Inputs:
        from hfllm.models.preflight import check_fits_model, column_stats, pretraining_data

        data, splits = pretraining_data(config.data_dir, "masked", COLUMNS)
        tokenizer = data.load_tokenizer()
        if tokenizer.mask_token is None:
            raise InputError(
                f"{data.tokenizer_path}: the tokenizer has no mask token; masked-LM pretraining needs one"
            )
        max_length = int(data.manifest.get("max_length") or column_stats(splits["train"])["max_length"])
        model = self._model(config, data, splits, tokenizer, max_length)
        check_fits_model(splits, model, str(data.path))
        name = config.model.name_or_path or f"a new {config.model.type} model"
        inputs = Inputs(
            model, tokenizer, data, splits, name, max_length, base_model=config.model.name_or_path
        )
        if not config.model.name_or_path:
            from hfllm.models.scratch import dropout_turned_off

            # metrics.json says which; before_export puts their defaults back in the saved config.
            inputs.info["dropout_off_while_pretraining"] = dropout_turned_off(
                config.model.type, config.model.config
            )
        return inputs

    @staticmethod
    def _model(config: Any, data: Any, splits: Any, tokenizer: Any, max_length: int) -> Any:
        from hfllm.models.adapters import quantized_loading
        from hfllm.models.builders import build_new_model, init_output_bias
        from hfllm.models.loader import check_model_dir, load_model, load_tokenizer, resolve
        from hfllm.models.preflight import check_same_tokenizer
        from hfllm.models.scratch import without_dropout
        from hfllm.tasks.masked_lm import unigram_log_probs
        from hfllm.tasks.names import MASKED_LM

        if config.model.name_or_path:
            source = resolve(config.model.name_or_path)
            if source.local:
                check_model_dir(Path(source.location), config.model.allow_pickle)
            # The checkpoint's tokenizer must be the one that tokenized the data.
            check_same_tokenizer(
                load_tokenizer(config.model.name_or_path, key="model.name_or_path"),
                data,
                config.model.name_or_path,
            )
            if config.model.config:
                log.warning("model.config is ignored when model.name_or_path is set")
            return load_model(
                config.model.name_or_path,
                MASKED_LM,
                config.model.trust_remote_code,
                config.model.allow_pickle,
                **quantized_loading(config),
            )
        overrides = without_dropout(config.model.type, config.model.config)  # docs/speed.md
        model = build_new_model(config.model.type, overrides, tokenizer, max_length)
        if config.model.output_bias_init == "unigram":
            # The model starts at the unigram baseline instead of spending its first steps on word frequencies.
            log_probs = unigram_log_probs(splits["train"], model.config.vocab_size, tokenizer.all_special_ids)
            if init_output_bias(model, log_probs):
                log.info("output bias set to the train split's log token frequencies")
            else:
                log.warning("model.output_bias_init: unigram: this model has no output bias; left as it is")
        return model

    def training_settings(self, config: Any, inputs: Inputs, settings: dict[str, Any]) -> dict[str, Any]:
        from hfllm.precision import apply_precision

        # The collator needs special_tokens_mask, which no model's forward() takes; setup chose the columns.
        settings["remove_unused_columns"] = False
        model_config = getattr(inputs.model, "config", None)
        settings, precision = apply_precision(settings, model_config)  # bf16 where it pays
        inputs.info["precision"] = precision.path
        return settings

    def trainer_parts(self, config: Any, inputs: Inputs) -> dict[str, Any]:
        from hfllm.tasks.masked_lm import mlm_eval_outputs, mlm_loss, mlm_metrics
        from hfllm.tasks.mlm_collator import make_mlm_collator
        from hfllm.train.callbacks import CollatorEpochCallback

        seed = (
            config.masking.seed if config.masking.seed is not None else int(config.training.get("seed", 42))
        )
        collator = make_mlm_collator(inputs.tokenizer, config.masking, seed)
        return {
            "data_collator": collator,
            "compute_loss_func": mlm_loss,
            "compute_metrics": mlm_metrics,
            "preprocess_logits_for_metrics": mlm_eval_outputs,
            "callbacks": [CollatorEpochCallback(collator)],
        }

    def prepare_trainer(self, trainer: Any, inputs: Inputs) -> None:
        from hfllm.tasks.sparse_mlm import enable_sparse_head

        enable_sparse_head(trainer)  # the output layer at masked positions only (mlm_loss reads it)

    def before_export(self, inputs: Inputs) -> None:
        from hfllm.models.scratch import restore_dropout

        # Whoever fine-tunes the saved model gets the architecture's usual dropout.
        restore_dropout(inputs.model.config, inputs.info.get("dropout_off_while_pretraining", ()))

    def split_metrics(self, name: str, values: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
        from hfllm.tasks.masked_lm import perplexity, unigram_perplexity

        # token_loss: per masked token over the whole split (the Trainer's loss averages batch means).
        loss = values.get("token_loss", values.get("loss"))
        special = inputs.tokenizer.all_special_ids
        return {
            "loss": loss,
            "perplexity": perplexity(loss),
            "masked_accuracy": values.get("masked_accuracy"),
            "unigram_perplexity": unigram_perplexity(
                inputs.splits["train"], inputs.splits[name], len(inputs.tokenizer), special
            ),
            "examples": len(inputs.splits[name]),
        }

    def extra_metrics(self, trainer: Any, inputs: Inputs, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"eval_history": lm_eval_history(trainer.state.log_history, "masked_accuracy")}

    def card(self, config: Any, inputs: Inputs, metrics: dict[str, Any]) -> Card:
        manifest = inputs.data.manifest
        return Card(
            title="masked language model",
            summary=f"Pretrained with `hfllm pretrain` (masked LM, mlm_probability {config.masking.mlm_probability}) "
            f"from {inputs.model_name} on the data dir `{config.data_dir}`.",
            pipeline_tag="fill-mask",
            data={
                "data_dir": config.data_dir,
                **{k: v for k, v in manifest.items() if k in ("counts", "mode", "max_length", "tokenizer")},
            },
        )
