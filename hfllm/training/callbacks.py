"""Trainer callbacks shared by the training commands."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from typing import Any

from transformers import TrainerCallback

from hfllm.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted
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


class GracefulStop(TrainerCallback):
    """On SIGINT/SIGTERM, finish the current step, save a checkpoint, stop; a second signal stops at once.

    Use `with stop.installed(): trainer.train(...)`, then `stop.raise_if_stopped(run_dir)` after it.
    """

    def __init__(self):
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self):
        """Catch SIGINT and SIGTERM inside the block (only in the main thread), restore the old handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is not None:  # asked twice: stop now, the previous checkpoint stays valid
            raise Interrupted(f"interrupted by {signal.Signals(signum).name} again", _exit_code(signum))
        self.signum = signum
        log.warning(
            "%s received: saving a checkpoint after this step, then stopping", signal.Signals(signum).name
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum is not None:
            control.should_save = True
            control.should_evaluate = False
            control.should_training_stop = True
            args.load_best_model_at_end = False  # leave quickly; the resumed run selects the best model

    def raise_if_stopped(self, how_to_resume: str) -> None:
        """Raise Interrupted (exit 130 or 143) if a signal stopped training."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            error = Interrupted(
                f"interrupted by {name}; the last checkpoint is safe", _exit_code(self.signum)
            )
            error.hint = how_to_resume
            raise error


def _exit_code(signum: int) -> int:
    return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
