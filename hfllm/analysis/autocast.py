"""torch.autocast's casts, replayed on meta tensors, so inspect sizes a mixed-precision step as it runs.

Why: autocast works on CPU and CUDA tensors only (on meta it does nothing), and a mixed-precision step
is neither an fp32 step nor a half-precision model: matmuls read half-precision copies of their inputs
(the weights' copies are cached for the forward and kept by autograd for the backward), losses and
(on CUDA) normalisations run in fp32, and the residual stream stays fp32 where an fp32 tensor meets a
half-precision one. Simulating a half-precision model instead overstated a real CPU bf16 step by 24 %.

How: a TorchFunctionMode, above autograd as autocast is, applies autocast's cast policies to the calls
a step makes: "lower" ops get their floating inputs in the half dtype (leaf parameters cast once per
forward), "fp32" ops in float32, "fp32_set_opt_dtype" reductions compute in float32 when their input is
in half precision. The op lists are PyTorch's (aten/src/ATen/autocast_mode.{h,cpp}: AutocastCPU and the
CUDA lists); a test checks the CPU emulation against the same step under real CPU autocast.
"""

from __future__ import annotations

from typing import Any

# Autocast's policies by the name of the Python-level call the mode sees. CPU: AutocastCPU's own lists.
CPU_LOWER = {
    "conv1d", "conv2d", "conv3d", "bmm", "mm", "linalg_vecdot", "baddbmm", "addmm", "addbmm", "linear",
    "matmul", "__matmul__", "__rmatmul__", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "prelu", "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
}  # fmt: skip
CPU_FP32 = {
    "binary_cross_entropy", "prod", "cdist", "trace", "mse_loss", "cosine_embedding_loss", "nll_loss",
    "hinge_embedding_loss", "poisson_nll_loss", "smooth_l1_loss", "cross_entropy", "l1_loss", "huber_loss",
    "margin_ranking_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "kl_div",
    "multilabel_margin_loss", "binary_cross_entropy_with_logits",
}  # fmt: skip
# CUDA: AT_FORALL_LOWER_PRECISION_FP, AT_FORALL_FP32 and AT_FORALL_FP32_SET_OPT_DTYPE.
CUDA_LOWER = {
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "prelu", "addmm", "addmv", "addr", "matmul", "__matmul__", "__rmatmul__", "einsum", "mm", "mv",
    "linalg_vecdot", "linear", "addbmm", "baddbmm", "bmm", "chain_matmul", "linalg_multi_dot",
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
}  # fmt: skip
CUDA_FP32 = {
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow", "__pow__", "softplus", "layer_norm", "group_norm", "cosine_similarity",
    "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss",
    "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits",
    "dist", "pdist", "cdist", "renorm", "logsumexp",
}  # fmt: skip
CUDA_FP32_SET_OPT_DTYPE = {"prod", "softmax", "log_softmax", "cumprod", "cumsum", "sum"}
# Per target: (to the half dtype, to float32, reductions computed in float32 from a half input).
POLICIES = {
    "cpu": (CPU_LOWER, CPU_FP32, set()),
    "gpu": (CUDA_LOWER, CUDA_FP32, CUDA_FP32_SET_OPT_DTYPE),
}


def autocast_emulation(target: str, dtype: Any) -> Any:
    """Return a mode that, inside `with`, casts as torch.autocast(`target` "cpu" or "gpu", dtype) would."""
    import torch
    from torch.overrides import TorchFunctionMode

    lower, fp32, fp32_set_opt_dtype = POLICIES[target]

    class AutocastEmulation(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.cache: dict[int, tuple[Any, Any]] = {}  # id(parameter) -> (parameter, its cast copy)

        def __exit__(self, *exc: Any) -> Any:
            self.cache.clear()  # autocast drops its weight casts when the outermost region ends
            return super().__exit__(*exc)

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in lower:
                return func(*self._cast(args, dtype), **self._cast(kwargs, dtype))
            if name == "cross_entropy" and target == "gpu":
                return _cross_entropy_in_fp32(*args, **kwargs)  # CUDA: log_softmax in fp32, then nll_loss
            if name in fp32:
                return func(*self._cast(args, torch.float32), **self._cast(kwargs, torch.float32))
            first = args[0] if args else kwargs.get("input")
            if name in fp32_set_opt_dtype and kwargs.get("dtype") is None and _is_half(first):
                return func(*args, **{**kwargs, "dtype": torch.float32})
            return func(*args, **kwargs)

        def _cast(self, value: Any, to: Any) -> Any:
            if isinstance(value, torch.Tensor):
                if not value.is_floating_point() or value.dtype in (to, torch.float64):
                    return value
                if to != torch.float32 and value.is_leaf and value.requires_grad:
                    cached = self.cache.get(id(value))
                    if cached is None or cached[0] is not value:
                        cached = self.cache[id(value)] = (value, value.to(to))
                    return cached[1]
                return value.to(to)
            if isinstance(value, (list, tuple)):
                return type(value)(self._cast(v, to) for v in value)
            if isinstance(value, dict):
                return {k: self._cast(v, to) for k, v in value.items()}
            return value

    return AutocastEmulation()


def _is_half(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16)


def _cross_entropy_in_fp32(input: Any, target: Any, weight: Any = None, *args: Any, **kwargs: Any) -> Any:
    """F.cross_entropy as CUDA autocast runs it: the log-softmax computed into fp32 (no fp32 copy of the
    input), then nll_loss; label smoothing falls back to the fp32 input."""
    import torch
    import torch.nn.functional as F

    if kwargs.get("label_smoothing") or args[4:]:
        return F.cross_entropy(input.float(), target, weight, *args, **kwargs)
    ignore_index = kwargs.get("ignore_index", args[1] if len(args) > 1 else -100)
    reduction = kwargs.get("reduction", args[3] if len(args) > 3 else "mean")
    dim = 1 if input.dim() > 1 else 0
    log_probs = F.log_softmax(input, dim=dim, dtype=torch.float32)
    return F.nll_loss(log_probs, target, weight, ignore_index=ignore_index, reduction=reduction)
