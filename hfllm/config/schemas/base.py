"""Shared pieces of the config schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _as_list(value: Any) -> Any:
    # `files: corpus.txt` is as natural in YAML as a one-item list.
    return [value] if isinstance(value, str) else value


FileList = Annotated[list[str], BeforeValidator(_as_list)]


class Section(BaseModel):
    """A config mapping: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def training_section(defaults: dict[str, Any]) -> Any:
    """Return the type of a `training:` section: TrainingArguments fields over hfllm's `defaults`.

    The user's keys win; the merged mapping is what gets validated, dumped and reloaded, so a
    resolved config.yaml states every training setting the run used.
    """
    return Annotated[
        dict[str, Any],
        BeforeValidator(lambda value: {**defaults, **(value or {})}),
        Field(default_factory=lambda: dict(defaults)),
    ]


# The model card's licence and language: what the person training the model states (hfllm guesses neither).
License = Annotated[
    str | None,
    Field(
        None,
        description="The trained model's licence as a Hub licence id (apache-2.0, mit, cc-by-4.0, other, ...), "
        "written to the model card; null: none stated. Mind the base model's and the data's licences.",
    ),
]
Language = Annotated[
    str | list[str] | None,
    Field(None, description="The language(s) of the text, ISO 639-1 codes (e.g. en), for the model card."),
]
