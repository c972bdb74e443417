"""Build the masked-LM model: new from a model type and overrides, or loaded from a checkpoint."""

from __future__ import annotations

from typing import Any

from hfllm.errors import ConfigError

# Model types whose position ids start after the padding index (RoBERTa's layout): they need
# max_length + pad_token_id + 1 position embeddings to hold sequences of max_length tokens.
PADDING_OFFSET_TYPES = {
    "roberta",
    "xlm-roberta",
    "camembert",
    "longformer",
    "data2vec-text",
    "xmod",
    "roberta-prelayernorm",
}


def position_offset(config: Any) -> int:
    """Return how many position embeddings a model type reserves before position 0."""
    if getattr(config, "model_type", None) in PADDING_OFFSET_TYPES:
        return (config.pad_token_id or 0) + 1
    return 0


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """Return the pad/cls/sep/mask/bos/eos ids of `tokenizer`, for a new model's config."""
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id
        if tokenizer.bos_token_id is not None
        else tokenizer.cls_token_id,
        "eos_token_id": tokenizer.eos_token_id
        if tokenizer.eos_token_id is not None
        else tokenizer.sep_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "mask_token_id": tokenizer.mask_token_id,
    }
    return {key: value for key, value in ids.items() if value is not None}


def new_model_config(model_type: str, overrides: dict[str, Any], tokenizer: Any, max_length: int):
    """Return a config for a new `model_type` model sized by `overrides`, the tokenizer and the data."""
    from transformers import AutoConfig

    settings = {"vocab_size": len(tokenizer), **special_token_ids(tokenizer)}
    try:
        config = AutoConfig.for_model(model_type, **{**settings, **overrides})
    except ValueError:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        raise ConfigError(
            f"model.type: unknown model type {model_type!r}",
            f"use a Transformers model type with a masked-LM head, e.g. bert, roberta, distilbert "
            f"({len(CONFIG_MAPPING)} types are known)",
        ) from None
    if "max_position_embeddings" not in overrides and hasattr(config, "max_position_embeddings"):
        config.max_position_embeddings = max_length + position_offset(config)
    return config


def build_new_model(model_type: str, overrides: dict[str, Any], tokenizer: Any, max_length: int):
    """Return a randomly initialised AutoModelForMaskedLM of `model_type`."""
    from transformers import AutoModelForMaskedLM

    config = new_model_config(model_type, overrides, tokenizer, max_length)
    try:
        return AutoModelForMaskedLM.from_config(config)
    except ValueError as exc:
        raise ConfigError(
            f"model.type: {model_type!r} has no masked-LM head in Transformers ({exc})"
        ) from None
    except TypeError as exc:
        raise ConfigError(f"model.config: {exc}") from None


def init_output_bias(model: Any, log_probs: Any) -> bool:
    """Set the masked-LM output bias to `log_probs` (one per vocabulary id); return False if there is none."""
    import torch

    output = model.get_output_embeddings()
    bias = getattr(output, "bias", None)
    if bias is None or bias.shape[0] != len(log_probs):
        return False
    with torch.no_grad():
        bias.copy_(torch.as_tensor(log_probs, dtype=bias.dtype))
    return True


def count_parameters(model: Any) -> dict[str, int]:
    """Return total, trainable, embedding and non-embedding parameter counts (the MFU formula needs the split)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "Embedding")
    return {
        "parameters": total,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "embedding_parameters": embedding,
        "non_embedding_parameters": total - embedding,
    }
