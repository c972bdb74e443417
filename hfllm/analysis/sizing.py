"""Size a planned run: parameters, FLOPs per token, memory per rank, tokens/s and time.

Memory comes from simulating one step on the meta device (hfllm/analysis/simulate.py) plus the
state the ZeRO paper counts per parameter; throughput from a device's matmul peak times a stated MFU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hfllm.analysis.devices import Device
from hfllm.analysis.plan import STRATEGIES, Plan, count_evaluations
from hfllm.analysis.simulate import RunMemory, build_meta_model, simulate_run, sparse_head_module

# Bytes of optimizer state per parameter, by `training.optim` prefix (first match wins).
OPTIMIZER_STATE_BYTES = (("adafactor", 0), ("sgd", 0), ("lion_8bit", 1), ("lion", 4), ("8bit", 2), ("", 8))


def optimizer_state_bytes(optim: str) -> int:
    """Return the optimizer state bytes per parameter (AdamW: two fp32 moments = 8)."""
    name = optim.lower()
    return next(size for key, size in OPTIMIZER_STATE_BYTES if key in name or key == "")


@dataclass
class Variant:
    """One way of running the plan: precision, checkpointing and batch sizes."""

    precision: str
    checkpointing: bool
    train_batch: int
    eval_batch: int | None


def autocast_dtype(precision: str) -> Any:
    """Return the torch dtype the Trainer autocasts to under `precision` ("bf16", "fp16"), or None (fp32)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


