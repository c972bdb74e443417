"""LoRA adapters through the `peft` library: wrap a model for training, say what was trained, save the
head config beside the adapter, and load an adapter dir (its base model + the adapter) for inference.

The runner wraps every recipe's model here (`apply_peft`), so recipes do not know about adapters.
"""

from __future__ import annotations

import contextlib
import copy
import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hfllm.errors import ConfigError, InputError, first_line
from hfllm.output import log
from hfllm.tasks.names import CAUSAL_LM, MASKED_LM, SEQUENCE, TOKEN, task_of

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# `target_modules: auto`: the attention and MLP projections of each model family, named as in its
# Transformers 5.24 modeling file (transformers/models/<type>/modeling_<type>.py). peft's own default
# table (peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING) adapts only the query
# and value projections; the QLoRA paper (Dettmers et al. 2023, section 4) found that adapters on every
# linear layer of the blocks are what it takes to match full fine-tuning. A name matches a module whose
# dotted path ends with it. Types not listed take peft's `all-linear` (every linear layer but the head).
BERT_LIKE = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
DECODER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
AUTO_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra"), BERT_LIKE),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj", *BERT_LIKE[3:]),
    "mpnet": ("q", "k", "v", "o", "intermediate.dense", "output.dense"),
    "modernbert": ("Wqkv", "Wo", "Wi"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo2"), DECODER),
}
# hfllm task -> peft task_type; the task type makes peft train (and save) a classifier's new head in full.
PEFT_TASKS = {SEQUENCE: "SEQ_CLS", TOKEN: "TOKEN_CLS", CAUSAL_LM: "CAUSAL_LM", MASKED_LM: None}


@contextlib.contextmanager
def _quiet():
    # peft 0.21 calls a Transformers method that Transformers 5 deprecates: noise in every run's log.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


@contextlib.contextmanager
def _loading_report_off():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def is_adapter_dir(path: Path) -> bool:
    """Return whether `path` holds a peft adapter (adapter_config.json) rather than a full model."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def model_task(model: Any) -> str:
    """Return the hfllm task of a loaded model, from its class (SequenceClassification, MaskedLM, ...)."""
    return task_of(SimpleNamespace(architectures=[type(model).__name__]), type(model).__name__)


def adaptable_modules(model: Any) -> list[str]:
    """Return the dotted names of the modules LoRA can adapt (linear, Conv1D, embedding, convolution)."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    return [
        name
        for name, module in model.named_modules()
        if name and (isinstance(module, kinds) or type(module).__name__ == "Conv1D")
    ]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith(f".{target}")


def resolve_targets(model: Any, requested: str | list[str]) -> list[str] | str:
    """Return the target_modules for peft: `auto` looked up per model family, a list checked against
    the model's own modules (ConfigError naming the unknown names and listing the model's)."""
    model_type = getattr(model.config, "model_type", "")
    if requested == "auto":
        if model_type not in AUTO_TARGETS:
            log.info(
                "peft.target_modules auto: no table entry for %s, adapting every linear layer", model_type
            )
            return "all-linear"
        requested = list(AUTO_TARGETS[model_type])
    if requested == "all-linear":
        return requested
    names = adaptable_modules(model)
    unknown = [t for t in requested if not any(_matches(n, t) for n in names)]
    if unknown:
        available = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ConfigError(
            f"peft.target_modules: this {model_type} model has no adaptable module called "
            f"{', '.join(map(repr, unknown))}; its module names are: {', '.join(available)}",
            "use names from that list (a dotted suffix such as attention.output.dense also works), or `auto`",
        )
    return list(dict.fromkeys(requested))


def _check_modules_to_save(model: Any, names: list[str] | None) -> None:
    every = [name for name, _ in model.named_modules() if name]
    unknown = [t for t in names or [] if not any(_matches(n, t) for n in every)]
    if unknown:
        heads = sorted({n.split(".")[0] for n in every})
        raise ConfigError(
            f"peft.modules_to_save: this model has no module called {', '.join(map(repr, unknown))}",
            f"its top-level modules are: {', '.join(heads)} (a dotted suffix of any module works)",
        )


