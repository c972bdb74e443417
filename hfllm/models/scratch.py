"""Dropout off while a new model pretrains, back to the architecture's defaults in the saved config.

Why: a from-scratch masked LM sees most of its tokens about once, so dropout only slows learning
(Geiping & Goldstein 2022, "Cramming", found the same for BERT), and it costs time: each dropout
draws a random mask, and with attention dropout on, PyTorch's SDPA on a CPU falls back from its
fused kernel to the unfused math path. Measured on the demo's 4-layer, 128-wide BERT (docs/speed.md):
a training step took 0.59x the time with dropout off, and the validation loss at equal tokens was
lower. Fine-tuning on small labelled data is where dropout earns its keep, so the saved model's
config carries the architecture's default dropout again for whoever trains it next.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hfllm.output import log

# Dropout of heads that pretraining does not train: left as they are.
HEAD_DROPOUT_WORDS = ("classifier", "qa_", "seq_classif", "summary")


def dropout_keys(model_type: str) -> dict[str, float]:
    """Return {config key: default probability} of every non-zero encoder dropout of `model_type`."""
    from transformers import AutoConfig

    try:
        defaults = AutoConfig.for_model(model_type).to_dict()
    except (ValueError, TypeError):
        return {}
    return {
        key: float(value)
        for key, value in defaults.items()
        if "dropout" in key
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
        and not any(word in key for word in HEAD_DROPOUT_WORDS)
    }


def dropout_turned_off(model_type: str, overrides: dict[str, Any]) -> list[str]:
    """Return the dropout keys of a new `model_type` that pretraining sets to 0 (those model.config does not set)."""
    return sorted(key for key in dropout_keys(model_type) if key not in overrides)


def without_dropout(model_type: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Return model.config `overrides` with every dropout of a new `model_type` at 0, unless set there."""
    off = dropout_turned_off(model_type, overrides)
    if off:
        log.info(
            "new model: dropout off while pretraining (%s = 0; set model.config.<key> to keep it); "
            "the saved model config gets the defaults back",
            ", ".join(off),
        )
    return {**overrides, **dict.fromkeys(off, 0.0)}


def restore_dropout(model_config: Any, keys: Iterable[str]) -> None:
    """Put the architecture's default back into `model_config` (before saving it) for each dropout in `keys`."""
    defaults = dropout_keys(model_config.model_type)
    for key in keys:
        if key in defaults:
            setattr(model_config, key, defaults[key])
