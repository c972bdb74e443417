"""Training progress for people: tqdm bars on a terminal, timestamped log lines (step, rate, ETA) elsewhere.

The Trainer's own progress (tqdm bars, or log dicts printed without a time) is replaced by
`use_progress(trainer)`: on a terminal the bars stay and each logged dict becomes a stamped line
above them; when stderr is a file or a pipe a line like

    2026-12-01 10:00:00 hfllm: step 120/1,000 (12%), 1.52 steps/s, 48.6 examples/s, ETA 0:09:38

comes every HFLLM_PROGRESS_SECONDS (default 30), after the first step and at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hfllm.output import LogProgress, StampedFormatter, format_seconds, log, progress_bars, progress_seconds

SKIPPED = ("total_flos",)  # a log key that means nothing to a person


def use_progress(trainer: Any) -> None:
    """Replace the Trainer's progress callbacks with hfllm's: bars on a terminal, log lines elsewhere."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    bars = progress_bars() and not trainer.args.disable_tqdm
    trainer.add_callback(TerminalProgressCallback() if bars else ProgressLogCallback())


def format_logs(step: int, logs: dict[str, Any]) -> str:
    """Return one line for a dict the Trainer logs: `step 20: loss 7.593, grad_norm 1.04, ...`."""
    parts = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items() if k not in SKIPPED
    ]
    return f"step {step}: " + ", ".join(parts)


class ProgressLogCallback(TrainerCallback):
    """Log step, rate and ETA every `every` seconds (and after the first step), and every logged dict.

    Only the main process logs. The rate counts the steps of this run (not those before a resume)
    over the time since training began, evaluations included, so the ETA holds them too.
    """

    def __init__(self, every: float | None = None, clock=time.monotonic):
        self.every = progress_seconds() if every is None else every
        self.clock = clock
        self.start = self.last = 0.0
        self.first_step = 0
        self.evaluation: LogProgress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last = self.clock()
        self.first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        now = self.clock()
        if state.global_step == self.first_step + 1 or now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line(args, state, now))

    def line(self, args, state, now: float) -> str:
        """Return `step N/M (p%), r steps/s, e examples/s, ETA h:mm:ss` at time `now`."""
        done, total = state.global_step, state.max_steps
        seconds = now - self.start
        rate = (done - self.first_step) / seconds if seconds > 0 else 0.0
        text = f"step {done:,}/{total:,} ({100 * done / total:.0f}%)" if total else f"step {done:,}"
        if rate > 0:
            examples = rate * args.per_device_train_batch_size * max(args.world_size, 1)
            examples *= args.gradient_accumulation_steps
            text += f", {rate:.3g} steps/s, {examples:.3g} examples/s"
            if total:
                text += f", ETA {format_seconds((total - done) / rate)}"
        return text

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.evaluation is None:
            try:
                total = len(eval_dataloader)
            except TypeError:  # an iterable dataset: no length
                total = None
            self.evaluation = LogProgress(total, "evaluation", "batches", self.every, self.clock)
        self.evaluation.update(1)

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluation = None

    on_predict = on_evaluate

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            log.info("%s", format_logs(state.global_step, logs))

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            elapsed = format_seconds(self.clock() - self.start)
            log.info("training ended at step %d after %s", state.global_step, elapsed)


class TerminalProgressCallback(ProgressCallback):
    """The Trainer's tqdm bars, with each logged dict written above them as a stamped hfllm line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and logs and log.isEnabledFor(logging.INFO)):
            return
        record = logging.makeLogRecord({"name": "hfllm", "msg": format_logs(state.global_step, logs)})
        text = StampedFormatter("hfllm").format(record)
        if self.training_bar is not None:
            self.training_bar.write(text, file=sys.stderr)
        else:
            sys.stderr.write(text + "\n")
