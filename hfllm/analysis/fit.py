"""Does a planned run fit in memory, and if not, the smallest change of its config that does."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hfllm.analysis.sizing import Sizer, Variant

GIB = 2**30
# A CUDA context and the caching allocator's slack; an assumption, stated in the report.
GPU_OVERHEAD = 1 * GIB


@dataclass
class Capacity:
    """Memory a run may use: `available` on the machine (or one GPU), minus `overhead` per process."""

    available: int
    overhead: int
    processes_share: int  # processes sharing `available` (all of them on a CPU machine, one on a GPU)
    where: str


def per_rank_peak(sizer: Sizer, variant: Variant) -> int:
    """Return the peak bytes of one rank of `variant` under the configured sharding."""
    plan = sizer.plan
    return sizer.per_rank(sizer.memory(variant), plan.num_processes)[plan.strategy]


def needed(sizer: Sizer, variant: Variant, capacity: Capacity) -> int:
    """Return the bytes `variant` needs out of capacity.available: per-rank peak plus overhead, per process."""
    return capacity.processes_share * (per_rank_peak(sizer, variant) + capacity.overhead)


def check_fit(sizer: Sizer, capacity: Capacity, bf16_ok: bool) -> dict[str, Any]:
    """Return whether the configured run fits, and when it does not, the smallest change that does."""
    variant = sizer.configured()
    need = needed(sizer, variant, capacity)
    result: dict[str, Any] = {
        "fits": need <= capacity.available,
        "needed_bytes": need,
        "available_bytes": capacity.available,
        "overhead_bytes_per_process": capacity.overhead,
        "checked_against": capacity.where,
        "suggestion": None,
    }
    if not result["fits"]:
        result["suggestion"] = suggest(sizer, capacity, bf16_ok)
    return result


def suggest(sizer: Sizer, capacity: Capacity, bf16_ok: bool) -> dict[str, Any] | None:
    """Return the change with the fewest config keys (then the least slowdown) that fits, or None.

    Considered: a smaller evaluation batch; a smaller train batch with more gradient accumulation
    (the global batch stays); gradient checkpointing; bf16 (on devices with bf16 units).
    """
    plan = sizer.plan
    smallest = Variant(
        "bf16" if bf16_ok else plan.precision,
        True,
        _halvings(plan.train_batch)[-1][0],
        1 if plan.eval_batch else None,
    )
    if needed(sizer, smallest, capacity) > capacity.available:
        return None  # not even the smallest change fits: say so instead of searching
    for _, variant, changes in sorted(_candidates(plan, bf16_ok), key=lambda c: c[0]):
        need = needed(sizer, variant, capacity)
        if need <= capacity.available:
            return {
                "set": [f"training.{key}={_yaml(value)}" for key, value in changes.items()],
                "needed_bytes": need,
                "peak_bytes_per_rank": per_rank_peak(sizer, variant),
            }
    return None


def _candidates(plan: Any, bf16_ok: bool):
    """Yield ((keys changed, numerics changed, slowdown), Variant, changed training keys) for each change."""
    trains = _halvings(plan.train_batch)
    evals = (
        [(plan.eval_batch // 2**k or 1, k) for k in range(_log2(plan.eval_batch))]
        if plan.eval_batch
        else [(None, 0)]
    )
    checkpoints = [plan.checkpointing] + ([True] if not plan.checkpointing else [])
    precisions = [plan.precision] + (["bf16"] if bf16_ok and plan.precision == "fp32" else [])
    for (train, tk), (evaluation, ek), ckpt, precision in itertools.product(
        trains, evals, checkpoints, precisions
    ):
        changes: dict[str, Any] = {}
        if tk:
            changes.update(
                per_device_train_batch_size=train, gradient_accumulation_steps=plan.accumulation * 2**tk
            )
        if ek:
            changes["per_device_eval_batch_size"] = evaluation
        if ckpt != plan.checkpointing:
            changes[checkpointing_key()] = True
        if precision != plan.precision:
            changes["bf16"] = True
        if not changes:
            continue
        # Order: fewest keys; then what keeps the numerics (bf16 changes them); then the least slowdown
        # (checkpointing recomputes the forward pass: 4/3 of the work; smaller batches use matmuls worse).
        slowdown = (4 / 3 if ckpt != plan.checkpointing else 1.0) * (1 + 0.05 * tk) * (1 + 0.01 * ek)
        cost = (len(changes), "bf16" in changes, slowdown)
        yield cost, Variant(precision, ckpt, train, evaluation), changes


def checkpointing_key() -> str:
    """Return the TrainingArguments field that turns checkpointing on (renamed in Transformers 5.2x)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _halvings(batch: int) -> list[tuple[int, int]]:
    """Return (batch / 2^k, k) while the batch divides evenly, so accumulation keeps the global batch."""
    out, k = [(batch, 0)], 0
    while batch % 2 == 0:
        batch, k = batch // 2, k + 1
        out.append((batch, k))
    return out


def _log2(value: int) -> int:
    return max(1, value.bit_length())


def _yaml(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)
