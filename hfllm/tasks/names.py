"""The task vocabulary shared by every layer: task and problem-type names, the ignore label, and how a
saved model or a labels column says which task it is for. Imports nothing heavy."""

from __future__ import annotations

from typing import Any

from hfllm.errors import InputError

SEQUENCE = "sequence-classification"
TOKEN = "token-classification"
MASKED_LM = "masked-lm"
CAUSAL_LM = "causal-lm"
SINGLE = "single_label_classification"
MULTI = "multi_label_classification"
REGRESSION = "regression"

# The label of a position that no loss or metric counts (PyTorch's cross_entropy default ignore_index).
IGNORE_INDEX = -100

# Metrics where smaller is better: best-checkpoint selection and early stopping must know.
LOWER_IS_BETTER = {"loss", "token_loss", "mse", "rmse", "mae", "hamming_loss", "perplexity"}


def task_of(model_config: Any, where: str = "model") -> str:
    """Return the task a saved model was built for, from the head named in its config's architectures."""
    for arch in getattr(model_config, "architectures", None) or []:
        if arch.endswith("ForSequenceClassification"):
            return SEQUENCE
        if arch.endswith("ForTokenClassification"):
            return TOKEN
        if arch.endswith("ForMaskedLM") or arch.endswith("ForPreTraining"):
            return MASKED_LM
        if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
            return CAUSAL_LM
    raise InputError(
        f"{where}: config.json names no classification or language-model head (architectures: "
        f"{getattr(model_config, 'architectures', None)})",
        "give a model dir written by `hfllm finetune` or `hfllm pretrain` (its model/)",
    )


def problem_type_of(model_config: Any) -> str:
    """Return the sequence-classification problem type of a model config (single-label when unset)."""
    return getattr(model_config, "problem_type", None) or (
        REGRESSION if model_config.num_labels == 1 else SINGLE
    )


def problem_type_from_labels(requested: str, label_kinds: set[str]) -> str:
    """Return the problem type: the requested one, or what the raw labels look like ("auto")."""
    if requested != "auto":
        return requested
    if "list" in label_kinds:
        return MULTI
    if "float" in label_kinds and "str" not in label_kinds:
        return REGRESSION
    return SINGLE


def problem_type_from_feature(feature: Any) -> str:
    """Return the problem type a tokenized `labels` column holds: lists, floats or class ids."""
    if hasattr(feature, "feature") or type(feature).__name__ in ("Sequence", "List", "LargeList"):
        return MULTI
    return REGRESSION if str(getattr(feature, "dtype", "int64")).startswith("float") else SINGLE


def headline_metric(task: str, problem_type: str | None) -> str:
    """Return the metric that picks the best checkpoint by default for a task."""
    if task == TOKEN:
        return "entity_f1"
    return {MULTI: "f1_micro", REGRESSION: "mse"}.get(problem_type or SINGLE, "f1_macro")
