"""Resolve a command's config: schema defaults < YAML file < --set < explicit flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hfllm.config.errors import to_config_error
from hfllm.config.overrides import apply_override, parse_set
from hfllm.config.schemas import SCHEMAS, schema_for
from hfllm.config.training_args import check_training_section
from hfllm.config.yamlio import Origins, dump_yaml, read_config_file
from hfllm.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_config(
    schema: type[M],
    path: Path | None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> M:
    """Return the validated config for `schema` from a file, `--set` expressions and explicit flags.

    `flags` maps dotted keys to the values of command-line options; None values are options the
    user did not give and leave the config alone.
    """
    data, origins = read_config_file(path) if path is not None else ({}, {})
    source = str(path) if path is not None else "<defaults>"
    for expr in sets or []:
        key_path, value = parse_set(expr)
        apply_override(data, key_path, value, f"--set {expr}", origins)
    for key, value in (flags or {}).items():
        if value is not None:
            apply_override(data, tuple(key.split(".")), value, f"--{key.replace('_', '-')}", origins)
    return validate_config(schema, data, origins, source)


def validate_config(schema: type[M], data: dict[str, Any], origins: Origins, source: str) -> M:
    """Return `data` validated against `schema`; errors name the place each bad key came from."""
    try:
        config = schema.model_validate(data)
    except ValidationError as exc:
        raise to_config_error(exc, schema, origins, source) from None
    training = getattr(config, "training", None)
    if isinstance(training, dict):
        check_training_section(training, origins, source)
    return config


def kind_of(path: Path, data: dict[str, Any], explicit: str | None = None) -> str:
    """Return which command a config file is for: --kind, its `kind:` key, or its folder's name."""
    kind = explicit or data.get("kind") or (path.parent.name if path.parent.name in SCHEMAS else None)
    if kind is None:
        raise ConfigError(
            f"{path}: cannot tell which command this config is for",
            f"add `kind: <command>` at the top (one of: {', '.join(sorted(SCHEMAS))}) or pass --kind",
        )
    if kind not in SCHEMAS:
        raise ConfigError(f"{path}: unknown kind {kind!r}; the kinds are: {', '.join(sorted(SCHEMAS))}")
    return kind


def load_any(path: Path, sets: list[str] | None = None, kind: str | None = None) -> BaseModel:
    """Return a config file validated against the schema of the command it is for."""
    data, _ = read_config_file(path)
    return load_config(schema_for(kind_of(path, data, kind)), path, sets)


# TrainingArguments fields that hold credentials: never written to config.yaml, cards or logs (the
# token comes from HF_TOKEN or `hf auth login` when the config does not give one).
SECRET_TRAINING_KEYS = ("hub_token",)


def to_yaml(config: BaseModel) -> str:
    """Return the resolved config as YAML that loads back to an equal object, without credentials
    (a `training.hub_token` given in the config is written as null)."""
    data = config.model_dump(mode="json")
    training = data.get("training")
    if isinstance(training, dict):
        for key in SECRET_TRAINING_KEYS:
            if training.get(key) is not None:
                training[key] = None
    return dump_yaml(data)


def changed_keys(
    old: Any, new: Any, prefix: str = "", ignore: tuple[str, ...] = ()
) -> list[tuple[str, Any, Any]]:
    """Return (dotted key, old, new) for every leaf that differs between two config mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}{key}"
            if name not in ignore:
                out += changed_keys(old.get(key), new.get(key), f"{name}.", ignore)
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]
