"""Causal (decoder) language models: which model types are causal, a new one from a type and overrides,
a saved one for inference, and the settings that make a saved model generate with stock Transformers."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, first_line
from hfllm.output import log

# The name tables Transformers' Auto classes are built from, read from the installed version's source.
TABLES = {
    "causal": (("modeling_auto.py",), "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    "masked": (("modeling_auto.py",), "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
    "config": (("auto_mappings.py", "configuration_auto.py"), "CONFIG_MAPPING_NAMES"),
}
CAUSAL_ARCHITECTURE_ENDINGS = ("ForCausalLM", "LMHeadModel")


@functools.cache
def model_type_table(kind: str) -> dict[str, str]:
    """Return Transformers' table of model type -> class name for `kind` (causal, masked, config).

    Parsed from the source of transformers/models/auto (a few ms, no torch import), so a config can be
    checked at validate time against the installed Transformers; imported when parsing fails.
    """
    filenames, name = TABLES[kind]
    spec = importlib.util.find_spec("transformers")
    for filename in filenames:
        try:
            source = Path(spec.origin).parent / "models" / "auto" / filename
            for node in ast.parse(source.read_text(encoding="utf-8")).body:
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == name
                ):
                    return dict(ast.literal_eval(node.value.args[0]))
        except (OSError, SyntaxError, ValueError, AttributeError, IndexError, TypeError):
            continue
    module = "configuration_auto" if kind == "config" else "modeling_auto"
    table = getattr(importlib.import_module(f"transformers.models.auto.{module}"), name)
    return dict(table)


def objective_problem(model_type: str, objective: str) -> str | None:
    """Return what is wrong with training a new `model_type` model for `objective` (masked or causal), or None.

    Encoders such as BERT also have a causal head in Transformers (as decoders of encoder-decoder
    models); a type that has a masked-LM head counts as masked, so `bert` is refused for causal.
    """
    known = {**model_type_table("config"), **model_type_table("causal"), **model_type_table("masked")}
    if model_type not in known:
        close = get_close_matches(model_type, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown model type {model_type!r}{hint}"
    causal = model_type in model_type_table("causal")
    masked = model_type in model_type_table("masked")
    if objective == "causal" and (masked or not causal):
        kind = "masked" if masked else "neither causal nor masked"
        return f"objective causal needs a causal-LM model type (gpt2, llama, qwen2, mistral, ...); {model_type} is {kind}"
    if objective == "masked" and not masked:
        kind = "causal" if causal else "neither masked nor causal"
        return f"objective masked needs a masked-LM model type (bert, roberta, ...); {model_type} is {kind}"
    return None


def is_causal_config(config: dict[str, Any] | Any) -> bool:
    """Return whether a model config (a config.json mapping or a PretrainedConfig) names a causal-LM head."""
    archs = (
        config.get("architectures") if isinstance(config, dict) else getattr(config, "architectures", None)
    )
    return any(str(a).endswith(CAUSAL_ARCHITECTURE_ENDINGS) for a in archs or [])


def is_causal_model_dir(path: Path) -> bool:
    """Return whether `path` holds a causal LM (its config.json names a *ForCausalLM / *LMHeadModel head)."""
    try:
        return is_causal_config(json.loads((Path(path) / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError):
        return False


def special_ids(tokenizer: Any) -> dict[str, int]:
    """Return the pad/bos/eos ids of a causal tokenizer, for a new model's config."""
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    return {key: value for key, value in ids.items() if value is not None}


def new_causal_config(model_type: str, overrides: dict[str, Any], tokenizer: Any, max_length: int):
    """Return a config for a new causal `model_type` model: vocabulary and special ids from the tokenizer,
    max_position_embeddings = the data's max_length, then `overrides` (sizes, dropout, ...) on top."""
    from transformers import AutoConfig

    problem = objective_problem(model_type, "causal")
    if problem:
        raise ConfigError(f"model.type: {problem}")
    settings = {"vocab_size": len(tokenizer), "max_position_embeddings": max_length, **special_ids(tokenizer)}
    try:
        return AutoConfig.for_model(model_type, **{**settings, **overrides})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.config: {first_line(exc)}") from None


def build_causal_model(model_type: str, overrides: dict[str, Any], tokenizer: Any, max_length: int):
    """Return a randomly initialised AutoModelForCausalLM of `model_type`, sized by `overrides`."""
    from transformers import AutoModelForCausalLM

    config = new_causal_config(model_type, overrides, tokenizer, max_length)
    try:
        return AutoModelForCausalLM.from_config(config)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.config: {model_type}: {first_line(exc)}") from None


def fit_embeddings(model: Any, tokenizer: Any) -> int:
    """Resize the model's token embeddings to len(tokenizer) when the tokenizer grew (chat tokens added);
    return the number of rows added (0 when it already fits).

    New rows start at the mean of the old ones (Transformers' mean_resizing), so the added tokens
    begin as an average token rather than noise.
    """
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= rows:
        return 0
    model.resize_token_embeddings(len(tokenizer))
    log.info(
        "resized the token embeddings from %d to %d rows for the tokenizer's new tokens", rows, len(tokenizer)
    )
    return len(tokenizer) - rows


def finalize_for_generation(model: Any, tokenizer: Any) -> None:
    """Set what a saved causal model needs to generate with stock Transformers (pipeline, generate()).

    Training runs with use_cache off (the Trainer's default, and packed documents need it off);
    generation wants the KV cache. The generation config learns the pad id (GPT-2 and Llama have
    none of their own) and every id that ends a turn (EOS, a chat template's end token).
    """
    from hfllm.data.causal import stop_token_ids

    model.config.use_cache = True
    generation = model.generation_config
    stops = stop_token_ids(tokenizer)
    generation.eos_token_id = stops[0] if len(stops) == 1 else stops
    generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    if tokenizer.bos_token_id is not None:
        generation.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = generation.pad_token_id


def load_causal_lm(model_dir: Path, device: str | None = None):
    """Return (model, tokenizer) of a saved causal LM dir, in eval mode on `device` (InputError when it is
    missing, broken, or not a causal LM)."""
    from hfllm.models.loader import load_for_inference
    from hfllm.tasks.names import CAUSAL_LM

    model, tokenizer, _ = load_for_inference(model_dir, device, tasks=(CAUSAL_LM,))
    return model, tokenizer


def context_length(model: Any) -> int | None:
    """Return how many positions the model takes (max_position_embeddings / n_positions), if it says."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