class Sizer:
    """Sizes one Plan on one target ("cpu" or "gpu"); simulations are cached per Variant."""

    def __init__(self, plan: Plan, target: str, runtime: int = 0) -> None:
        self.plan = plan
        self.target = target
        self.runtime = runtime  # bytes a CPU process holds beyond its tensors (hfllm.analysis.runtime)
        self._cache: dict[tuple, RunMemory] = {}

    @cached_property
    def model(self) -> Any:
        return build_meta_model(self.plan.model_config, self.plan.objective)

    @cached_property
    def parameters(self) -> dict[str, int]:
        from hfllm.models.builders import count_parameters

        return count_parameters(self.model)

    @cached_property
    def flops_per_token(self) -> dict[str, float]:
        """Return forward and training FLOPs per token: 2 x matmul weights + attention's 4 x layers x seq x width.

        A masked-LM run's sparse head (hfllm.tasks.sparse_mlm) multiplies only the masked share of the
        tokens by the head's weights (the vocabulary-wide decoder among them), so those count at that share.
        """
        matmuls = float(matmul_parameters(self.model))
        head = sparse_head_module(self.model, self.plan.objective, self.plan.masked_share)
        if head is not None:
            matmuls -= (1.0 - self.plan.masked_share) * matmul_parameters(head)
        forward = 2.0 * matmuls + 4.0 * self._layers * self.plan.seq_len * self._attn_width
        return {"forward": forward, "training": forward * (4 if self.plan.checkpointing else 3)}

    @property
    def _layers(self) -> int:
        return int(getattr(self.plan.model_config, "num_hidden_layers", 0) or 0)

    @property
    def _attn_width(self) -> int:
        config = self.plan.model_config
        heads = int(getattr(config, "num_attention_heads", 0) or 0)
        head_dim = getattr(config, "head_dim", None) or (config.hidden_size // max(1, heads))
        return heads * int(head_dim)

    def configured(self) -> Variant:
        p = self.plan
        return Variant(p.precision, p.checkpointing, p.train_batch, p.eval_batch)

    def simulate(self, variant: Variant) -> RunMemory:
        """Return the simulated memory of `variant` (bf16/fp16: fp32 weights, steps under autocast)."""

        key = (variant.precision, variant.checkpointing, variant.train_batch, variant.eval_batch)
        if key not in self._cache:
            autocast = autocast_dtype(variant.precision)
            states = [p.numel() * self.state_bytes // 2 for p in self.model.parameters() for _ in range(2)]
            self._cache[key] = simulate_run(
                self.model,
                self.plan.objective,
                self.plan.seq_len,
                variant.train_batch,
                variant.eval_batch,
                self.target,
                variant.checkpointing,
                states,
                self.plan.masked_share,
                autocast,
            )
        return self._cache[key]

    @property
    def state_bytes(self) -> int:
        return optimizer_state_bytes(self.plan.optimizer)

    def memory(self, variant: Variant) -> dict[str, Any]:
        """Return the memory of one rank without sharding: weights, gradients, optimizer, activations, peaks."""
        total = self.parameters["parameters"]
        sim = self.simulate(variant)
        # Mixed precision keeps fp32 weights and gradients; autocast's half-precision copies of the weights
        # are in the simulated steps.
        weights, grads, optimizer = 4 * total, 4 * total, sim.state
        train_peak = self._peak(sim.train)
        eval_peak = self._peak(sim.eval) if sim.eval else 0
        return {
            "precision": variant.precision,
            "gradient_checkpointing": variant.checkpointing,
            "per_device_train_batch_size": variant.train_batch,
            "per_device_eval_batch_size": variant.eval_batch,
            "weights": weights,
            "gradients": grads,
            "optimizer": optimizer,
            "activations": sim.train.after_forward - sim.state,
            "train_step_peak": weights + train_peak,
            "eval_peak": weights + eval_peak if sim.eval else None,
            "runtime": self.runtime,
            "peak": weights + max(train_peak, eval_peak) + self.runtime,
        }

    def _peak(self, step: Any) -> int:
        # A CPU process keeps freed heap blocks (see simulate.MMAP_THRESHOLD_MAX); a GPU's caching
        # allocator releases its cached blocks before it gives up, so there only live tensors count.
        return step.rss_peak if self.target == "cpu" else step.peak

    def per_rank(self, memory: dict[str, Any], processes: int) -> dict[str, int]:
        """Return the peak per rank under each sharding (the ZeRO paper's accounting; activations unsharded)."""
        n = max(1, processes)
        w, g, o = memory["weights"], memory["gradients"], memory["optimizer"]
        gathered = 2 * self._largest_layer() * (2 if memory["precision"] != "fp32" else 4)
        shards = {
            "ddp": (w, g, o, 0),
            "zero1": (w, g, o / n, 0),
            "zero2": (w, g / n, o / n, 0),
            "zero3": (w / n, g / n, o / n, gathered if n > 1 else 0),
        }
        out = {}
        for name in STRATEGIES:
            sw, sg, so, extra = shards[name]
            train = memory["train_step_peak"] - (w - sw) - (g - sg) - (o - so) + extra
            evaluation = (memory["eval_peak"] or 0) - (w - sw) - (o - so) + extra
            out[name] = int(max(train, evaluation))
        return out

    def _largest_layer(self) -> int:
        """Return the parameters of the biggest repeated block (FSDP gathers one such unit at a time)."""
        best = 0
        for module in self.model.modules():
            children = list(module.children())
            if len(children) > 1 and all(type(c) is type(children[0]) for c in children):
                best = max(best, sum(p.numel() for p in children[0].parameters()))
        return best or self.parameters["parameters"]

    def step_seconds(self, device: Device, efficiency: float) -> dict[str, float]:
        """Return the seconds of one micro-batch (forward + backward), one optimizer step and one evaluation
        batch of the configured variant on `device`: each simulated op on a roofline (see OpCosts)."""
        sim = self.simulate(self.configured())
        peak, _ = device_peak(device, self.plan.precision, self.plan.tf32)
        fault = device.fault_bandwidth if self.target == "cpu" else None

        def seconds(costs) -> float:
            cached = device.cached_bandwidth * efficiency if device.cached_bandwidth else None
            return costs.seconds(
                peak * efficiency, device.bandwidth * efficiency, fault, device.op_seconds, cached
            )

        params = self.parameters["parameters"]
        # AdamW reads weights, gradients and state and writes weights and state; clipping reads and scales
        # the gradients: about 28 bytes per parameter plus twice the state.
        optimizer = (28 * params + 2 * sim.state) / (device.bandwidth * efficiency)
        return {
            "train_batch": seconds(sim.train.costs),
            "optimizer_step": optimizer,
            "eval_batch": seconds(sim.eval.costs) if sim.eval else 0.0,
        }

    def throughput(self, device: Device, efficiency: float) -> dict[str, Any]:
        """Return predicted tokens/s, steps, seconds and MFU of the run on `device`."""
        plan = self.plan
        peak, kind = device_peak(device, plan.precision, plan.tf32)
        times = self.step_seconds(device, efficiency)
        collate = plan.collate_seconds if plan.dataloader_workers == 0 else 0.0
        step_s = plan.accumulation * (times["train_batch"] + plan.train_batch * collate)
        step_s += times["optimizer_step"]
        tokens_per_step = plan.global_batch * plan.seq_len
        rate = tokens_per_step / step_s
        steps = plan.steps
        out: dict[str, Any] = {
            "peak_flops": peak,
            "peak_kind": kind,
            "efficiency": efficiency,
            "seconds_per_step": step_s,
            "tokens_per_second": rate,
            "mfu": rate * self.flops_per_token["training"] / (peak * plan.num_processes),
            "steps": steps,
            "tokens_per_step": tokens_per_step,
        }
        if steps is None:
            return out
        evaluations = count_evaluations(plan)
        eval_s = None
        if plan.eval_examples is not None and plan.eval_batch:
            batches = math.ceil(plan.eval_examples / (plan.eval_batch * plan.num_processes))
            eval_s = evaluations * batches * (times["eval_batch"] + plan.eval_batch * collate)
        total = steps * step_s + (eval_s or 0.0)
        out.update(
            evaluations=evaluations,
            train_seconds=steps * step_s,
            eval_seconds=eval_s,
            total_seconds=total,
            effective_tokens_per_second=steps * tokens_per_step / total,
        )
        return out


def device_peak(device: Device, precision: str, tf32: bool) -> tuple[float, str]:
    """Return (FLOP/s, which peak) the run's matmuls get on `device`."""
    if precision != "fp32" and device.bf16_flops:
        return device.bf16_flops, "bf16"
    if tf32 and device.tf32_flops:
        return device.tf32_flops, "tf32"
    return device.fp32_flops, "fp32"


def matmul_parameters(model: Any) -> int:
    """Return the weights that multiply every token: nn.Linear and GPT-2's Conv1D (tied heads included)."""
    import torch

    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            total += module.weight.numel()
    return total


__all__ = ["Sizer", "Variant", "device_peak", "matmul_parameters", "optimizer_state_bytes"]
