"""A dispatch mode that watches every tensor op of a (meta-device) step: live bytes and per-op costs.

Memory: each storage an op creates counts as live until Python frees it (a weak reference tells), so
the running total is what an allocator without caching holds; on a CPU, glibc keeps freed small
blocks mapped, which the `rss_peak` model follows. Costs: each op's matmul FLOPs, the bytes it reads
and writes, and the large blocks it makes fresh, so a roofline can turn a step into seconds.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from hfllm.errors import InputError

# glibc malloc serves blocks below its mmap threshold (which grows up to 32 MiB on 64-bit Linux once
# blocks that size have been freed) from the heap and keeps them mapped after free(); larger blocks are
# mmapped on every allocation (fresh pages: page faults) and unmapped on free(). So on a CPU the
# resident set is the high-water mark of small blocks plus the large blocks alive now.
MMAP_THRESHOLD_MAX = 32 * 2**20
# CPU softmax kernels make a contiguous copy of a strided input before they start (a temporary that
# is no op's output, so the dispatch mode would not see it).
CONTIGUOUS_FIRST = ("_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data")
# An op that touches less than this stays in the caches (a few MiB of L2/L3 per core).
CACHED_BYTES = 4 * 2**20
ATTENTION_KERNELS = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_flash_attention",
)


@dataclass
class OpCosts:
    """What the ops of one phase cost: matmul FLOPs, bytes moved, fresh large blocks (per op)."""

    flops: list[float] = field(default_factory=list)
    moved: list[int] = field(default_factory=list)
    fresh: list[int] = field(default_factory=list)

    def seconds(
        self,
        flops_per_s: float,
        bytes_per_s: float,
        fault_bytes_per_s: float | None,
        op_s: float,
        cached_bytes_per_s: float | None = None,
    ) -> float:
        """Return the phase's time on a roofline: each op takes its FLOPs at the matmul rate or its bytes at
        the memory bandwidth (the cached one for ops under CACHED_BYTES), whichever is slower, plus a launch
        overhead and (CPU) the page faults of fresh large blocks."""
        cached = cached_bytes_per_s or bytes_per_s
        total = sum(
            max(f / flops_per_s, m / (cached if m < CACHED_BYTES else bytes_per_s))
            for f, m in zip(self.flops, self.moved, strict=True)
        )
        if fault_bytes_per_s:
            total += sum(self.fresh) / fault_bytes_per_s
        return total + op_s * len(self.flops)


def tracking_mode():
    """Return a TorchDispatchMode with `.current`, `.peak`, `.rss_peak` (bytes) and `.costs` (OpCosts)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Tracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.current = self.peak = self.small = self.small_hwm = self.large = self.rss_peak = 0
            self.costs = OpCosts()
            self._refs: dict[int, Any] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
                return _answer_scalar(args[0])
            name = func.__name__.split(".")[0]
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            copies = (
                sum(_nbytes(t) for t in inputs if not t.is_contiguous()) if name in CONTIGUOUS_FIRST else 0
            )
            out = func(*args, **(kwargs or {}))
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            fresh = sum(self.add(t.untyped_storage()) for t in outputs)
            self._mark(copies)
            if not func.is_view:
                self.costs.flops.append(_matmul_flops(name, inputs))
                self.costs.moved.append(sum(map(_nbytes, inputs)) + sum(map(_nbytes, outputs)) + 2 * copies)
                self.costs.fresh.append(fresh)
            return out

        def add(self, storage: Any) -> int:
            """Count `storage` as live until Python frees it; return its bytes if it is a new large block."""
            key = id(storage)
            known = self._refs.get(key)
            if known is not None and known() is storage:
                return 0
            size = storage.nbytes()
            self._change(size)
            self._refs[key] = weakref.ref(storage, lambda _ref, size=size, key=key: self._free(size, key))
            return size if size >= MMAP_THRESHOLD_MAX else 0

        def hold(self, size: int) -> None:
            """Count `size` bytes as live from now on (state that outlives every phase)."""
            self._change(size)

        def _free(self, size: int, key: int) -> None:
            self._change(-size)
            self._refs.pop(key, None)

        def _change(self, size: int) -> None:
            self.current += size
            if abs(size) < MMAP_THRESHOLD_MAX:
                self.small += size
                self.small_hwm = max(self.small_hwm, self.small)
            else:
                self.large += size
            self._mark(0)

        def _mark(self, transient: int) -> None:
            self.peak = max(self.peak, self.current + transient)
            self.rss_peak = max(self.rss_peak, self.small_hwm + self.large + transient)

        def next_phase(self) -> None:
            """Start new peaks and costs from what is live now (the heap keeps its high-water mark)."""
            self.peak = self.current
            self.rss_peak = self.small_hwm + self.large
            self.costs = OpCosts()

    return Tracker()


def _nbytes(tensor: Any) -> int:
    """Return the bytes an op touches in `tensor` (an expanded view touches its storage only once)."""
    logical = tensor.numel() * tensor.element_size()
    return min(logical, tensor.untyped_storage().nbytes()) if logical else 0


def _matmul_flops(name: str, inputs: list[Any]) -> float:
    """Return the multiply-add FLOPs of a matmul or attention kernel op (0 for anything else)."""
    if name in ("mm", "bmm"):
        a, b = inputs[0], inputs[1]
    elif name in ("addmm", "baddbmm"):
        a, b = inputs[1], inputs[2]
    elif name.startswith(ATTENTION_KERNELS):
        backward = name.endswith("_backward")
        q, k = inputs[0], inputs[2 if backward else 1]  # a backward op takes (grad_out, q, k, v, ...)
        forward = 4.0 * q.shape[:-2].numel() * q.shape[-2] * k.shape[-2] * q.shape[-1]
        return forward * (2.5 if backward else 1.0)  # the backward pass recomputes the scores
    else:
        return 0.0
    return 2.0 * a.numel() * b.shape[-1]


def _answer_scalar(tensor: Any) -> Any:
    import torch

    # Transformers asks "is the attention mask all ones?" to skip building a mask; the simulated batch
    # is packed (no padding), so the answer is yes. Any other value depends on real data.
    if tensor.dtype == torch.bool and tensor.numel() == 1:
        return True
    raise InputError(
        "inspect cannot simulate this model: its forward pass reads a value that only real data has",
        "the parameter count and FLOPs do not need the simulation; report this model type to hfllm",
    )