def new_modules(model: Any) -> list[str]:
    """Return the modules whose weights the base checkpoint lacked (a new head, a pooler), which
    from_pretrained initialised at random: they must train in full and be saved with the adapter, else
    loading the adapter later would start from other random weights. [] for a model not loaded by
    from_pretrained (Transformers flags each weight it loaded with `_is_hf_initialized`).

    Only leaf modules: a new weight directly on a module with children (a masked-LM head's output bias)
    starts at a constant, and saving the whole module would copy its children (the tied decoder) too.
    """
    params = list(model.named_parameters())
    if not any(getattr(p, "_is_hf_initialized", False) for _, p in params):
        return []
    modules = dict(model.named_modules())
    fresh = [name.rsplit(".", 1)[0] for name, p in params if not getattr(p, "_is_hf_initialized", False)]
    return [name for name in dict.fromkeys(fresh) if not any(True for _ in modules[name].children())]


def head_inputs(model: Any, task: str) -> list[str]:
    """Return the layers of a sequence classifier's pooler (BERT's `bert.pooler.dense`, DeBERTa's
    `pooler.dense`): pretrained, but only for the pretraining objective, and the head reads nothing else.
    The full fine-tune trains them; frozen, they held LoRA's macro-F1 13 points under it (docs/lora.md)."""
    if task != SEQUENCE:
        return []
    return [
        name
        for name, module in model.named_modules()
        if "pooler" in name.split(".") and any(True for _ in module.parameters(recurse=False))
    ]


def _outermost(model: Any, names: list[str]) -> list[str]:
    """Return `names` (modules_to_save entries: names or dotted suffixes) without repeats and without an
    entry whose every module lies inside another entry's module (peft would wrap it twice)."""
    full = [n for n, _ in model.named_modules() if n]
    matched = {name: [n for n in full if _matches(n, name)] for name in dict.fromkeys(names)}

    def inside(name: str) -> bool:
        outer = [m for other, ms in matched.items() if other != name for m in ms]
        return bool(matched[name]) and all(any(n.startswith(f"{m}.") for m in outer) for n in matched[name])

    return [name for name in matched if not inside(name)]


def quantized_loading(config: Any) -> dict[str, Any]:
    """Return the from_pretrained arguments that load a QLoRA run's base model in 4-bit NF4 (bitsandbytes),
    or {} when the config asks for no quantization. The config check refused this already without CUDA."""
    settings = getattr(config, "peft", None)
    if settings is None or not settings.quantization:
        return {}
    import os

    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    # Each process holds its own quantized copy on its own GPU (data parallel).
    return {"quantization_config": quantization, "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))}}


def apply_peft(model: Any, settings: Any, base_name: str) -> Any:
    """Return `model` wrapped for training a LoRA adapter as `settings` (a config's `peft:`) asks.

    `base_name`: the base model as the user named it; adapter_config.json records it (base_reference).
    """
    from peft import LoraConfig, get_peft_model

    task = model_task(model)
    targets = resolve_targets(model, settings.target_modules)
    _check_modules_to_save(model, settings.modules_to_save)
    to_save = _outermost(
        model, [*(settings.modules_to_save or []), *new_modules(model), *head_inputs(model, task)]
    )
    if settings.quantization:
        from peft import prepare_model_for_kbit_training

        # Norms and the head in float32, input gradients on: what training on a 4-bit base needs.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        task_type=PEFT_TASKS[task],
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
        bias=settings.bias,
    )
    try:
        with _quiet():
            wrapped = get_peft_model(model, lora)
    except (ValueError, TypeError, NotImplementedError) as exc:  # e.g. a target layer type LoRA lacks
        raise ConfigError(f"peft: {first_line(exc)}", "check peft.target_modules") from None
    # peft records the path the weights were read from (checkpoints keep it: peft looks for the base's
    # config.json there at each save); model/ records the name the user gave (finish_adapter_dir).
    wrapped.hfllm_base_model = base_reference(base_name)
    sizes = parameter_counts(wrapped)
    facts = adapter_facts(wrapped)
    # peft lists `score` for every classifier; name only the modules this model has.
    saved = [
        name for name in facts["modules_to_save"] if any(n.endswith(name) for n, _ in model.named_modules())
    ]
    log.info(
        "LoRA r=%d alpha=%g on %s%s: %s of %s parameters trainable (%.2f%%)",
        settings.r,
        settings.alpha,
        ", ".join(facts["target_modules"]),
        f"; trained in full: {', '.join(saved)}" if saved else "",
        f"{sizes['trainable']:,}",
        f"{sizes['total']:,}",
        100 * sizes["trainable"] / max(sizes["total"], 1),
    )
    return wrapped


