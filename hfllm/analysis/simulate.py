"""Run one training or evaluation step of a model on the `meta` device and count the bytes it would hold.

Meta tensors have shapes and dtypes but no storage, so a BERT-base step at batch 32 x 512 "runs" in a
fraction of a second and allocates nothing. A dispatch mode sees every tensor the step creates and
keeps a running total of the live storages (freed ones drop out through weak references), which is
what an allocator without caching would hold: the peak of that total is the step's memory.

Two things differ from a real step and are handled here: data-dependent branches (`mask.all()`)
cannot read meta values, and the attention kernel a real device picks (fused kernels that never hold
the seq x seq matrix) is not what meta picks by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hfllm.analysis.tracker import OpCosts, tracking_mode
from hfllm.errors import InputError

MASKED_LM = "masked_lm"
CAUSAL_LM = "causal_lm"
SEQUENCE = "sequence_classification"
TOKEN = "token_classification"


@dataclass
class StepMemory:
    """A simulated phase: bytes held beyond the weights (peak of live tensors, peak of a CPU process's
    resident set, live right after the forward pass) and what its ops cost."""

    peak: int
    rss_peak: int
    after_forward: int
    costs: OpCosts


@contextlib.contextmanager
def device_attention(target: str) -> Iterator[None]:
    """Within the block, SDPA attention uses the kernel `target` ("cpu" or "gpu") would run.

    PyTorch on a GPU runs memory-efficient/flash kernels (no seq x seq matrix kept); on a CPU it runs
    its flash kernel unless dropout is on while training, when it falls back to the plain softmax path.
    On meta, SDPA always takes the plain path. Models with `attn_implementation: eager` are unaffected.
    """
    import torch
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    def routed(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
    ):
        if query.device.type != "meta":
            return original(
                query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
            )
        if key.shape[-3] != query.shape[-3]:  # grouped-query attention: the kernels see repeated heads
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
        if target == "gpu":
            return torch.ops.aten._scaled_dot_product_efficient_attention(
                query, key, value, None, True, dropout_p, is_causal, scale=scale
            )[0]
        if dropout_p == 0.0:
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                query, key, value, 0.0, is_causal, attn_mask=attn_mask, scale=scale
            )[0]
        return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale)

    F.scaled_dot_product_attention = routed
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def build_meta_model(model_config: Any, objective: str) -> Any:
    """Return the model `objective` trains, built on the meta device (shapes only, no weights)."""
    import torch

    auto = auto_class(objective)
    try:
        with torch.device("meta"):
            return auto.from_config(model_config)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(
            f"cannot build a {objective.replace('_', ' ')} model of type "
            f"{getattr(model_config, 'model_type', '?')!r}: {exc}"
        ) from None


def auto_class(objective: str) -> Any:
    """Return the AutoModelFor* class of an objective."""
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    return {
        MASKED_LM: AutoModelForMaskedLM,
        CAUSAL_LM: AutoModelForCausalLM,
        SEQUENCE: AutoModelForSequenceClassification,
        TOKEN: AutoModelForTokenClassification,
    }[objective]


def _inputs(objective: str, batch: int, seq_len: int, device: str) -> tuple[dict[str, Any], Any]:
    import torch

    ids = torch.zeros((batch, seq_len), dtype=torch.long, device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if objective == MASKED_LM:
        return inputs, torch.zeros_like(ids)  # hfllm computes the masked-LM loss itself
    if objective == CAUSAL_LM:
        return {**inputs, "labels": ids}, None
    if objective == SEQUENCE:
        return {**inputs, "labels": torch.zeros(batch, dtype=torch.long, device=device)}, None
    return {**inputs, "labels": torch.zeros_like(ids)}, None


def _loss(objective: str, outputs: Any, labels: Any) -> Any:
    if objective == MASKED_LM and outputs["logits"].dim() == 2:  # sparse head: one row per masked token
        import torch

        logits = outputs["logits"]
        targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    if objective == MASKED_LM:
        from hfllm.tasks.masked_lm import mlm_loss

        return mlm_loss(outputs, labels)
    return outputs.loss


@dataclass
class RunMemory:
    """Simulated bytes of a training run beyond the weights: one training step with the optimizer state
    held, then (when the run evaluates) one evaluation batch, the heap high-water mark carried over."""

    state: int
    train: StepMemory
    eval: StepMemory | None


def simulate_run(
    model: Any,
    objective: str,
    seq_len: int,
    train_batch: int,
    eval_batch: int | None,
    target: str,
    checkpointing: bool,
    state_sizes: list[int],
    masked_share: float | None = None,
    autocast_dtype: Any = None,
) -> RunMemory:
    """Return the simulated memory of a training step and an evaluation batch (see RunMemory).

    `state_sizes`: the optimizer's state tensors (bytes each); they live from the first step on. A model
    from build_meta_model allocates nothing; a model on a real device runs for real (the tests compare).
    `masked_share`: a masked-LM run's mlm_probability: its output layer then sees only that share of the
    positions, as hfllm's sparse head does where the model type has one (hfllm.tasks.sparse_mlm).
    `autocast_dtype` (torch.bfloat16 / float16): mixed precision, the forward passes and losses under
    torch.autocast as the Trainer runs them (on meta: hfllm.analysis.autocast's emulation of it)."""
    tracker = tracking_mode()
    for size in state_sizes:
        tracker.hold(size)
    precision = _MixedPrecision(model, target, autocast_dtype)
    with _sparse_head(model, objective, masked_share):
        train = _train_step(model, objective, train_batch, seq_len, target, checkpointing, tracker, precision)
        evaluation = None
        if eval_batch:
            tracker.next_phase()
            evaluation = _eval_step(model, objective, eval_batch, seq_len, target, tracker, precision)
    return RunMemory(state=sum(state_sizes), train=train, eval=evaluation)


def sparse_head_module(model: Any, objective: str, share: float | None) -> Any:
    """Return the masked-LM head module that hfllm's sparse head feeds `share` of the rows, or None when
    the head stays dense (not masked-LM pretraining, no share, or a model type without a sparse head)."""
    from hfllm.tasks.sparse_mlm import HEAD_INPUT, unsupported_reason

    if objective != MASKED_LM or share is None or unsupported_reason(model) is not None:
        return None
    return getattr(model, HEAD_INPUT[model.config.model_type])


@contextlib.contextmanager
def _sparse_head(model: Any, objective: str, share: float | None) -> Iterator[None]:
    """Within the block, the masked-LM head gets `share` of the encoder's rows (gathered, as the real
    sparse head's boolean index does; meta tensors cannot be indexed by a mask) and returns 2-D logits;
    the head stays dense when `share` is None or the model type has no sparse head."""
    head = sparse_head_module(model, objective, share)
    if head is None:
        yield
        return
    import torch

    def gather(module: Any, args: tuple) -> tuple | None:
        hidden = args[0]
        if hidden.dim() != 3:
            return None
        rows = hidden.shape[0] * max(1, round(hidden.shape[1] * share))  # as hfllm's MLMCollator counts
        index = torch.arange(rows, device=hidden.device)
        return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, index), *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class _MixedPrecision:
    """Where a step's forward pass and loss run: plain, under torch.autocast (a model on a real device), or
    under its emulation (a meta model)."""

    model: Any
    target: str
    dtype: Any

    def region(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        import torch

        device = self.model.device.type
        if device != "meta":
            return torch.autocast(device, dtype=self.dtype)
        from hfllm.analysis.autocast import autocast_emulation

        return autocast_emulation(self.target, self.dtype)

    def checkpointing_kwargs(self) -> dict[str, Any] | None:
        """Gradient checkpointing's settings: Transformers' default, and on a meta model under emulated
        autocast a recomputation that runs under the emulation too (torch.utils.checkpoint restores real
        autocast by itself, and recomputes in the autograd engine's thread, where the mode is not active)."""
        if self.dtype is None or self.model.device.type != "meta":
            return None
        from hfllm.analysis.autocast import autocast_emulation

        def contexts() -> tuple[Any, Any]:
            return contextlib.nullcontext(), autocast_emulation(self.target, self.dtype)

        return {"use_reentrant": False, "context_fn": contexts}


def _train_step(model, objective, batch, seq_len, target, checkpointing, tracker, precision) -> StepMemory:
    _set_checkpointing(model, checkpointing, precision.checkpointing_kwargs())
    model.train()
    try:
        with device_attention(target), tracker:
            inputs, labels = _inputs(objective, batch, seq_len, model.device.type)
            with precision.region():  # the Trainer's autocast covers the forward pass and the loss
                loss = _loss(objective, model(**inputs), labels)
            after_forward = tracker.current
            loss.backward()
            del loss, inputs, labels
    finally:
        model.zero_grad(set_to_none=True)  # as the Trainer does after each optimizer step
    return StepMemory(tracker.peak, tracker.rss_peak, after_forward, tracker.costs)


def _set_checkpointing(model: Any, on: bool, kwargs: dict[str, Any] | None = None) -> None:
    # Transformers 5.2x renamed gradient_checkpointing_* to activation_checkpointing_* (the old names warn).
    name = (
        "activation_checkpointing"
        if hasattr(model, "activation_checkpointing_enable")
        else "gradient_checkpointing"
    )
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # training does not cache keys/values (and checkpointing refuses to)
    if on:
        getattr(model, f"{name}_enable")(kwargs)
    else:
        getattr(model, f"{name}_disable")()


def _eval_step(model, objective, batch, seq_len, target, tracker, precision) -> StepMemory:
    import torch

    model.eval()
    with torch.no_grad(), device_attention(target), tracker, precision.region():
        inputs, labels = _inputs(objective, batch, seq_len, model.device.type)
        outputs = model(**inputs)
        _loss(objective, outputs, labels)
        if objective == MASKED_LM and outputs["logits"].dim() == 2:  # sparse: ids (the NLL is the loss's)
            outputs["logits"].argmax(dim=-1)
        elif objective == MASKED_LM:
            from hfllm.tasks.masked_lm import mlm_eval_outputs

            mlm_eval_outputs(outputs["logits"], labels)
        after_forward = tracker.current
        del outputs, inputs, labels
    return StepMemory(tracker.peak, tracker.rss_peak, after_forward, tracker.costs)
