"""The `hfllm pretrain` config: data dir, model (from scratch or a checkpoint), masking, training."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from hfllm.config.schemas.base import Language, License, Section, training_section
from hfllm.config.schemas.peft import PeftSection

# hfllm's defaults for a masked-LM run; every key is a TrainingArguments field and the user's keys win.
PRETRAIN_TRAINING_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 1.0,
    "max_steps": -1,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "gradient_accumulation_steps": 1,
    # With hfllm's masked-LM loss (summed, divided by the masked tokens of the whole step), N processes
    # train exactly like one with an N times larger batch.
    "average_tokens_across_devices": True,
    "learning_rate": 5.0e-4,
    "weight_decay": 0.01,
    "warmup_steps": 0.05,
    "lr_scheduler_type": "linear",
    "eval_strategy": "steps",
    "eval_steps": 500,
    "eval_on_start": True,
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    # The evaluation loss per masked token over the whole split (the Trainer's eval_loss averages batch means).
    "metric_for_best_model": "token_loss",
    "greater_is_better": False,
    "logging_steps": 50,
    "logging_first_step": True,
    # A NaN loss must reach the non-finite check instead of being averaged away in the logs.
    "logging_nan_inf_filter": False,
    "report_to": ["tensorboard"],
    "include_num_input_tokens_seen": "all",
    "seed": 42,
    "dataloader_num_workers": 0,
}


class ModelSection(Section):
    """Which model to train: a new one of `type` (from scratch), or a checkpoint at `name_or_path`."""

    type: str | None = Field(
        "bert",
        description="Transformers model type built from scratch: with a masked-LM head (bert, roberta, distilbert, "
        "electra, modernbert, ...) or, for objective causal, a causal-LM one (gpt2, llama, qwen2, mistral, ...). "
        "Ignored when `name_or_path` is set.",
    )
    name_or_path: str | None = Field(
        None,
        description="Continue pretraining from this local model dir (or Hub name when online). Its tokenizer "
        "must be the one the data was tokenized with.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the model config (hidden_size, num_hidden_layers, num_attention_heads, "
        "intermediate_size, hidden_dropout_prob, ...). vocab_size, special token ids and "
        "max_position_embeddings come from the tokenizer and the data unless given here.",
    )
    output_bias_init: Literal["zero", "unigram"] = Field(
        "unigram",
        description="New models only: start the masked-LM output bias at the log token frequencies of "
        "the train split (the model starts at the unigram baseline instead of spending its first steps "
        "learning word frequencies; docs/speed.md), or at zero.",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the checkpoint dir (off by default)."
    )
    allow_pickle: bool = Field(
        False,
        description="Allow loading pickle weights (.bin) from `name_or_path`; safetensors only otherwise.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if self.type is None and self.name_or_path is None:
            raise ValueError(
                "set `model.type` (from scratch) or `model.name_or_path` (continue a checkpoint)"
            )
        return self


class MaskingSection(Section):
    """How tokens are masked for the masked-LM objective (DataCollatorForLanguageModeling)."""

    mlm_probability: float = Field(
        0.15,
        gt=0.0,
        le=1.0,
        description="Share of each sequence's tokens chosen for prediction: round(share x length), at least one "
        "(as BERT counts: [CLS] and [SEP] in the length, never chosen).",
    )
    whole_word_mask: bool = Field(
        False,
        description="Mask all pieces of a word together (random replacement is then off, as in Transformers).",
    )
    mask_replace_prob: float = Field(
        0.8, ge=0.0, le=1.0, description="Of the chosen tokens, share replaced by [MASK]."
    )
    random_replace_prob: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Of the chosen tokens, share replaced by a random token (the rest stay).",
    )
    seed: int | None = Field(
        None,
        description="Seed of the masks; defaults to `training.seed`. Masks depend only on seed, epoch and text.",
    )

    @model_validator(mode="after")
    def _sum_at_most_one(self) -> MaskingSection:
        if self.mask_replace_prob + self.random_replace_prob > 1.0:
            raise ValueError("mask_replace_prob + random_replace_prob must not exceed 1")
        return self


class PretrainConfig(Section):
    """`hfllm pretrain`: masked or causal language-model pretraining on a data dir written by `hfllm preprocess`."""

    kind: Literal["pretrain"] = "pretrain"
    objective: Literal["masked", "causal"] | None = Field(
        None,
        description="masked (BERT-style, the default for encoder types) or causal (next-token, GPT-style; the "
        "default for decoder-only types such as gpt2, llama, qwen2, mistral, and for a causal checkpoint). The data "
        "dir must be preprocessed for the same objective.",
    )
    data_dir: str = Field(
        description="Data dir written by `hfllm preprocess` (splits, tokenizer/, manifest.json)."
    )
    output_dir: str = Field(
        "runs/pretrain", description="Run dir: config.yaml, checkpoints/, model/, metrics.json."
    )
    model: ModelSection = Field(default_factory=ModelSection, description="The model to train.")
    license: License
    language: Language
    masking: MaskingSection = Field(default_factory=MaskingSection, description="Masked-LM masking.")
    peft: PeftSection | None = Field(
        None,
        description="Continue pretraining `model.name_or_path` with a LoRA adapter instead of every weight "
        "(null: all weights train).",
    )
    training: training_section(PRETRAIN_TRAINING_DEFAULTS) = Field(  # type: ignore[valid-type]
        description="transformers.TrainingArguments fields over hfllm's pretraining defaults "
        "(output_dir is the run dir's checkpoints/ and is set by hfllm)."
    )

    @model_validator(mode="after")
    def _objective_fits_the_model(self) -> PretrainConfig:
        from hfllm.models.causal import is_causal_model_dir, model_type_table, objective_problem

        if self.objective is None:
            if self.model.name_or_path:
                causal = is_causal_model_dir(Path(self.model.name_or_path).expanduser())
            else:
                types = (model_type_table("causal"), model_type_table("masked"))
                causal = self.model.type in types[0] and self.model.type not in types[1]
            self.__dict__["objective"] = "causal" if causal else "masked"
        elif not self.model.name_or_path and self.model.type:
            problem = objective_problem(self.model.type, self.objective)
            if problem:
                raise ValueError(f"model.type: {problem}")
        return self

    @model_validator(mode="after")
    def _adapter_needs_a_base(self) -> PretrainConfig:
        if self.peft is not None and not self.model.name_or_path:
            raise ValueError(
                "peft: an adapter trains on top of a pretrained model; set model.name_or_path "
                "(a new model from scratch trains all its weights: remove the peft section)"
            )
        return self
