"""FSDP and DeepSpeed settings of `training:` (`fsdp`, `fsdp_config`, `deepspeed`), checked early.

Two stages. `check_distributed` runs when a config loads (`hfllm config validate` too) and imports
no torch: option names, config keys and JSON files are read from the installed Transformers and
Accelerate sources, so a typo stops the command in a second, not after the model is built on 8
GPUs. `check_runtime` runs just before the real TrainingArguments is built and looks at the machine.

Relative paths in `training.deepspeed` and `training.fsdp_config` are resolved against the working
directory, like `data_dir`, `output_dir` and every other path in a config (and as Transformers,
axolotl and LLaMA-Factory read them): run the shipped configs from the repository root.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

from hfllm.config.yamlio import Origins
from hfllm.errors import ConfigError

# FSDPOption of Transformers 5.24, used when the installed source has no FSDPOption class.
FALLBACK_FSDP_OPTIONS = (
    "full_shard",
    "shard_grad_op",
    "no_shard",
    "hybrid_shard",
    "hybrid_shard_zero2",
    "offload",
    "auto_wrap",
)
FSDP_KEY_SOURCES = ("training_args.py", "trainer.py")
# Accelerate's allowed values for these fsdp_config keys (accelerate/utils/constants.py).
FSDP_VALUE_LISTS = {
    "auto_wrap_policy": "FSDP_AUTO_WRAP_POLICY",
    "state_dict_type": "FSDP_STATE_DICT_TYPE",
    "backward_prefetch": "FSDP_BACKWARD_PREFETCH",
}


def _package_file(package: str, name: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    return path if path.is_file() else None


@functools.cache
def fsdp_options() -> tuple[str, ...]:
    """Return the values `training.fsdp` may list: transformers.trainer_utils.FSDPOption, read with ast."""
    path = _package_file("transformers", "trainer_utils.py")
    if path is not None:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == "FSDPOption":
                return tuple(
                    s.value.value
                    for s in node.body
                    if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)
                )
    return FALLBACK_FSDP_OPTIONS


@functools.cache
def fsdp_config_keys() -> frozenset[str]:
    """Return the `fsdp_config` keys the installed Transformers reads (empty when its source is unknown)."""
    pattern = re.compile(
        r"(?<![\w.])(?:self\.|args\.|self\.args\.)fsdp_config(?:\.get\(|\[|\.setdefault\()\s*\"(\w+)\""
        r"|\"(\w+)\"\s+in\s+(?:self\.|args\.|self\.args\.)fsdp_config\b"
    )
    keys: set[str] = set()
    for name in FSDP_KEY_SOURCES:
        path = _package_file("transformers", name)
        if path is not None:
            keys.update(a or b for a, b in pattern.findall(path.read_text(encoding="utf-8")))
    # Fewer keys than FSDP has always had means the source changed shape: check nothing then.
    return frozenset(keys) if len(keys) >= 5 else frozenset()


@functools.cache
def accelerate_constants() -> dict[str, tuple[str, ...]]:
    """Return Accelerate's FSDP_* lists of allowed values (empty when its source is unknown)."""
    path = _package_file("accelerate", "utils/constants.py")
    if path is None:
        return {}
    out = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.startswith("FSDP_"):
                    out[target.id] = tuple(e.value for e in node.value.elts if isinstance(e, ast.Constant))
    return out


def check_distributed(training: dict[str, Any], origins: Origins, source: str) -> None:
    """Raise ConfigError for a wrong `fsdp` option, `fsdp_config` key or `deepspeed` file."""

    def where(*key: str | int) -> str:
        return origins.get(("training", *key), source)

    fsdp_on = fsdp_enabled(training.get("fsdp"), where("fsdp"))
    fsdp_config = training.get("fsdp_config")
    if isinstance(fsdp_config, str):
        fsdp_config = read_json_object(fsdp_config, "training.fsdp_config", where("fsdp_config"))
    if fsdp_on and isinstance(fsdp_config, dict):
        _check_fsdp_config(fsdp_config, where)
    if fsdp_on and training.get("use_cpu"):
        raise ConfigError(
            f"{where('fsdp')}: `training.fsdp` needs GPUs but `training.use_cpu` is true",
            "on CPUs Accelerate would quietly run plain data-parallel instead: remove one of the two",
        )
    deepspeed = training.get("deepspeed")
    if isinstance(deepspeed, str):
        read_json_object(deepspeed, "training.deepspeed", where("deepspeed"))
    if fsdp_on and deepspeed:
        raise ConfigError(
            f"{where('deepspeed')}: `training.fsdp` and `training.deepspeed` are both set",
            "the Trainer runs one of them: remove the other",
        )


