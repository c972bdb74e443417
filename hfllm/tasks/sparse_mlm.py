"""The masked-LM output layer computed only at the masked positions (about 15% of tokens).

Why: only the masked positions carry a loss, yet the stock heads project every position onto the
whole vocabulary. For small models with 8k-30k vocabularies that projection (and its softmax) is a
large share of a step: about half the forward FLOPs of a 4-layer, 128-wide BERT with 8k tokens.

How: a forward pre-hook on the head's first module swaps its input, the encoder's last hidden states
(batch, length, hidden), for the rows at the masked positions (n, hidden), in the row-major order of
`labels != -100`. The model's own forward still runs, so DDP/FSDP wrapping, checkpoints and
state-dict names are untouched; it returns logits of shape (n, vocab). The Trainer pops the labels
for `compute_loss_func`, so the model computes no loss of its own, and hfllm.tasks.masked_lm's
`mlm_loss` / `mlm_eval_outputs` read 2-D logits as one row per masked token. The heads in
HEAD_INPUT work position by position (dense, activation, layer norm, decoder), so the loss is the
dense head's up to float rounding (a test checks 1e-5 for each type listed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from hfllm.output import log

# Model type -> the head module that receives the encoder's last hidden states. Each is checked by
# tests/test_sparse_mlm.py against the dense head; add a type only with its test.
HEAD_INPUT = {
    "bert": "cls",
    "megatron-bert": "cls",
    "ernie": "cls",
    "roformer": "cls",
    "roberta": "lm_head",
    "xlm-roberta": "lm_head",
    "camembert": "lm_head",
    "roberta-prelayernorm": "lm_head",
    "data2vec-text": "lm_head",
    "mpnet": "lm_head",
    "distilbert": "vocab_transform",
    "electra": "generator_predictions",
    "convbert": "generator_predictions",
    "albert": "predictions",
}


def unsupported_reason(model: Any) -> str | None:
    """Return why the sparse head cannot be used on `model`, or None when it can."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in HEAD_INPUT:
        return f"model type {model_type!r} is not one of {', '.join(sorted(HEAD_INPUT))}"
    if not isinstance(getattr(model, HEAD_INPUT[model_type], None), _module_type()):
        return f"{type(model).__name__} has no `{HEAD_INPUT[model_type]}` head module"
    return None


def _module_type():
    import torch

    return torch.nn.Module


class SparseHead:
    """A hook on a masked-LM head that, inside `only(mask)`, feeds it the masked positions alone."""

    def __init__(self, head: Any):
        self.mask: Any = None
        self.handle = head.register_forward_pre_hook(self._gather)

    def _gather(self, module: Any, args: tuple) -> tuple | None:
        if self.mask is None or not args:
            return None
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != self.mask.shape:
            return None  # not the encoder output this mask was made for: leave the call as it is
        return (hidden[self.mask], *args[1:])

    @contextlib.contextmanager
    def only(self, mask: Any):
        """Inside the block, the head sees only the rows where `mask` (batch, length) is true."""
        self.mask = mask
        try:
            yield self
        finally:
            self.mask = None

    def remove(self) -> None:
        """Detach the hook: the head is dense again."""
        self.handle.remove()


def attach_sparse_head(model: Any) -> SparseHead | None:
    """Return a SparseHead hooked on `model`'s masked-LM head, or None (logged) when its type is not supported."""
    reason = unsupported_reason(model)
    if reason is not None:
        log.info("masked-LM head: dense at every position (%s)", reason)
        return None
    log.info("masked-LM head: computed only at the masked positions")
    return SparseHead(getattr(model, HEAD_INPUT[model.config.model_type]))


class SparseMLMMixin:
    """Trainer mixin: compute_loss runs the masked-LM head only at masked positions once
    `enable_sparse_head(trainer)` attached one (otherwise it changes nothing)."""

    sparse_head: SparseHead | None = None

    def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any):
        # A Mapping, not only a dict: collators return a BatchEncoding, and the Trainer keeps its type.
        labels = inputs.get("labels") if isinstance(inputs, Mapping) else None
        # Without compute_loss_func the model would get the labels and compute a dense loss itself.
        if self.sparse_head is None or labels is None or getattr(self, "compute_loss_func", None) is None:
            return super().compute_loss(model, inputs, *args, **kwargs)  # type: ignore[misc]
        with self.sparse_head.only(labels != -100):
            return super().compute_loss(model, inputs, *args, **kwargs)  # type: ignore[misc]


def enable_sparse_head(trainer: Any) -> bool:
    """Hook the sparse head onto the trainer's model; return whether it is in use.

    The trainer's class must include SparseMLMMixin and its compute_loss_func must read sparse
    logits (hfllm.tasks.masked_lm.mlm_loss does); otherwise the dense head stays, with a log line.
    """
    if not isinstance(trainer, SparseMLMMixin) or getattr(trainer, "compute_loss_func", None) is None:
        log.info("masked-LM head: dense at every position (the trainer has no sparse-head support)")
        return False
    trainer.sparse_head = attach_sparse_head(trainer.model)
    return trainer.sparse_head is not None
