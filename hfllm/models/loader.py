"""Load a saved model dir for evaluate, predict and finetune, refusing one without a tokenizer (exit 3)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hfllm.errors import HfllmError, InputError, first_line
from hfllm.models.preflight import check_weights
from hfllm.output import log
from hfllm.tasks.classification import MASKED_LM, SEQUENCE, TOKEN, task_of

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")


def model_source(name_or_path: str) -> tuple[str, bool]:
    """Return (source, is_local): the path when it exists (`package:NAME` resolved), else the name for the Hub."""
    from hfllm.models.builders import resolve_name_or_path

    path = Path(resolve_name_or_path(name_or_path)).expanduser()
    return (str(path), True) if path.exists() else (str(path), False)


def check_model_dir(path: Path, allow_pickle: bool = False) -> None:
    """Raise InputError unless `path` is a model dir with a config, safetensors weights and a tokenizer."""
    if not path.is_dir():
        raise InputError(
            f"model dir not found: {path}", "give the model/ dir of an `hfllm finetune` or `pretrain` run"
        )
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no config.json; is this a model dir?", "give a run's model/ dir")
    _check_config_json(path / "config.json")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"{path}: no tokenizer beside the model (none of {', '.join(TOKENIZER_FILES[:2])})",
            "save the tokenizer into the model dir (tokenizer.save_pretrained), or use the model/ dir hfllm wrote",
        )
    if not allow_pickle and not any(path.glob("*.safetensors")):
        raise InputError(
            f"{path}: no .safetensors weights",
            "pickle weights (.bin) are refused; set model.allow_pickle: true only if you trust this file",
        )
    check_weights(path)


def _check_config_json(file: Path) -> None:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InputError(
            f"{file}: not a readable model config (not JSON: {exc})", "save the model again (save_pretrained)"
        ) from None
    if not isinstance(config, dict):
        raise InputError(f"{file}: a model config is a JSON object, not {type(config).__name__}")


def load_tokenizer(source: str, is_local: bool, trust_remote_code: bool = False):
    """Return the fast tokenizer of a model dir (InputError when it is missing or not a fast one)."""
    from transformers import AutoTokenizer

    if not is_local and (_offline() or _looks_like_path(source)):
        raise InputError(
            f"model dir not found: {source}",
            "give a local model dir (config.json, *.safetensors, tokenizer files); Hub names work only online",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # tokenizers raises plain Exceptions for a corrupt tokenizer.json
        if isinstance(exc, HfllmError):  # e.g. Interrupted, raised by the signal handler
            raise
        raise InputError(f"{source}: cannot load the tokenizer: {first_line(exc)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            f"{source}: the tokenizer is not a fast (Rust) tokenizer; hfllm needs tokenizer.json"
        )
    return tokenizer


def load_for_inference(model_dir: Path, device: str | None = None):
    """Return (model, tokenizer, task) of a saved model dir, in eval mode on `device`."""
    from hfllm.models.builders import resolve_name_or_path

    model_dir = Path(resolve_name_or_path(str(model_dir)))
    check_model_dir(model_dir)
    import torch
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError, KeyError) as exc:  # e.g. an unknown model_type
        raise InputError(
            f"{model_dir / 'config.json'}: cannot load the model config: {first_line(exc)}"
        ) from None
    task = task_of(config, str(model_dir / "config.json"))
    tokenizer = load_tokenizer(str(model_dir), True)
    try:
        model = auto_class(task).from_pretrained(str(model_dir), use_safetensors=True)
    except Exception as exc:  # safetensors raises its own SafetensorError; shapes raise RuntimeError
        if isinstance(exc, HfllmError):
            raise
        raise InputError(f"{model_dir}: cannot load the model weights: {first_line(exc)}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer, task


def auto_class(task: str):
    """Return the AutoModelFor* class of a task."""
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    return {
        SEQUENCE: AutoModelForSequenceClassification,
        TOKEN: AutoModelForTokenClassification,
        MASKED_LM: AutoModelForMaskedLM,
    }[task]


def load_for_finetuning(
    source: str,
    task: str,
    num_labels: int,
    id2label: dict[int, str] | None,
    problem_type: str | None,
    model: Any,
):
    """Return a model with a fresh `task` head sized for the labels, from a local dir or Hub name."""
    label2id = {name: i for i, name in id2label.items()} if id2label else None
    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if id2label:
        kwargs.update(id2label=id2label, label2id=label2id)
    if problem_type:
        kwargs["problem_type"] = problem_type
    if model.trust_remote_code:
        log.warning("trust_remote_code is ON: code from %s may run", source)
    try:
        # ignore_mismatched_sizes: starting from a classifier with another label set replaces its head.
        return auto_class(task).from_pretrained(
            source,
            trust_remote_code=model.trust_remote_code,
            use_safetensors=None if model.allow_pickle else True,
            ignore_mismatched_sizes=True,
            **kwargs,
        )
    except Exception as exc:  # OSError, ValueError, safetensors' SafetensorError, RuntimeError (shapes)
        if isinstance(exc, HfllmError):  # e.g. Interrupted, raised by the signal handler
            raise
        raise InputError(
            f"model.name_or_path: cannot load {source!r} for {task}: {first_line(exc)}",
            "give a local model dir (config.json, *.safetensors, tokenizer files); the Hub is used only when online",
        ) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _looks_like_path(name: str) -> bool:
    # A Hub id is `name` or `namespace/name`; anything else the user meant as a local path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
