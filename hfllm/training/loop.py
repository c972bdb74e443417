"""The Trainer class hfllm uses, and `train`: Trainer.train with resume and a clean stdout."""

from __future__ import annotations

import functools
from typing import Any

from hfllm.training.checkpoints import AtomicCheckpointMixin
from hfllm.training.run import RunDir, stdout_to_stderr


@functools.cache
def trainer_class():
    """Return `HfllmTrainer`: transformers.Trainer with atomic checkpoints and fixed evaluation masks."""
    from transformers import Trainer

    class HfllmTrainer(AtomicCheckpointMixin, Trainer):
        """Trainer whose checkpoints are atomic and whose evaluation uses the collator's fixed masks."""

        def evaluate(self, *args: Any, **kwargs: Any):
            for_evaluation = getattr(self.data_collator, "for_evaluation", None)
            if for_evaluation is None:
                return super().evaluate(*args, **kwargs)
            with for_evaluation():
                return super().evaluate(*args, **kwargs)

    return HfllmTrainer


def train(trainer: Any, run: RunDir, how_to_resume: str = "rerun the same command to continue from it"):
    """Return Trainer.train's output, resuming from `run.resume_from` when set.

    A resumed run skips the step-0 evaluation: the checkpoint's log history already has it.
    SIGINT/SIGTERM finish the step, save a checkpoint and raise Interrupted (exit 130/143);
    a NaN or infinite loss stops the run with an error naming the step.
    """
    from hfllm.errors import HfllmError
    from hfllm.training.callbacks import NonFiniteLossCallback
    from hfllm.training.signals import GracefulStop

    resume = str(run.resume_from) if run.resume_from is not None else None
    if resume is not None:
        trainer.args.eval_on_start = False
    stop, nonfinite = GracefulStop(), NonFiniteLossCallback()
    trainer.add_callback(stop)
    trainer.add_callback(nonfinite)
    with stdout_to_stderr(), stop.installed():
        output = trainer.train(resume_from_checkpoint=resume)
    stop.raise_if_stopped(how_to_resume)
    if nonfinite.bad_step is not None:
        raise HfllmError(
            f"training stopped: non-finite loss at step {nonfinite.bad_step}",
            f"the last good checkpoint is in {run.checkpoints}; lower training.learning_rate or check the data",
        )
    return output


def global_batch_size(args: Any) -> int:
    """Return the examples per optimizer step: per device x processes x accumulation."""
    return args.per_device_train_batch_size * max(args.world_size, 1) * args.gradient_accumulation_steps
