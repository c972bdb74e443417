"""The `training:` section: the installed `transformers.TrainingArguments` fields, read without importing it.

`hfllm config validate` and `--help` must not import torch (4 s here), so the field names and
annotations are read from the source of `transformers/training_args.py` with `ast`. A real run
builds the actual `TrainingArguments`, which has the last word (and a test checks both agree).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import math
from pathlib import Path
from typing import Any

from hfllm.config.distributed import check_distributed, check_runtime
from hfllm.config.trackers import check_report_to
from hfllm.config.yamlio import Origins
from hfllm.errors import ConfigError


@functools.cache
def training_arg_fields() -> dict[str, ast.expr | None]:
    """Return {field name: annotation AST} for every init field of the installed TrainingArguments."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("transformers is not installed: run `make install` (or pip install hfllm)")
    source = Path(next(iter(spec.submodule_search_locations))) / "training_args.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainingArguments")
    fields: dict[str, ast.expr | None] = {}
    for stmt in cls.body:
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and not _init_false(stmt.value)
        ):
            fields[stmt.target.id] = stmt.annotation
    return fields


def _init_false(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and any(
        k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False
        for k in value.keywords
    )


_SIMPLE = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "None": lambda v: v is None,
}


def _accepts(annotation: ast.expr | None, value: Any) -> bool:
    """Whether `value` fits the annotation; names we do not know (enums, config classes) accept anything."""
    if annotation is None:
        return True
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _accepts(annotation.left, value) or _accepts(annotation.right, value)
    if isinstance(annotation, ast.Constant):
        return value is None if annotation.value is None else value == annotation.value
    if isinstance(annotation, ast.Name):
        check = _SIMPLE.get(annotation.id)
        return check(value) if check else True
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        base = annotation.value.id
        if base in ("Optional", "Union"):
            args = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
            return value is None or any(_accepts(a, value) for a in args)
        if base == "Literal":
            args = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
            return any(isinstance(a, ast.Constant) and a.value == value for a in args)
        check = _SIMPLE.get(base)
        return check(value) if check else True
    return True


# Values TrainingArguments or the model would refuse (or silently misuse) later: checked at validate time.
# key -> (test, what it must be)
_POSITIVE_INT = (lambda v: v >= 1, "an integer of at least 1")
_FINITE_POSITIVE = (lambda v: math.isfinite(v) and v > 0, "a finite number above 0")
_FINITE_NON_NEGATIVE = (lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0")
_STEPS = (lambda v: math.isfinite(v) and v > 0, "above 0 (a number of steps, or a ratio below 1)")
VALUE_RULES: dict[str, tuple[Any, str]] = {
    "per_device_train_batch_size": _POSITIVE_INT,
    "per_device_eval_batch_size": _POSITIVE_INT,
    "gradient_accumulation_steps": _POSITIVE_INT,
    "eval_accumulation_steps": _POSITIVE_INT,
    "save_total_limit": _POSITIVE_INT,
    "learning_rate": _FINITE_POSITIVE,
    "adam_epsilon": _FINITE_POSITIVE,
    "num_train_epochs": _FINITE_POSITIVE,
    "weight_decay": _FINITE_NON_NEGATIVE,
    "max_grad_norm": _FINITE_NON_NEGATIVE,
    "warmup_steps": _FINITE_NON_NEGATIVE,
    "dataloader_num_workers": (lambda v: v >= 0, "an integer of at least 0"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (use num_train_epochs) or at least 1"),
    "eval_steps": _STEPS,
    "save_steps": _STEPS,
    "logging_steps": _STEPS,
}


def check_training_values(training: dict[str, Any], origins: Origins, source: str) -> None:
    """Raise ConfigError, naming the key, for a value no run could use (batch size 0, NaN learning rate...)."""
    for key, (test, must_be) in VALUE_RULES.items():
        value = training.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # unset, or a type error that the annotation check reports
        if not test(value):
            where = origins.get(("training", key), source)
            raise ConfigError(f"{where}: `training.{key}` must be {must_be}, got {value!r}")
    if training.get("max_steps", -1) == -1 and training.get("num_train_epochs") == 0:
        raise ConfigError(f"{source}: nothing to train: training.num_train_epochs is 0 and max_steps is -1")


# Checked by hfllm.config.distributed instead: Transformers 5.24 annotates `fsdp` as `str | None`
# but takes true/false and lists too.
OWN_CHECKS = ("fsdp",)


def check_training_section(training: dict[str, Any], origins: Origins, source: str) -> None:
    """Raise ConfigError for a `training:` key or value that TrainingArguments would refuse.

    Unknown keys, values of the wrong type, and FSDP / DeepSpeed settings that cannot work
    (hfllm.config.distributed) are caught here, without importing torch.
    """
    fields = training_arg_fields()
    for key, value in training.items():
        where = origins.get(("training", key), source)
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.75)
            hint = (
                f"did you mean `training.{close[0]}`?"
                if close
                else "the keys are the fields of transformers.TrainingArguments"
            )
            raise ConfigError(f"{where}: unknown key `training.{key}`", hint)
        if key not in OWN_CHECKS and not _accepts(fields[key], value):
            expected = ast.unparse(fields[key]) if fields[key] is not None else "?"
            raise ConfigError(f"{where}: `training.{key}` should be {expected}, got {value!r}")
    check_training_values(training, origins, source)
    check_report_to(training, origins, source)
    check_distributed(training, origins, source)


def build_training_arguments(training: dict[str, Any], source: str = "training"):
    """Return a real `transformers.TrainingArguments`; its own checks become ConfigErrors."""
    check_runtime(training)
    import torch
    from transformers import TrainingArguments

    if "dataloader_pin_memory" not in training and not torch.cuda.is_available():
        # Pinned memory only helps copies to a GPU; without one torch warns on every run.
        training = {**training, "dataloader_pin_memory": False}
    try:
        return TrainingArguments(**training)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: TrainingArguments refused these settings: {exc}") from None
