"""SIGINT/SIGTERM during training: finish the step, save a checkpoint, exit 130/143.

Under several processes the ranks agree on a stop at every step (one tiny all-reduce), since a
signal can reach them at different steps, and a checkpoint is a collective save at one step.
A signal during an evaluation abandons it (the ranks agree at every evaluation batch) and the
checkpoint of the step just trained is saved: evaluating a large validation split can take longer
than a scheduler's grace period.
"""

from __future__ import annotations

import contextlib
import signal
import threading

from transformers import TrainerCallback

from hfllm.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted
from hfllm.output import log


class EvaluationInterrupted(Exception):
    """Raised out of an evaluation that a signal interrupted; `train` saves a checkpoint and stops."""


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
        if self._agreed(args):
            control.should_save = True
            control.should_evaluate = False
            control.should_training_stop = True
            args.load_best_model_at_end = False  # leave quickly; the resumed run selects the best model

    def on_prediction_step(self, args, state, control, **kwargs):
        # Only evaluations inside training (state.max_steps is set) are abandoned; a final one is not.
        if state.max_steps and state.global_step < state.max_steps and self._agreed(args):
            log.warning(
                "evaluation at step %d abandoned; saving the checkpoint of that step", state.global_step
            )
            raise EvaluationInterrupted()

    def _agreed(self, args) -> bool:
        """Return whether any rank was signalled (all ranks learn the signal; one all-reduce per call)."""
        if args.world_size <= 1:
            return self.signum is not None
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.signum or 0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed = int(flag.item())
        if agreed and self.signum is None:
            self.signum = agreed  # another rank was signalled: stop with the same exit code
        return agreed != 0

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
