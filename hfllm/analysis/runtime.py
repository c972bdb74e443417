"""What a CPU training process holds beyond its tensors, measured on this machine: the runtime's share.

The first training step pages in the code of every kernel it runs (torch, MKL, oneDNN), MKL keeps the
buffers of its matrix products, and trackers import their libraries. On this 2-core machine that is
30-40 MiB: as much as all the tensors of the tiny pretrain config. It depends on the machine, the
libraries and the shapes, so inspect measures it rather than assuming it: it runs one real training
step and one evaluation batch of a one-layer stand-in of the planned model (the same widths,
vocabulary, batch and length, so the same kernels and matrix shapes) and subtracts what its tensors
account for. Where that step would take more than about a second, it is not run and the report says so.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from hfllm.analysis.devices import status_bytes
from hfllm.analysis.plan import Plan
from hfllm.analysis.simulate import auto_class, build_meta_model, simulate_run
from hfllm.config.trackers import PACKAGES
from hfllm.errors import InputError

MAX_FLOPS = 2e10  # a stand-in step above this is not run (about a second of a small CPU)
MAX_BYTES = 512 * 2**20  # nor one whose tensors need more
# report_to name -> the module its Trainer callback imports, where it is not the package checked for
# (hfllm.config.trackers.PACKAGES).
CALLBACK_MODULES = {"tensorboard": "torch.utils.tensorboard"}


@dataclass
class RuntimeMemory:
    """The measured bytes (None when not measured) and a sentence on how they were got."""

    bytes: int | None
    note: str


def measure_runtime_memory(plan: Plan, autocast_dtype: Any = None) -> RuntimeMemory:
    """Return what a CPU process running `plan` holds beyond its tensors, from a one-layer stand-in.

    Run it before anything else in this process runs real kernels (inspect's matmul benchmark, for
    one): code paged in already would not count.
    """
    config = copy.deepcopy(plan.model_config)
    layers = getattr(config, "num_hidden_layers", None)
    if not layers:
        return RuntimeMemory(None, "runtime memory not measured: the model config has no num_hidden_layers")
    config.num_hidden_layers = 1
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds (Gemma, Qwen3...)
        config.layer_types = config.layer_types[:1]
    try:
        return _measure(plan, config, autocast_dtype)
    except (InputError, RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return RuntimeMemory(None, f"runtime memory not measured: the one-layer stand-in failed ({exc})")


def _measure(plan: Plan, config: Any, autocast_dtype: Any) -> RuntimeMemory:
    run = _stand_in_run(plan, autocast_dtype)
    planned = run(build_meta_model(config, plan.objective))
    flops = sum(planned.train.costs.flops) + (sum(planned.eval.costs.flops) if planned.eval else 0)
    if flops > MAX_FLOPS or _held(planned) > MAX_BYTES:
        return RuntimeMemory(
            None,
            f"runtime memory not measured: a one-layer stand-in's step ({flops / 1e9:.0f} GFLOP, "
            f"{_held(planned) / 2**20:.0f} MiB) is too large to run here; the CPU peak counts tensors only",
        )
    model = auto_class(plan.objective).from_config(config)
    start = status_bytes("VmRSS")
    if not start or not _reset_peak():
        return RuntimeMemory(None, "runtime memory not measured: no /proc/self (Linux) to measure it with")
    measured = run(model)
    _optimizer_step(plan.optimizer)
    imported = [name for name in plan.trackers if _import_tracker(name)]
    grown = status_bytes("VmHWM") - start
    extra = max(0, grown - _held(measured))
    trackers = f" and importing {', '.join(imported)}" if imported else ""
    return RuntimeMemory(
        extra,
        f"runtime memory {extra / 2**20:.1f} MiB (code paged in, MKL's kept buffers, tracker modules): "
        f"measured here as a one-layer stand-in's step and evaluation batch{trackers} grew this process "
        f"by {grown / 2**20:.1f} MiB, {_held(measured) / 2**20:.1f} MiB of it tensors",
    )


def _stand_in_run(plan: Plan, autocast_dtype: Any):
    def run(model: Any) -> Any:
        return simulate_run(
            model,
            plan.objective,
            plan.seq_len,
            plan.train_batch,
            plan.eval_batch,
            "cpu",
            plan.checkpointing,
            [],
            plan.masked_share,
            autocast_dtype,
        )

    return run


def _held(run: Any) -> int:
    return max(run.train.rss_peak, run.eval.rss_peak if run.eval else 0)


def _optimizer_step(optimizer: str) -> None:
    """Page in the optimizer's kernels (the Trainer's fused AdamW by default) on one small tensor."""
    import torch

    parameter = torch.nn.Parameter(torch.zeros(64))
    parameter.grad = torch.ones(64)
    fused = "fused" in optimizer
    torch.optim.AdamW([parameter], fused=fused, foreach=None if fused else False).step()


def _import_tracker(name: str) -> bool:
    package = PACKAGES.get(name, (name,))[0]
    if importlib.util.find_spec(package) is None:
        return False
    importlib.import_module(CALLBACK_MODULES.get(name, package))
    return True


def _reset_peak() -> bool:
    """Reset the kernel's peak resident set (VmHWM) of this process to its current size; False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True
