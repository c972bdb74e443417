"""`hfllm finetune` with `task: causal-lm`: instruction tuning of a causal LM (loss on response tokens only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.errors import InputError
from hfllm.output import log
from hfllm.train.recipe import Card, Inputs, Recipe, lm_eval_history


class Instruction(Recipe):
    """Fine-tune a causal LM on prompt/response rows or chats; prompt tokens carry the ignore label."""

    name = "instruction"
    command = "finetune"
    must_match = ("task", "model", "data")
    headline = ("loss", "perplexity", "next_token_accuracy", "loss_mean")

    def reads(self, config: Any) -> tuple[str, ...]:
        return tuple(p for p in (config.model.name_or_path, config.data.dir) if p)

    def setup(self, config: Any) -> Inputs:
        from hfllm.data.instruct import check_instruction_tokenizer
        from hfllm.data.labelled import open_or_preprocess
        from hfllm.models.causal import fit_embeddings, is_causal_model_dir
        from hfllm.models.loader import check_model_dir, load_model, load_tokenizer, resolve
        from hfllm.models.preflight import check_fits_model
        from hfllm.tasks.names import CAUSAL_LM

        source = resolve(config.model.name_or_path)
        if source.local:
            check_model_dir(Path(source.location), config.model.allow_pickle)
            # Encoders have causal heads too (as decoders of encoder-decoder models): not what is meant here.
            if not is_causal_model_dir(Path(source.location)):
                raise InputError(
                    f"model.name_or_path: {source.name} is not a causal language model",
                    "task causal-lm tunes a causal LM (a causal pretrain run's model/, or a GPT/Llama-style model)",
                )
        model_tokenizer = load_tokenizer(
            config.model.name_or_path, config.model.trust_remote_code, "model.name_or_path"
        )
        data = open_or_preprocess(config, source.location)
        if data.manifest.get("task") != CAUSAL_LM:
            raise InputError(
                f"{data.path}: the data was preprocessed for {data.manifest.get('task') or 'pretraining'}, not causal-lm",
                "preprocess prompt/response or chat data with task: causal-lm",
            )
        splits = data.load_splits()
        check_instruction_tokenizer(model_tokenizer, data, source.name)
        # The data's tokenizer carries the chat template (and its tokens): it is the one saved beside the model.
        tokenizer = data.load_tokenizer()
        model = load_model(
            config.model.name_or_path, CAUSAL_LM, config.model.trust_remote_code, config.model.allow_pickle
        )
        added = fit_embeddings(model, tokenizer)
        if added:
            log.info("added %d embedding rows for the chat template's tokens", added)
        model.config.use_cache = False
        check_fits_model(splits, model, str(data.path))
        log.info("instruction-tuning %s on %d examples", source.name, len(splits["train"]))
        return Inputs(
            model,
            tokenizer,
            data,
            splits,
            config.model.name_or_path,
            data.manifest.get("max_length"),
            base_model=config.model.name_or_path,
        )

    def training_settings(self, config: Any, inputs: Inputs, settings: dict[str, Any]) -> dict[str, Any]:
        from hfllm.errors import ConfigError

        settings["remove_unused_columns"] = False
        settings.setdefault("metric_for_best_model", None)
        settings["metric_for_best_model"] = settings["metric_for_best_model"] or "token_loss"
        if settings.get("greater_is_better") is None:
            settings["greater_is_better"] = False
        if inputs.validation is None and config.early_stopping.patience:
            raise ConfigError("early_stopping.patience needs a validation split, and the data has none")
        return settings

    def trainer_parts(self, config: Any, inputs: Inputs) -> dict[str, Any]:
        from transformers import EarlyStoppingCallback

        from hfllm.tasks.causal_lm import causal_trainer_parts

        # Rows carry their own labels (-100 on prompt tokens) and, when packed, their own position ids.
        parts = causal_trainer_parts(inputs.tokenizer, reset_at_eos=False)
        if config.early_stopping.patience:
            stop = EarlyStoppingCallback(config.early_stopping.patience, config.early_stopping.threshold)
            parts["callbacks"] = [stop]
        return parts

    def split_metrics(self, name: str, values: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
        from hfllm.tasks.causal_lm import perplexity

        # token_loss: the loss per response token over the whole split (prompts carry no label).
        loss = values.get("token_loss", values.get("loss"))
        return {
            "loss": loss,
            "perplexity": perplexity(loss),
            "next_token_accuracy": values.get("next_token_accuracy"),
            "tokens": values.get("tokens"),
            "examples": len(inputs.splits[name]),
        }

    def extra_metrics(self, trainer: Any, inputs: Inputs, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"eval_history": lm_eval_history(trainer.state.log_history, "next_token_accuracy")}

    def card(self, config: Any, inputs: Inputs, metrics: dict[str, Any]) -> Card:
        chat = inputs.data.manifest.get("chat") or {}
        template = chat.get("template", "the tokenizer's own")
        return Card(
            title="instruction-tuned causal language model",
            summary=f"Fine-tuned by `hfllm finetune` (task causal-lm, loss on response tokens only) from "
            f"`{config.model.name_or_path}`; chat template: {template}. Generate with `hfllm generate --model DIR`.",
            pipeline_tag="text-generation",
            data={"data_dir": str(inputs.data.path), "counts": inputs.data.manifest.get("counts")},
        )

    def before_export(self, inputs: Inputs) -> None:
        from hfllm.models.causal import finalize_for_generation

        finalize_for_generation(inputs.model, inputs.tokenizer)