def base_reference(name: str) -> str:
    """Return how adapter_config.json names the base model: `package:NAME` and Hub ids as the user gave
    them (a package installs anywhere; its path belongs to one environment), a local path made absolute."""
    if name.startswith("package:"):
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def parameter_counts(model: Any) -> dict[str, int]:
    """Return the trainable and total parameters of a (peft) model; peft counts 4-bit weights unpacked."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": int(trainable), "total": int(total)}


def adapter_facts(model: Any) -> dict[str, Any] | None:
    """Return what a checkpoint's adapter depends on (method, r, alpha, targets...), None for a full model.

    Recorded in run_facts.json: a resume with another r or other target modules is refused.
    """
    config = (getattr(model, "peft_config", None) or {}).get("default")
    if config is None:
        return None
    targets = config.target_modules
    return {
        "method": "lora",
        "r": config.r,
        "alpha": config.lora_alpha,
        "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else [str(targets)],
        "modules_to_save": sorted(set(config.modules_to_save or [])),
        "bias": config.bias,
        "quantization": "4bit" if getattr(model, "is_loaded_in_4bit", False) else None,
    }


def adapter_metrics(model: Any, model_dir: Path) -> dict[str, Any]:
    """Return the adapter's figures for metrics.json: trainable share and its size on disk."""
    sizes = parameter_counts(model)
    on_disk = (Path(model_dir) / ADAPTER_WEIGHTS).stat().st_size
    return {
        "trainable_parameters": sizes["trainable"],
        "trainable_share": sizes["trainable"] / max(sizes["total"], 1),
        "adapter_bytes": on_disk,
    }


def card_note(model: Any) -> str:
    """Return the model card's paragraph on an adapter: what it is, its base model, how to load it."""
    facts = adapter_facts(model) or {}
    return (
        f"This is a LoRA adapter (r={facts.get('r')}, alpha={facts.get('alpha')}, on "
        f"{', '.join(facts.get('target_modules', []))}), not a full model. Base model: "
        f"`{base_model_of(model)}`. `hfllm predict` and `hfllm evaluate` "
        "load the base and the adapter; `hfllm export --merge` writes a full model. With stock peft: "
        "`PeftModel.from_pretrained(AutoModelFor<Task>.from_pretrained(BASE, "
        "config=AutoConfig.from_pretrained(THIS_DIR)), THIS_DIR)`."
    )


def base_model_of(model: Any) -> str:
    """Return the base model of a peft model as model/ records it (the name the user gave, see base_reference)."""
    return getattr(model, "hfllm_base_model", None) or model.peft_config["default"].base_model_name_or_path


def finish_adapter_dir(model: Any, directory: Path) -> None:
    """Complete an adapter dir that peft's save_pretrained wrote: adapter_config.json names the base as the
    user gave it, and config.json (the trained model's config) keeps the head (labels, problem type) that
    the base is loaded with before the adapter goes on, in full precision whatever it trained in."""
    directory = Path(directory)
    record = read_adapter_config(directory)
    record["base_model_name_or_path"] = base_model_of(model)
    (directory / ADAPTER_CONFIG).write_text(
        json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    base = model.get_base_model()
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(base).__name__]
    config.save_pretrained(str(directory))


