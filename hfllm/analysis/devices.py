"""What a device can do: published peaks of named GPUs, a measured matmul peak of this CPU, free memory."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from hfllm.errors import ConfigError

GIB = 2**30


MIB = 2**20
# A GPU op costs at least a kernel launch plus the Python and dispatcher work around it (assumed).
GPU_OP_SECONDS = 8e-6


@dataclass(frozen=True)
class Device:
    """What a device can do: dense matmul peaks (FLOP/s; bf16 None without bf16 units), memory (bytes),
    memory bandwidth (bytes/s: `bandwidth` for data beyond the caches, `cached_bandwidth` for small
    working sets), the rate of first-touch page faults (CPU), and the cost of launching one op."""

    name: str
    description: str
    fp32_flops: float
    bf16_flops: float | None
    memory_bytes: int
    bandwidth: float
    tf32_flops: float | None = None
    cached_bandwidth: float | None = None
    fault_bandwidth: float | None = None
    op_seconds: float = GPU_OP_SECONDS
    source: str = ""


def _gpu(name, description, fp32, bf16, memory_mib, tb_per_s, tf32, source):
    tera = 1e12
    return Device(
        name,
        description,
        fp32 * tera,
        bf16 * tera if bf16 else None,
        memory_mib * MIB,
        tb_per_s * tera,
        tf32 * tera if tf32 else None,
        source=source,
    )


# Dense (no sparsity) TFLOP/s from the vendors' data sheets: plain fp32 (PyTorch's default for fp32
# matmuls), bf16 tensor cores, tf32 (used when `training.tf32: true`); memory as nvidia-smi reports it
# (MiB); memory bandwidth in TB/s.
GPUS: dict[str, Device] = {
    d.name: d
    for d in (
        _gpu("h200", "NVIDIA H200 SXM 141 GB", 67, 989, 143771, 4.8, 494, "NVIDIA H200 datasheet"),
        _gpu("h100", "NVIDIA H100 SXM 80 GB", 67, 989, 81559, 3.35, 494, "NVIDIA H100 datasheet (SXM)"),
        _gpu("h100-pcie", "NVIDIA H100 PCIe 80 GB", 51, 756, 81559, 2.0, 378, "NVIDIA H100 datasheet (PCIe)"),
        _gpu("a100", "NVIDIA A100 SXM 80 GB", 19.5, 312, 81920, 2.04, 156, "NVIDIA A100 datasheet"),
        _gpu("a100-40gb", "NVIDIA A100 40 GB", 19.5, 312, 40960, 1.555, 156, "NVIDIA A100 datasheet"),
        _gpu("l40s", "NVIDIA L40S 48 GB", 91.6, 362, 46068, 0.864, 183, "NVIDIA L40S datasheet"),
        _gpu("l4", "NVIDIA L4 24 GB", 30.3, 121, 23034, 0.3, 60, "NVIDIA L4 datasheet"),
        _gpu("a10g", "NVIDIA A10G 24 GB (AWS g5)", 31.2, 125, 23028, 0.6, 62.5, "NVIDIA A10 datasheet"),
        _gpu("rtx4090", "NVIDIA GeForce RTX 4090 24 GB", 82.6, 165, 24564, 1.008, 82.6, "Ada whitepaper"),
        _gpu(
            "v100", "NVIDIA V100 SXM2 32 GB (no bf16)", 15.7, None, 32768, 0.9, None, "NVIDIA V100 datasheet"
        ),
        _gpu("t4", "NVIDIA T4 16 GB (no bf16)", 8.1, None, 15360, 0.32, None, "NVIDIA T4 datasheet"),
        _gpu("mi300x", "AMD Instinct MI300X 192 GB", 163.4, 1307, 196592, 5.3, 653.7, "AMD MI300X datasheet"),
    )
}


def named_gpu(name: str) -> Device:
    """Return the table entry for `--device NAME` (ConfigError naming the known ones otherwise)."""
    key = name.lower().replace("_", "-")
    if key not in GPUS:
        raise ConfigError(f"--device {name}: unknown device", f"use cpu or one of: {', '.join(sorted(GPUS))}")
    return GPUS[key]


def cpu_capability() -> str:
    """Return the vector instruction set PyTorch uses on this CPU (AVX2, AVX512, ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # torch < 2.2
        return "unknown"


def measure_matmul_flops(dtype_name: str = "float32", seconds: float = 1.0, size: int = 1024) -> float:
    """Return the best rate (FLOP/s) of square `size` matmuls this CPU sustains in about `seconds`.

    The best of short bursts, not the mean: other processes on a shared machine slow some bursts down.
    """
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)  # warm-up: thread pool, packing buffers
    flop = 2.0 * size**3
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            torch.matmul(a, b)
        best = max(best, 4 * flop / (time.perf_counter() - start))
    return best


