"""The `peft:` section of finetune and pretrain configs: train a LoRA adapter instead of every weight."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, field_validator

from hfllm.config.schemas.base import Section


class PeftSection(Section):
    """Parameter-efficient fine-tuning with the `peft` library: the base model stays frozen and a
    low-rank adapter (LoRA) is trained beside it; model/ then holds the adapter, not a full model."""

    method: Literal["lora"] = Field("lora", description="The adapter method: lora.")
    r: int = Field(8, gt=0, le=4096, description="LoRA rank: the inner size of each low-rank update.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on the adapter's input: a new copy of each adapted layer's input, drawn and kept "
        "for the backward pass, at every step (0: none, PEFT's default; at 0.1 a CPU step of MiniLM with LoRA was "
        "19 % slower than a full fine-tune's, at 0 3-13 % faster).",
    )
    target_modules: Literal["auto", "all-linear"] | list[str] = Field(
        "auto",
        description="Layers that get an adapter: `auto` (the attention and MLP projections of the model "
        "family, see docs/lora.md), `all-linear` (every linear layer but the output head), or a list of "
        "module names or name suffixes (query, value, attention.output.dense, q_proj, ...). An unknown "
        "name is refused with the model's own module names.",
    )
    modules_to_save: list[str] | None = Field(
        None,
        description="More modules to train in full and save with the adapter. Always trained in full: a "
        "classifier's new head (`classifier` / `score`), a sequence classifier's pooler (what the head "
        "reads), and any weight the base checkpoint lacked, which would otherwise stay at random values "
        "that loading cannot reproduce.",
    )
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="Which biases are trained: none, all, or those of the adapted layers."
    )
    quantization: Literal["4bit"] | None = Field(
        None,
        description="4bit: QLoRA, the frozen base model loaded in 4-bit NF4 through bitsandbytes (a CUDA "
        "GPU and `pip install 'hfllm[qlora]'` needed); null: the base in its own precision.",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not [name for name in value if name.strip()]:
            raise ValueError("give at least one module name, or `auto`")
        return value

    @field_validator("quantization")
    @classmethod
    def _needs_cuda(cls, value: str | None) -> str | None:
        problem = qlora_problem() if value else None
        if problem:
            raise ValueError(problem)
        return value


def qlora_problem() -> str | None:
    """Return why QLoRA cannot run on this machine (no CUDA GPU, no bitsandbytes), or None."""
    import torch  # only when a config asks for quantization

    if not torch.cuda.is_available():
        return (
            "QLoRA (4-bit base model through bitsandbytes) needs a CUDA GPU and this machine has none; "
            "remove peft.quantization to train a LoRA adapter on the full-precision model"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        return "QLoRA needs the bitsandbytes package: pip install 'hfllm[qlora]' (or bitsandbytes)"
    return None
