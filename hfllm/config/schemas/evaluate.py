"""The `hfllm evaluate` config: a saved model, the data to score it on (a data dir or raw labelled files), output."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hfllm.config.schemas.base import FileList, Section


class EvaluateDataSection(Section):
    """What to evaluate on, and for raw files which columns hold what."""

    files: FileList = Field(
        default_factory=list,
        description="A data dir written by `hfllm preprocess` (its `split` is scored), or raw labelled files "
        "(csv, tsv, jsonl, conll, parquet; globs too), read with the model's label map and cleaned as its "
        "training text was (model/cleaning.json). For a causal LM also text files (perplexity).",
    )
    format: Literal["auto", "txt", "jsonl", "json", "csv", "tsv", "parquet", "conll", "arrow"] = Field(
        "auto", description="Raw files: their format; `auto` goes by the file extension."
    )
    text_column: str = Field("text", description="Raw files: the column with the text.")
    text_pair_column: str | None = Field(
        None, description="Raw files: the column with the second text of a pair."
    )
    label_column: str = Field("label", description="Raw files: the column with the label(s).")
    label_separator: str | None = Field(
        None, description="Raw files, multi-label: split string labels on this, e.g. `|`."
    )
    tokens_column: str = Field("tokens", description="Raw files, token classification: the words column.")
    tags_column: str = Field("tags", description="Raw files, token classification: the per-word tags column.")
    max_length: int | None = Field(
        None,
        ge=8,
        description="Raw files: truncate to this many tokens (null: the length the model was trained on).",
    )


class EvaluateConfig(Section):
    """`hfllm evaluate`: score a saved model on a data dir split or on raw labelled files."""

    kind: Literal["evaluate"] = "evaluate"
    model: str = Field(description="The model dir (a finetune or pretrain run's model/), or --model.")
    data: EvaluateDataSection = Field(
        default_factory=EvaluateDataSection, description="What to evaluate on (or --data)."
    )
    split: str = Field("test", description="Data dir: the split to score (train, validation or test).")
    output_dir: str | None = Field(
        None,
        description="Where metrics.json, predictions.jsonl and the report go (null: <run>/eval-<split> beside "
        "a run's model/, else ./eval-<model>-<split>).",
    )
    batch_size: int = Field(64, ge=1, description="Examples per forward pass.")
    seed: int = Field(42, description="Masked LM: seed of the evaluation masks.")
    stride: int | None = Field(
        None, ge=1, description="Causal LM on a text file: window step in tokens (null: half the context)."
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "fp32",
        description="Classifiers and masked LMs: fp32 keeps the metrics exact; auto/bf16 run faster where bf16 "
        "is native (a few predictions may change); int8 is dynamic quantization on a CPU (docs/speed.md). "
        "A causal LM is scored in fp32.",
    )

    @model_validator(mode="after")
    def _has_data(self) -> EvaluateConfig:
        if not self.data.files:
            raise ValueError(
                "nothing to evaluate on: set data.files (a data dir or raw files) or pass --data"
            )
        return self