def measure_memory(seconds: float = 0.2, large_mib: int = 64) -> dict[str, float]:
    """Return this CPU's measured memory rates: `bandwidth` (bytes/s of a `large_mib` MiB elementwise op
    into a reused buffer), `cached_bandwidth` (the same at 1 MiB), `fault_bandwidth` (bytes/s of first
    touch of freshly mapped memory, as each new large tensor gets) and `op_seconds` (one tiny op); the
    small measurements on one thread.

    Bests of short bursts, like the matmul peak: what this CPU can do, not what other processes left.
    """
    import torch

    def rate(fn, moved: float, budget: float, repeat: int = 1) -> float:
        fn()
        best, deadline = 0.0, time.perf_counter() + budget
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            best = max(best, repeat * moved / (time.perf_counter() - start))
        return best

    large = torch.ones(large_mib * MIB // 4)
    out = torch.empty_like(large)
    small, small_out = torch.ones(MIB // 4), torch.empty(MIB // 4)
    moved = 2.0 * large_mib * MIB
    bandwidth = rate(lambda: torch.mul(large, 2.0, out=out), moved, seconds)
    fresh = rate(lambda: torch.mul(large, 2.0), moved, seconds)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see measure_op_seconds: small ops on a busy machine measure the scheduler
    try:
        cached = rate(lambda: torch.mul(small, 2.0, out=small_out), 2.0 * MIB, seconds / 2)
    finally:
        torch.set_num_threads(threads)
    # A fresh result costs the reused-buffer time plus the faults of its pages.
    fault_seconds = max(1e-9, moved / fresh - moved / bandwidth)
    return {
        "bandwidth": bandwidth,
        "cached_bandwidth": cached,
        "fault_bandwidth": large_mib * MIB / fault_seconds,
        "op_seconds": measure_op_seconds(seconds / 2),
    }


def measure_op_seconds(seconds: float = 0.1) -> float:
    """Return the time one op of a training step costs beyond its work: a tiny module's forward and
    backward (Python, nn.Module, dispatcher, autograd), divided by the ops it dispatches.

    On one thread: ops this small would otherwise measure how long a busy machine takes to schedule
    the second thread, which changes from one second to the next.
    """
    import torch

    from hfllm.analysis.tracker import tracking_mode

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _op_seconds(seconds, tracking_mode)
    finally:
        torch.set_num_threads(threads)


def _op_seconds(seconds: float, tracking_mode) -> float:
    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.GELU())
    x = torch.ones(2, 4)

    def step() -> None:
        layer(x).sum().backward()

    counter = tracking_mode()
    with counter:
        step()
    ops = max(1, len(counter.costs.flops))
    for _ in range(20):  # warm-up: autograd's and the allocator's first-call costs
        step()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best / ops


@functools.lru_cache(maxsize=4)
def cpu_device(dtype_name: str, seconds: float = 1.0) -> Device:
    """Return this machine's CPU as a Device: measured matmul peak and memory rates, available memory
    (measured once per process)."""
    import torch

    flops = measure_matmul_flops(dtype_name, seconds)
    description = (
        f"this CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {cpu_capability()})"
    )
    return Device(
        "cpu",
        description,
        flops if dtype_name == "float32" else 0.0,
        flops if dtype_name == "bfloat16" else None,
        available_memory(),
        source=f"measured: {dtype_name} 1024x1024 matmuls for {seconds:g} s, memory rates for 0.5 s",
        **measure_memory(),
    )


def available_memory() -> int:
    """Return the memory the kernel says new allocations can get (MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return int(pages * size)


def process_rss() -> int:
    """Return this process's resident set size in bytes (0 where /proc is missing)."""
    return status_bytes("VmRSS")


def status_bytes(field: str) -> int:
    """Return a size field of /proc/self/status (VmRSS, VmHWM, RssAnon...) in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
