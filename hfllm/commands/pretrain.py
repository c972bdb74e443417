"""`hfllm pretrain`: masked-language-model pretraining from scratch or from a checkpoint."""

from __future__ import annotations

from hfllm.commands.options import training_command

pretrain = training_command(
    "pretrain",
    "hfllm.config.schemas.pretrain:PretrainConfig",
    "hfllm.recipes.masked_lm:run_pretrain",
    "Pretrain a masked language model on a data dir written by `hfllm preprocess`.",
)
