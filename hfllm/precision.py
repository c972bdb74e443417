"""Which precision a run uses: bf16 where the hardware runs it natively and it pays, else fp32.

Training uses bf16 autocast with fp32 master weights (the optimizer updates fp32 parameters; only
matmuls and the like run in bf16); inference converts the weights (`for_inference`). On a CPU bf16
pays only with native instructions (AMX or AVX512-BF16): on an AVX2-only CPU it is emulated and
slower. Measured on a 2-core AMX CPU (docs/speed.md), a training step of a 4-layer BERT ran in bf16
at 0.99x the fp32 speed at hidden size 128, 1.29x at 256, 2.17x at 512 and 2.36x at 768 (2 layers);
so on CPUs the default is bf16 from hidden size 256 up. Nothing here is assumed: the CPU's flags
and torch's own capability decide, and every run logs the path it took.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfllm.output import log

CPU_BF16_MIN_HIDDEN = 256  # below this the casts cost what bf16 matmuls save (measured, see above)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names


@dataclass(frozen=True)
class Precision:
    """The precision chosen for a run and why (`path` is what benchmarks and metrics.json report)."""

    bf16: bool
    path: str  # e.g. "bf16 autocast (cpu: amx_bf16)", "fp32 (cpu: AVX2 only, bf16 would be emulated)"
    reason: str


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """Return the CPU feature flags of /proc/cpuinfo (empty where there is no such file)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def native_cpu_bf16(flags: set[str] | None = None, capability: str | None = None) -> str | None:
    """Return the instruction set that runs bf16 natively on this CPU ("amx_bf16", "avx512_bf16"), or None.

    Both the CPU flags and torch must agree: the flags say the hardware has it, torch's capability
    ("AVX512", "AVX512_BF16"/"AMX" on some builds; "AVX2", "DEFAULT" when it will not use it) says its
    kernels can. Arguments are for tests; by default both are read from this machine.
    """
    flags = cpu_flags() if flags is None else flags
    capability = _torch_cpu_capability() if capability is None else capability
    if capability.upper() in ("DEFAULT", "NO AVX", "AVX2", "VSX", "ZVECTOR", "SVE256", "NEON"):
        return None  # torch's kernels for this CPU have no native bf16 path
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


@functools.cache
def _torch_cpu_capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def choose_precision(
    training: dict[str, Any],
    hidden_size: int | None,
    cuda: bool | None = None,
    native: str | None = "",
    gpu_bf16: bool | None = None,
) -> Precision:
    """Return the precision for a run with these `training:` settings.

    The config's own `bf16` / `fp16` win. Otherwise: bf16 on a GPU that supports it; on a CPU, bf16
    when it is native and the model is at least CPU_BF16_MIN_HIDDEN wide; fp32 everywhere else.
    `cuda` and `native` are for tests (None / "" = detect); `gpu_bf16` says whether the GPU has bf16
    (`hfllm inspect` sizing a named GPU; None = ask this machine's GPU).
    """
    if training.get("bf16") or training.get("fp16"):
        which = "bf16" if training.get("bf16") else "fp16"
        return Precision(which == "bf16", f"{which} autocast (set in the config)", "set in the config")
    if "bf16" in training:
        return Precision(False, "fp32 (bf16: false in the config)", "set in the config")
    if cuda is None:
        cuda = _on_cuda(training)
    if cuda:
        if gpu_bf16 is None:
            import torch

            gpu_bf16 = torch.cuda.is_bf16_supported()
        if gpu_bf16:
            return Precision(True, "bf16 autocast (gpu)", "the GPU supports bf16")
        return Precision(False, "fp32 (gpu without bf16)", "this GPU has no bf16")
    native = native_cpu_bf16() if native == "" else native
    if native is None:
        return Precision(
            False,
            "fp32 (cpu: no native bf16)",
            "this CPU has no native bf16 (AMX / AVX512-BF16): bf16 would be emulated and slower",
        )
    if hidden_size is None or hidden_size < CPU_BF16_MIN_HIDDEN:
        return Precision(
            False,
            f"fp32 (cpu: {native} available, model too narrow)",
            f"hidden size {hidden_size} < {CPU_BF16_MIN_HIDDEN}: bf16 casts would cost what its matmuls save",
        )
    return Precision(True, f"bf16 autocast (cpu: {native})", f"this CPU runs bf16 natively ({native})")


def _on_cuda(training: dict[str, Any]) -> bool:
    if training.get("use_cpu"):
        return False
    import torch

    return torch.cuda.is_available()


def apply_precision(training: dict[str, Any], model_config: Any) -> tuple[dict[str, Any], Precision]:
    """Return the TrainingArguments settings with the chosen precision filled in, and the choice (logged)."""
    choice = choose_precision(training, getattr(model_config, "hidden_size", None))
    log.info("precision: %s (%s)", choice.path, choice.reason)
    if "bf16" in training or training.get("fp16"):
        return training, choice
    return {**training, "bf16": choice.bf16}, choice


INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "int8")


def for_inference(model: Any, precision: str = "auto") -> tuple[Any, str]:
    """Return the model ready for inference in `precision`, and the path taken (logged by the caller).

    auto: bf16 weights where training would use bf16 by default (a GPU with bf16; a CPU with native
    bf16 and a model at least CPU_BF16_MIN_HIDDEN wide), else fp32. bf16 converts the weights
    (no fp32 master copy is needed to predict): on a 2-core AMX CPU a fine-tuned MiniLM ran 3.3x
    the fp32 lines per CPU-second with the same labels on 1,024 lines (docs/speed.md). int8 is
    dynamic quantization of the Linear layers (CPU only); it changes some labels, so it is opt-in.
    """
    import torch

    device = next(model.parameters()).device
    if precision == "auto":
        width = getattr(model.config, "hidden_size", None)
        chosen = choose_precision({"use_cpu": device.type == "cpu"}, width, cuda=device.type == "cuda")
        precision = "bf16" if chosen.bf16 else "fp32"
        reason = chosen.path.split("(", 1)[-1].rstrip(")")
    else:
        reason = "chosen with --precision"
    if precision == "bf16":
        return model.to(torch.bfloat16), f"bf16 weights ({reason})"
    if precision == "int8":
        if device.type != "cpu":
            from hfllm.errors import ConfigError

            raise ConfigError(
                "--precision int8 (dynamic quantization) runs on a CPU only", "use bf16 on a GPU"
            )
        return _quantize_int8(model), f"int8 dynamic quantization of Linear layers ({reason})"
    return model, f"fp32 ({reason})"


def _quantize_int8(model: Any) -> Any:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice in favour of torchao
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
