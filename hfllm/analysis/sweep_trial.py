"""One trial of `hfllm sweep`: an ordinary training run in a subprocess, watched for pruning.

The trial is `python -m hfllm pretrain|finetune --config RUN_DIR/config.yaml`: its run dir is like any
other, the command reruns it, and a crash stays inside the subprocess. While it runs, the evaluations
it has checkpointed (trainer_state.json's log_history) are reported to Optuna; when the pruner says
stop, the trial gets SIGTERM, which makes hfllm save a checkpoint and exit 143.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfllm.analysis.sweep_metric import intermediate_key, metric_value
from hfllm.output import log
from hfllm.train.checkpoints import STATE_FILE, complete_checkpoints

LOG_FILE = "sweep-trial.log"  # the trial's stderr
RESULT_FILE = "sweep-result.json"  # the trial's stdout (its one JSON result)
STOP_GRACE_S = 120  # how long a signalled trial may take to save its checkpoint


@dataclass
class Outcome:
    """How a trial ended: complete (with a value), pruned, failed (with the reason) or interrupted."""

    state: str
    value: float | None = None
    error: str | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    seconds: float = 0.0
    intermediate: dict[int, float] = field(default_factory=dict)


def launch(kind: str, run_dir: Path, options: list[str] | None = None) -> subprocess.Popen:
    """Start the trial's training command (with `options`, e.g. --num-processes N); it dies with the sweep
    (Linux), so no orphan keeps training."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # The child gets its own copies of these descriptors; the sweep's close when the block ends.
    with open(run_dir / LOG_FILE, "ab") as stderr, open(run_dir / RESULT_FILE, "wb") as stdout:
        return subprocess.Popen(
            [sys.executable, "-m", "hfllm", kind, "--config", str(run_dir / "config.yaml"), *(options or [])],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_terminate_with_parent if sys.platform.startswith("linux") else None,
        )


def _terminate_with_parent() -> None:
    import ctypes

    # prctl(PR_SET_PDEATHSIG, SIGTERM): if the sweep is killed, the trial saves a checkpoint and stops.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def watch(
    process: subprocess.Popen, trial: Any, metric: str, run_dir: Path, heartbeat, poll_s: float
) -> Outcome:
    """Wait for the trial, reporting its evaluations and pruning it when Optuna says so; return its Outcome.

    An interrupt of the sweep (Interrupted, KeyboardInterrupt) stops the trial with SIGTERM (it saves a
    checkpoint) and propagates: the trial stays RUNNING in the study, and the next sweep resumes it.
    """
    started = time.time()
    reported: dict[int, float] = {}
    pruned = False
    try:
        while process.poll() is None:
            time.sleep(poll_s)
            heartbeat()
            if not pruned and report_evaluations(trial, metric, run_dir, reported) and trial.should_prune():
                log.info("trial %d: pruned at step %d; stopping it", trial.number, max(reported))
                pruned = True
                process.send_signal(signal.SIGTERM)
    except BaseException:
        stop(process)
        raise
    report_evaluations(trial, metric, run_dir, reported)
    return _outcome(process.returncode, pruned, metric, run_dir, time.time() - started, reported)


def stop(process: subprocess.Popen) -> None:
    """Ask the trial to stop (SIGTERM: it saves a checkpoint), then kill it if it takes too long."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def report_evaluations(trial: Any, metric: str, run_dir: Path, reported: dict[int, float]) -> bool:
    """Report evaluations not reported yet from the newest complete checkpoint; return whether any were."""
    found = complete_checkpoints(run_dir / "checkpoints")
    if not found:
        return False
    try:
        state = json.loads((found[-1] / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # being rotated or written: read it at the next poll
    key, new = intermediate_key(metric), False
    for entry in state.get("log_history", []):
        step, value = entry.get("step"), entry.get(key)
        if isinstance(step, int) and isinstance(value, (int, float)) and step not in reported:
            reported[step] = float(value)
            trial.report(float(value), step)
            new = True
    return new


def _outcome(code: int, pruned: bool, metric: str, run_dir: Path, seconds: float, reported) -> Outcome:
    result = _read_result(run_dir)
    if pruned:
        return Outcome("pruned", exit_code=code, seconds=seconds, intermediate=reported)
    if code != 0:
        return Outcome(
            "failed", error=_last_error(run_dir, code), exit_code=code, seconds=seconds, intermediate=reported
        )
    value = metric_value(result or {}, metric, run_dir)
    if value is None:
        error = f"the result has no metric `{metric}` (see {run_dir / RESULT_FILE} and metrics.json)"
        return Outcome(
            "failed", error=error, exit_code=0, result=result, seconds=seconds, intermediate=reported
        )
    return Outcome(
        "complete", value=value, exit_code=0, result=result, seconds=seconds, intermediate=reported
    )


def _read_result(run_dir: Path) -> dict[str, Any] | None:
    try:
        lines = (run_dir / RESULT_FILE).read_text(encoding="utf-8").strip().splitlines()
        result = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _last_error(run_dir: Path, code: int) -> str:
    """Return the trial's own error line (hfllm: error: ...) or its last log line, with the exit code."""
    try:
        lines = [
            ln
            for ln in (run_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
            if ln.strip()
        ]
    except OSError:
        lines = []
    errors = [ln for ln in lines if "error:" in ln]
    said = (errors or lines or ["(no output)"])[-1].strip()
    return f"exit {code}: {said[:300]}"
