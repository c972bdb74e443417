"""Training recipes: one module of hooks per recipe, run by hfllm.train.runner.

`recipe_for(config)` picks the recipe a config asks for; the modules are imported only then.
"""

from __future__ import annotations

import importlib
from typing import Any

# recipe name -> "module:Class"
RECIPES: dict[str, str] = {
    "masked-lm": "hfllm.recipes.masked_lm:MaskedLM",
    "causal-lm": "hfllm.recipes.causal_lm:CausalLM",
    "classification": "hfllm.recipes.classification:Classification",
    "instruction": "hfllm.recipes.instruction:Instruction",
}


def recipe_named(name: str | None) -> Any:
    """Return a new instance of the recipe called `name`, or None when there is no such recipe."""
    if name not in RECIPES:
        return None
    module, _, cls = RECIPES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def recipe_for(config: Any) -> Any:
    """Return the recipe that trains `config` (a PretrainConfig or FinetuneConfig)."""
    if config.kind == "pretrain":
        return recipe_named("causal-lm" if config.objective == "causal" else "masked-lm")
    return recipe_named("instruction" if config.task == "causal-lm" else "classification")
