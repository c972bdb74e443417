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
    """Stop training at the first NaN or infinite loss, naming the step; a checkpoint is never saved after it.

    With `trainer` (an HfllmTrainer, which records the first bad step of every micro-batch in a device
    tensor), the record is read (one host sync, all-reduced over the processes) at every step on a CPU or
    when the Trainer syncs on each loss anyway (`logging_nan_inf_filter`, the default), else only on steps
    where it is about to log, evaluate, save or stop: either way the same steps on every process. Before
    every save the trainer checks the weights too. Without `trainer` (any other Trainer) only logged losses
    are checked, and `logging_nan_inf_filter` hides most of those.
    """

    def __init__(self, trainer: Any = None):
        self.trainer = trainer
        self.message: str | None = None  # what went non-finite, e.g. "the loss was NaN ... at step 3"

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer is None or self.message is not None:
            return
        flagged = control.should_log or control.should_evaluate or control.should_save
        if self.every_step(args) or flagged or control.should_training_stop:
            self._check(args, control)

    @staticmethod
    def every_step(args) -> bool:
        """Return whether to check at every step: free on a CPU, and the Trainer's NaN filter syncs anyway."""
        return args.device.type == "cpu" or bool(args.logging_nan_inf_filter)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.trainer is not None and self.message is None:
            self._check(args, control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if self.trainer is None and loss is not None and not math.isfinite(loss) and self.message is None:
            self._stop(args, control, f"the loss was {loss} at step {state.global_step}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # Weights can be finite and still give NaN (inf - inf in a softmax): never save those either.
        loss = (metrics or {}).get("eval_loss")
        if self.trainer is not None and self.message is None and loss is not None and not math.isfinite(loss):
            self.trainer.nonfinite = f"the evaluation loss was {loss} at step {state.global_step}"
            self._stop(args, control, self.trainer.nonfinite)

    def _check(self, args, control) -> None:
        what = self.trainer.check_finite()
        if what is not None:
            self._stop(args, control, what)

    def _stop(self, args, control, what: str) -> None:
        self.message = what
        log.error("%s; stopping (the last good checkpoint is kept)", what)
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False
        control.should_log = False
        args.load_best_model_at_end = False  # the run fails anyway: leave at once