def read_adapter_config(path: Path) -> dict[str, Any]:
    """Return an adapter dir's adapter_config.json (InputError when it is unreadable)."""
    file = Path(path) / ADAPTER_CONFIG
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: not a readable adapter config ({exc})", "save the adapter again") from None
    if not isinstance(record, dict):
        raise InputError(f"{file}: an adapter config is a JSON object, not {type(record).__name__}")
    return record


def adapter_task(path: Path) -> str | None:
    """Return the task of an adapter dir without loading any weights: from the head config beside the
    adapter, else from its peft task_type (None: a masked-LM adapter written without a head config)."""
    head = Path(path) / "config.json"
    if head.is_file():
        try:
            architectures = json.loads(head.read_text(encoding="utf-8")).get("architectures")
        except (OSError, ValueError, AttributeError):
            architectures = None
        if architectures:
            return task_of(SimpleNamespace(architectures=architectures), str(head))
    tasks = {v: k for k, v in PEFT_TASKS.items() if v}
    return tasks.get(read_adapter_config(path).get("task_type"))


def _why_missing(message: str) -> str:
    return " (not a local dir" + (", and HF_HUB_OFFLINE is set)" if "HF_HUB_OFFLINE" in message else ")")


def load_adapter_model(path: Path, task: str | None = None) -> tuple[Any, Any, str]:
    """Return (model, tokenizer, task) of an adapter dir: its base model with the adapter on top.

    The base comes from adapter_config.json (a local dir, `package:NAME` or a Hub name when online); the
    head config from the config.json hfllm writes beside the adapter; `task` by default `adapter_task`,
    else the base model's.
    """
    from peft import PeftModel
    from transformers import AutoConfig

    from hfllm.models.loader import load_model, load_tokenizer, resolve

    path = Path(path)
    record = read_adapter_config(path)
    where = f"{path / ADAPTER_CONFIG}: base_model_name_or_path"
    base = record.get("base_model_name_or_path")
    if not base:
        raise InputError(f"{where} is empty", "write the base model's dir (or package:NAME) there")
    try:
        source = resolve(str(base), where)
    except (ConfigError, InputError) as exc:
        if exc.hint and exc.hint.startswith("pip install"):  # package:NAME whose package is not installed
            raise InputError(f"{path}: the adapter's base model {base}: {exc.message}", exc.hint) from None
        raise InputError(
            f"{path}: the adapter's base model {base} is missing"
            + (_why_missing(exc.message) if "not found" in exc.message else f": {exc.message}"),
            f"put the base model back at {base}, or write where it is now (a model dir or package:NAME) "
            f"into {path / ADAPTER_CONFIG} (base_model_name_or_path)",
        ) from None
    config = AutoConfig.from_pretrained(str(path)) if (path / "config.json").is_file() else None
    base_config = AutoConfig.from_pretrained(source.location)
    task = task or adapter_task(path) or task_of(base_config, source.name)
    # A run that added tokens (a chat template's) resized the embeddings: the base loads at its own size,
    # then grows to the adapter's before the adapter's saved embedding rows go on top.
    rows = getattr(config, "vocab_size", None)
    if config is not None and rows != getattr(base_config, "vocab_size", rows):
        config.vocab_size = base_config.vocab_size
    with _loading_report_off():  # its new head is "MISSING" from the base: the adapter holds it
        base_model = load_model(
            str(base), task, key=where, **({"config": config} if config is not None else {})
        )
    if rows and base_model.get_input_embeddings().num_embeddings != rows:
        base_model.resize_token_embeddings(rows)
    try:
        with _quiet():
            model = PeftModel.from_pretrained(base_model, str(path))
    except Exception as exc:  # shapes that differ, a truncated adapter_model.safetensors
        raise InputError(f"{path}: cannot load the adapter onto {base}: {first_line(exc)}") from None
    tokenizer = load_tokenizer(str(path), key="--model")
    return model, tokenizer, task
