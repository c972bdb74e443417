"""`hfllm pretrain`: pretraining from scratch or a checkpoint, run by the one training runner."""

from __future__ import annotations

from hfllm.commands.options import training_command

pretrain = training_command(
    "pretrain", "Pretrain a language model on a data dir written by `hfllm preprocess`."
)
