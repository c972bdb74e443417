"""`hfllm pretrain` with the causal (next-token) objective: the hooks the runner calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.output import log
from hfllm.train.recipe import Card, Inputs, Recipe, lm_eval_history

COLUMNS = ("input_ids", "position_ids")


class CausalLM(Recipe):
    """Causal-language-model pretraining (GPT-2, Llama, Qwen2, Mistral...) from scratch or a checkpoint."""

    name = "causal-lm"
    command = "pretrain"
    must_match = (
        "data_dir",
        "model",
        "objective",
        "training.per_device_train_batch_size",
        "training.gradient_accumulation_steps",
        "training.seed",
    )
    headline = ("loss", "perplexity", "next_token_accuracy", "unigram_perplexity", "tokens_per_second")

    def reads(self, config: Any) -> tuple[str, ...]:
        return tuple(p for p in (config.data_dir, config.model.name_or_path) if p)

    def setup(self, config: Any) -> Inputs:
        from hfllm.models.preflight import check_fits_model, column_stats, pretraining_data
        from hfllm.tasks.causal_lm import documents_isolated

        data, splits = pretraining_data(config.data_dir, "causal", COLUMNS)
        tokenizer = data.load_tokenizer()
        max_length = int(data.manifest.get("max_length") or column_stats(splits["train"])["max_length"])
        model = self._model(config, data, tokenizer, max_length)
        model.config.use_cache = (
            False  # packed documents are found from the position ids only without a cache
        )
        check_fits_model(splits, model, str(data.path))
        isolated = documents_isolated(model, tokenizer.eos_token_id)
        if not isolated:
            log.warning(
                "%s attends across documents inside a block (its attention does not read packing from "
                "position ids); documents are only separated by EOS",
                model.config.model_type,
            )
        name = config.model.name_or_path or f"a new {config.model.type} model"
        info = {"documents_isolated": isolated}
        return Inputs(
            model, tokenizer, data, splits, name, max_length, base_model=config.model.name_or_path, info=info
        )

    @staticmethod
    def _model(config: Any, data: Any, tokenizer: Any, max_length: int) -> Any:
        from hfllm.models.causal import build_causal_model
        from hfllm.models.loader import check_model_dir, load_model, load_tokenizer, resolve
        from hfllm.models.preflight import check_same_tokenizer
        from hfllm.tasks.names import CAUSAL_LM

        if not config.model.name_or_path:
            return build_causal_model(config.model.type, config.model.config, tokenizer, max_length)
        source = resolve(config.model.name_or_path)
        if source.local:
            check_model_dir(Path(source.location), config.model.allow_pickle)
        # The checkpoint's tokenizer must be the one that tokenized the data.
        check_same_tokenizer(
            load_tokenizer(config.model.name_or_path, key="model.name_or_path"), data, source.name
        )
        if config.model.config:
            log.warning("model.config is ignored when model.name_or_path is set")
        return load_model(
            config.model.name_or_path, CAUSAL_LM, config.model.trust_remote_code, config.model.allow_pickle
        )

    def training_settings(self, config: Any, inputs: Inputs, settings: dict[str, Any]) -> dict[str, Any]:
        # The collator builds position_ids and labels itself; no column may be dropped before it.
        settings["remove_unused_columns"] = False
        return settings

    def trainer_parts(self, config: Any, inputs: Inputs) -> dict[str, Any]:
        from hfllm.tasks.causal_lm import causal_trainer_parts

        return causal_trainer_parts(inputs.tokenizer, reset_at_eos=bool(inputs.info["documents_isolated"]))

    def split_metrics(self, name: str, values: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
        from hfllm.tasks.causal_lm import causal_unigram_perplexity, perplexity, unigram_skip_ids

        loss = values.get("token_loss", values.get("loss"))
        tokenizer = inputs.tokenizer
        baseline = causal_unigram_perplexity(
            inputs.splits["train"], inputs.splits[name], len(tokenizer), unigram_skip_ids(tokenizer)
        )
        return {
            "loss": loss,
            "perplexity": perplexity(loss),
            "next_token_accuracy": values.get("next_token_accuracy"),
            "unigram_perplexity": baseline,
            "tokens": values.get("tokens"),
            "examples": len(inputs.splits[name]),
        }

    def extra_metrics(self, trainer: Any, inputs: Inputs, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"eval_history": lm_eval_history(trainer.state.log_history, "next_token_accuracy")}

    def card(self, config: Any, inputs: Inputs, metrics: dict[str, Any]) -> Card:
        manifest = inputs.data.manifest
        return Card(
            title="causal language model",
            summary=f"Pretrained with `hfllm pretrain` (causal LM, next-token prediction) from {inputs.model_name} "
            f"on the data dir `{config.data_dir}`. Generate with `hfllm generate --model DIR` or "
            "`pipeline('text-generation')`.",
            pipeline_tag="text-generation",
            data={
                "data_dir": config.data_dir,
                **{k: v for k, v in manifest.items() if k in ("counts", "max_length", "tokenizer", "corpus")},
            },
        )

    def before_export(self, inputs: Inputs) -> None:
        from hfllm.models.causal import finalize_for_generation

        finalize_for_generation(inputs.model, inputs.tokenizer)
