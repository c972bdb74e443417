"""One root schema per command; the registry maps a command name to its schema class, imported lazily."""

from __future__ import annotations

import importlib

from pydantic import BaseModel

from hfllm.errors import ConfigError

# Command name -> "module:Class". Lazy so that `hfllm config validate` imports one schema, not all.
SCHEMAS: dict[str, str] = {}


def register(kind: str, target: str) -> None:
    SCHEMAS[kind] = target


def schema_for(kind: str) -> type[BaseModel]:
    """Return the root schema class of a command."""
    if kind not in SCHEMAS:
        raise ConfigError(f"unknown config kind {kind!r}; the kinds are: {', '.join(sorted(SCHEMAS))}")
    module, _, name = SCHEMAS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


register("pretrain", "hfllm.config.schemas.pretrain:PretrainConfig")
register("finetune", "hfllm.config.schemas.finetune:FinetuneConfig")
register("preprocess", "hfllm.config.schemas.preprocess:PreprocessConfig")
register("sweep", "hfllm.config.schemas.sweep:SweepSpace")
register("evaluate", "hfllm.config.schemas.evaluate:EvaluateConfig")
