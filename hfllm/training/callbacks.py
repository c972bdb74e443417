"""Trainer callbacks shared by the training commands."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from hfllm.output import log


class CollatorEpochCallback(TrainerCallback):
    """Tell a collator with an `epoch` attribute which epoch starts, so its masks change per epoch."""

    def __init__(self, collator: Any):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is fractional mid-epoch (after a resume); the epoch that starts is its floor.
        self.collator.epoch = int(math.floor((state.epoch or 0.0) + 1e-6))


class NonFiniteLossCallback(TrainerCallback):
    """Stop training at the first logged loss that is NaN or infinite, naming the step."""

    def __init__(self):
        self.bad_step: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.bad_step = state.global_step
            log.error(
                "loss is %s at step %d; stopping (the last good checkpoint is kept)", loss, state.global_step
            )
            control.should_training_stop = True
            control.should_save = False
