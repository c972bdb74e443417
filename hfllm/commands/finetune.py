"""`hfllm finetune`: supervised fine-tuning for sequence or token classification."""

from __future__ import annotations

from hfllm.commands.options import training_command

finetune = training_command(
    "finetune",
    "hfllm.config.schemas.finetune:FinetuneConfig",
    "hfllm.recipes.classification:run_finetune",
    "Fine-tune a local model for sequence classification (single/multi-label, regression) or token classification.",
)
