"""The Trainer class hfllm uses, and `train`: Trainer.train with resume, a clean stdout and clear failures.

Imported only by the commands that train (it imports torch and transformers).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

import torch
from transformers import Trainer

from hfllm.errors import HfllmError
from hfllm.output import log
from hfllm.tasks.sparse_mlm import SparseMLMMixin
from hfllm.train.checkpoints import AtomicCheckpointMixin
from hfllm.train.rundir import RunDir, stdout_to_stderr

NO_BAD_STEP = 2**62  # "no non-finite loss yet" in the device tensor that records the first bad step


class HfllmTrainer(SparseMLMMixin, AtomicCheckpointMixin, Trainer):
    """transformers.Trainer with atomic checkpoints, fixed evaluation masks, a record of the first
    non-finite loss, and clear out-of-memory errors."""

    _first_bad: Any = None  # device tensor: the step of the first non-finite loss, or NO_BAD_STEP
    nonfinite: str | None = None  # what went non-finite, once a check found it

    def evaluate(self, *args: Any, **kwargs: Any):
        try:
            for_evaluation = getattr(self.data_collator, "for_evaluation", None)
            if for_evaluation is None:
                return super().evaluate(*args, **kwargs)
            with for_evaluation():
                return super().evaluate(*args, **kwargs)
        except _oom_errors() as exc:
            raise out_of_memory_error(self.args, "evaluation") from exc

    def prediction_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any):
        if self.args.device.type == "cpu":
            release_free_heap()
        return super().prediction_step(model, inputs, *args, **kwargs)

    def get_train_dataloader(self):
        epochs_matter = hasattr(self.data_collator, "epoch") and self.args.dataloader_num_workers > 0
        if not (epochs_matter and self.args.dataloader_persistent_workers):
            return super().get_train_dataloader()
        # Persistent workers keep the collator of the first epoch: its masks would never change, and a
        # run resumed in a later epoch would mask differently. Training workers start anew each epoch.
        self.args.dataloader_persistent_workers = False
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_persistent_workers = True

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Record the step of the first non-finite loss on the device, without a host sync per step.
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), NO_BAD_STEP, dtype=torch.long, device=loss.device)
        bad = ~torch.isfinite(loss).all() & (self._first_bad == NO_BAD_STEP)
        self._first_bad = torch.where(bad, self.state.global_step + 1, self._first_bad)
        return loss

    def first_nonfinite_step(self) -> int | None:
        """Return the first step with a NaN/inf loss on any process, or None (a collective: all ranks call it)."""
        record = self._first_bad
        if record is None:
            record = torch.full((), NO_BAD_STEP, dtype=torch.long, device=self.args.device)
        step = int(_all_reduce_min(record.clone()).item())
        return None if step == NO_BAD_STEP else step

    def check_finite(self, weights: bool = False) -> str | None:
        """Return what went non-finite (the loss at a step; with `weights`, the weights), or None.

        A collective: every rank calls it at the same step. The first answer sticks.
        """
        if self.nonfinite is None:
            step = self.first_nonfinite_step()
            if step is not None:
                self.nonfinite = f"the loss was NaN or infinite at step {step}"
            elif weights and not self._weights_finite():
                # A huge update can break the weights while the loss it came from was still finite.
                self.nonfinite = (
                    f"the weights became NaN or infinite at step {self.state.global_step}"
                    " (its loss was finite)"
                )
        return self.nonfinite

    def _weights_finite(self) -> bool:
        flags = [torch.isfinite(p).all() for p in self.model.parameters() if p.numel()]
        ok = torch.stack(flags).all() if flags else torch.tensor(True)
        return bool(_all_reduce_min(ok.to(self.args.device, torch.long)).item())

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        what = self.check_finite(weights=True)
        if what is not None:  # never publish weights that a NaN/inf reached
            log.error("not saving checkpoint-%d: %s", self.state.global_step, what)
            self.control.should_training_stop = True
            return
        super()._save_checkpoint(model, trial)

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        from hfllm.train.signals import EvaluationInterrupted

        try:
            super()._maybe_log_save_evaluate(*args, **kwargs)
        except EvaluationInterrupted:
            # A signal abandoned the evaluation (the loss was logged before it): save the step, stop.
            self.control.should_training_stop = True
            self._save_checkpoint(self.model_wrapped, None)
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)

    def _finalize_training(self, *args: Any, **kwargs: Any):
        # With save_total_limit 1, Transformers deletes every checkpoint but the best one here, the
        # newest included; hfllm's rotation (at each save) keeps both, so turn that step off.
        limit = self.args.save_total_limit
        if limit == 1:
            self.args.save_total_limit = None
        try:
            return super()._finalize_training(*args, **kwargs)
        finally:
            self.args.save_total_limit = limit


def train(trainer: Any, run: RunDir):
    """Return Trainer.train's output, resuming from `run.resume_from` when set.

    A resumed run skips the step-0 evaluation: the checkpoint's log history already has it.
    SIGINT/SIGTERM finish the step, save a checkpoint and raise Interrupted (exit 130/143);
    a NaN or infinite loss stops the run at that step with an error naming it (exit 1), the last
    good checkpoint kept; running out of memory raises an error that says which settings to change.
    """
    from hfllm.train.callbacks import NonFiniteLossCallback
    from hfllm.train.signals import GracefulStop

    resume = str(run.resume_from) if run.resume_from is not None else None
    if resume is not None:
        trainer.args.eval_on_start = False
    args = trainer.args
    processes, steps = max(args.world_size, 1), args.gradient_accumulation_steps
    log.info(
        "global batch %d = %d per device x %d process%s x %d accumulation step%s",
        global_batch_size(args),
        args.per_device_train_batch_size,
        processes,
        "es" if processes != 1 else "",
        steps,
        "s" if steps != 1 else "",
    )
    stop = GracefulStop()
    nonfinite = NonFiniteLossCallback(trainer if hasattr(trainer, "check_finite") else None)
    trainer.add_callback(stop)
    trainer.add_callback(nonfinite)
    try:
        with stdout_to_stderr(), stop.installed():
            output = trainer.train(resume_from_checkpoint=resume)
    except _oom_errors() as exc:
        raise out_of_memory_error(trainer.args, "training") from exc
    stop.raise_if_stopped("rerun the same command to continue from it")
    what = nonfinite.message
    if what is None and hasattr(trainer, "check_finite"):
        what = trainer.check_finite()
    if what is not None:
        from hfllm.train.checkpoints import complete_checkpoints

        kept = complete_checkpoints(run.checkpoints)
        where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was saved before it"
        raise HfllmError(
            f"training stopped: {what}; {where}",
            "lower training.learning_rate (or set training.max_grad_norm), check the data, "
            "then rerun with --resume auto or --overwrite",
        )
    return output


def release_free_heap() -> None:
    """Give the free pages of the C heap back to the kernel (glibc's malloc_trim); a no-op without glibc.

    Called before each evaluation batch of a CPU run: evaluation batches are usually larger than
    training batches, so their vocabulary-wide buffers do not fit the holes the training steps left in
    the heap and land on top of its high-water mark, by an amount that changed from run to run (the
    tiny pretrain config: 69-129 MiB above the start of training over five runs; 67-90 MiB over five
    with this). It costs about 1 ms per batch there, 7 ms on the demo config (0.15 s of a 30 s run).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None


def global_batch_size(args: Any) -> int:
    """Return the examples per optimizer step: per device x processes x accumulation."""
    return args.per_device_train_batch_size * max(args.world_size, 1) * args.gradient_accumulation_steps


def _all_reduce_min(tensor: Any) -> Any:
    """Return `tensor` reduced to its minimum over the processes (itself with one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    return tuple(
        {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
    )


def _smallest_factor(n: int) -> int:
    return next((p for p in range(2, int(n**0.5) + 1) if n % p == 0), n)


def out_of_memory_error(args: Any, phase: str) -> HfllmError:
    """Return the error for running out of device memory in `phase`, with settings that use less of it.

    For training the suggested settings keep the global batch (and so the results): the per-device
    batch shrinks by its smallest factor and gradient accumulation grows by the same factor.
    """
    if phase == "evaluation":
        size = args.per_device_eval_batch_size
        hint = (
            f"set training.per_device_eval_batch_size={max(size // 2, 1)} (evaluation batches do not change "
            "the metrics)"
            if size > 1
            else "evaluation runs one example at a time already: shorten max_length or use a smaller model"
        )
        return HfllmError(f"out of memory during evaluation (per_device_eval_batch_size {size})", hint)
    size, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
    factor = _smallest_factor(size)
    message = (
        f"out of memory during training (per_device_train_batch_size {size}, gradient_accumulation_steps "
        f"{accumulation}: global batch {global_batch_size(args)})"
    )
    steps = []
    if size > 1:
        steps.append(
            f"--set training.per_device_train_batch_size={size // factor} "
            f"--set training.gradient_accumulation_steps={accumulation * factor} (same global batch)"
        )
    # Transformers 5.24 renamed gradient_checkpointing (still an alias) to activation_checkpointing.
    if not (
        getattr(args, "activation_checkpointing", False) or getattr(args, "gradient_checkpointing", False)
    ):
        steps.append(
            "--set training.activation_checkpointing=true (recomputes activations: less memory, ~30% slower)"
        )
    if not steps:
        steps.append("use bf16/fp16, shorter sequences (preprocess packing.max_length) or a smaller model")
    return HfllmError(message, "to use less memory: " + "; or ".join(steps))
