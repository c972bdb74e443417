"""`hfllm finetune`: supervised fine-tuning, run by the one training runner."""

from __future__ import annotations

from hfllm.commands.options import training_command

finetune = training_command(
    "finetune",
    "Fine-tune a model for sequence classification (single/multi-label, regression) or token classification.",
)
