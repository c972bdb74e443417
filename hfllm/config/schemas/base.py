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