def fsdp_enabled(value: Any, where: str = "training") -> bool:
    """Return whether `training.fsdp` turns FSDP on; raise ConfigError for an option Transformers lacks.

    Accepted: true/false, or the options as a string ("full_shard auto_wrap") or a list.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(
            f"{where}: `training.fsdp` should be true, false or FSDP options, got {value!r}",
            f"e.g. `fsdp: true` or `fsdp: full_shard auto_wrap`; options: {', '.join(fsdp_options())}",
        )
    options = fsdp_options()
    for item in items:
        if item not in options:
            close = difflib.get_close_matches(item, options, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{where}: `training.fsdp`: unknown FSDP option {item!r}",
                f"{hint}the options are true, false or a list of: {', '.join(options)}",
            )
    return bool(items)


def _check_fsdp_config(fsdp_config: dict[str, Any], where) -> None:
    known = fsdp_config_keys()
    constants = accelerate_constants()
    for raw_key, value in fsdp_config.items():
        # Transformers strips an `fsdp_` prefix (Accelerate config files spell keys that way).
        key = raw_key[5:] if raw_key.startswith("fsdp_") else raw_key
        here = where("fsdp_config", raw_key)
        if known and key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise ConfigError(
                f"{here}: unknown key `training.fsdp_config.{raw_key}`",
                f"{hint}the keys Transformers reads: {', '.join(sorted(known))}",
            )
        allowed = constants.get(FSDP_VALUE_LISTS.get(key, ""), ())
        if allowed and str(value).upper() not in allowed:
            raise ConfigError(
                f"{here}: `training.fsdp_config.{raw_key}` should be one of {', '.join(allowed)}, got {value!r}"
            )
        if key == "version" and value not in (1, 2):
            raise ConfigError(f"{here}: `training.fsdp_config.{raw_key}` should be 1 or 2, got {value!r}")


def read_json_object(path: str, key: str, where: str) -> dict[str, Any]:
    """Return the JSON object in the file `path` names (relative to the working directory)."""
    file = Path(path).expanduser()
    if not file.is_file():
        beside = Path(where.split(":", 1)[0]).parent / path
        hint = (
            f"relative paths are read from the working directory ({os.getcwd()}), not from the config's "
            f"folder: there it is {beside}"
            if not file.is_absolute() and beside.is_file()
            else "relative paths are read from the working directory, like data_dir"
        )
        raise ConfigError(f"{where}: `{key}`: no such file {path}", hint)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: `{key}`: {path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: `{key}`: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: `{key}`: {path} should hold a JSON object, got {type(data).__name__}")
    return data


def check_runtime(training: dict[str, Any]) -> None:
    """Raise ConfigError when this machine or launch cannot run the FSDP / DeepSpeed settings asked for."""
    if training.get("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "`training.deepspeed` is set but DeepSpeed is not installed",
            "pip install deepspeed on the GPU machines (hfllm does not depend on it), or use training.fsdp",
        )
    if not fsdp_enabled(training.get("fsdp")):
        return
    if training.get("use_cpu") or not _accelerator_available():
        raise ConfigError(
            "`training.fsdp` needs GPUs; this run is on the CPU",
            "on CPUs Accelerate would quietly run plain data-parallel instead: remove training.fsdp "
            "(and fsdp_config) for CPU runs",
        )
    if "LOCAL_RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "`training.fsdp` runs only under a distributed launcher, even on one GPU",
            "use --num-processes N (1 for one GPU), or `torchrun --nproc_per_node N -m hfllm ...`",
        )


def _accelerator_available() -> bool:
    import torch

    # torch.accelerator (torch >= 2.6) also knows XPU/NPU, where Accelerate runs FSDP too; MPS has no FSDP.
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "current_accelerator"):
        device = accelerator.current_accelerator()
        return device is not None and device.type not in ("cpu", "mps")
    return torch.cuda.is_available()
