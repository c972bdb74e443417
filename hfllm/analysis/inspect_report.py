"""`hfllm inspect` as a library call: a planned run's size, memory, speed and fit, with the assumptions made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.analysis.devices import GIB, Device, cpu_device, named_gpu, process_rss
from hfllm.analysis.fit import GPU_OVERHEAD, Capacity, check_fit
from hfllm.analysis.plan import Plan, plan_from_target
from hfllm.analysis.runtime import measure_runtime_memory
from hfllm.analysis.sizing import Sizer, Variant, autocast_dtype, optimizer_state_bytes
from hfllm.errors import ConfigError

# The share of the device's peak rates (matmul FLOP/s, memory bandwidth) the ops reach, assumed when
# --efficiency is not given (see bench/inspect_accuracy.py for how it compares with real runs).
DEFAULT_EFFICIENCY = {"cpu": 0.5, "gpu": 0.6}


def run_inspect(
    target: Path,
    device: str = "cpu",
    sets: list[str] | None = None,
    num_processes: int = 1,
    batch_size: int | None = None,
    max_length: int | None = None,
    efficiency: float | None = None,
    memory_gib: float | None = None,
) -> dict[str, Any]:
    """Return the inspect report of a config file or model dir on `device` (cpu or a GPU name)."""
    plan = plan_from_target(Path(target), sets, num_processes)
    if batch_size:
        plan.train_batch = batch_size
    if max_length:
        plan.seq_len = max_length
    kind = "cpu" if device.lower() == "cpu" else "gpu"
    if kind == "cpu" and plan.precision == "fp16":
        raise ConfigError("training.fp16 runs on GPUs only; inspect it with --device NAME or use bf16")
    gpu = named_gpu(device) if kind == "gpu" else None
    if plan.precision_by_device:
        _precision_for_device(plan, gpu)
    # On a CPU, before the matmul benchmark below runs real kernels in this process.
    runtime = measure_runtime_memory(plan, autocast_dtype(plan.precision)) if kind == "cpu" else None
    hardware = gpu or cpu_device("bfloat16" if plan.precision == "bf16" else "float32")
    efficiency = efficiency if efficiency is not None else DEFAULT_EFFICIENCY[kind]
    sizer = Sizer(plan, kind, (runtime.bytes or 0) if runtime else 0)
    capacity = _capacity(hardware, kind, plan, memory_gib)
    memory = _memory_section(sizer)
    report = {
        "source": plan.source,
        "kind": plan.kind,
        "objective": plan.objective,
        "model_type": plan.model_config.model_type,
        "parameters": sizer.parameters,
        "flops_per_token": sizer.flops_per_token,
        "batch": _batch_section(plan),
        "memory": memory,
        "throughput": {
            "device": hardware.name,
            "device_description": hardware.description,
            **sizer.throughput(hardware, efficiency),
        },
        "fit": check_fit(sizer, capacity, bf16_ok=kind == "gpu" and hardware.bf16_flops is not None),
    }
    report["assumptions"] = plan.assumptions + _assumptions(plan, hardware, kind, efficiency, capacity)
    if runtime is not None:
        report["assumptions"].append(runtime.note)
    return report


def _batch_section(plan: Plan) -> dict[str, Any]:
    return {
        "max_length": plan.seq_len,
        "per_device_train_batch_size": plan.train_batch,
        "per_device_eval_batch_size": plan.eval_batch,
        "gradient_accumulation_steps": plan.accumulation,
        "num_processes": plan.num_processes,
        "global_batch_size": plan.global_batch,
        "train_examples": plan.train_examples,
        "validation_examples": plan.eval_examples,
        "precision": plan.precision,
        "gradient_checkpointing": plan.checkpointing,
        "optimizer": plan.optimizer,
        "sharding": plan.strategy,
    }


def _memory_section(sizer: Sizer) -> dict[str, Any]:
    plan = sizer.plan
    variants = [
        sizer.memory(Variant(precision, ckpt, plan.train_batch, plan.eval_batch))
        for precision in ("fp32", "bf16")
        for ckpt in (False, True)
    ]
    configured = sizer.memory(sizer.configured())
    return {
        "configured": configured,
        "per_rank": sizer.per_rank(configured, plan.num_processes),
        "variants": variants,
    }


def _capacity(hardware: Device, kind: str, plan: Plan, memory_gib: float | None) -> Capacity:
    available = int(memory_gib * GIB) if memory_gib is not None else hardware.memory_bytes
    if kind == "cpu":
        where = (
            f"{memory_gib:g} GiB (--memory-gib)"
            if memory_gib is not None
            else "this machine's available memory"
        )
        return Capacity(available, process_rss(), plan.num_processes, where)
    where = f"{memory_gib:g} GiB (--memory-gib)" if memory_gib is not None else f"one {hardware.description}"
    return Capacity(available, GPU_OVERHEAD, 1, where)


def _precision_for_device(plan: Plan, gpu: Device | None) -> None:
    """Plan the precision `hfllm pretrain` picks for a masked LM whose config sets none (hfllm.precision):
    bf16 on a GPU that has it; on a CPU, bf16 where it is native and the model wide enough."""
    from hfllm.precision import choose_precision

    width = getattr(plan.model_config, "hidden_size", None)
    gpu_bf16 = gpu.bf16_flops is not None if gpu is not None else None
    choice = choose_precision({}, width, cuda=gpu is not None, gpu_bf16=gpu_bf16)
    plan.precision = "bf16" if choice.bf16 else "fp32"
    plan.assumptions.append(
        f"precision: {choice.path}, as `hfllm pretrain` picks it when the config sets none"
    )


def _assumptions(plan: Plan, hardware: Device, kind: str, efficiency: float, capacity: Capacity) -> list[str]:
    notes = [
        f"speed: every op of the simulated step on a roofline (its FLOPs at the matmul peak or its bytes at "
        f"the memory bandwidth, the slower, plus page faults of new blocks over 32 MiB on a CPU); rates from "
        f"{hardware.source or hardware.description}, times an efficiency of {efficiency:g} (--efficiency); "
        "MFU is the result, not an input",
        "FLOPs per token: 2 x matmul weights (the tied output layer included; a masked-LM head computed at "
        "the masked positions only counts at that share) + 4 x layers x seq x attention width forward; "
        "training 3x forward (4x with gradient checkpointing)",
        f"memory: one step simulated on the meta device with the {kind.upper()}'s attention kernel; weights and "
        f"gradients fp32, optimizer state {optimizer_state_bytes(plan.optimizer)} bytes/parameter ({plan.optimizer}); "
        "bf16 = torch.autocast's casts replayed on the meta step (fp32 weights and gradients, bf16 copies "
        "for the matmuls, fp32 where autocast keeps it)",
        "ZeRO/FSDP per rank: weights, gradients and optimizer state sharded as the ZeRO paper counts them, "
        "activations not sharded; FSDP full_shard = ZeRO-3, shard_grad_op = ZeRO-2",
    ]
    if kind == "cpu":
        notes.append(
            "CPU peak = resident set: glibc keeps freed blocks under 32 MiB mapped, so the evaluation's large "
            "buffers come on top of the training step's heap high-water mark (hfllm hands the heap's free pages "
            "back before each evaluation batch), plus the runtime's share, measured (below); how the heap "
            "fragments over a long run is not modelled (bench/inspect_accuracy.py compares with real runs)"
        )
        notes.append(
            f"per-process overhead {capacity.overhead / GIB:.2f} GiB = this process's resident set "
            "(Python, torch, Transformers)"
        )
    else:
        notes.append(f"per-process overhead {GPU_OVERHEAD / GIB:.0f} GiB (CUDA context, allocator slack)")
    return notes


def render(report: dict[str, Any]) -> str:
    """Return the report as text for people."""
    from hfllm.analysis.inspect_text import render_text

    return render_text(report)
