"""The run dir of a training command, and the decision to start fresh, resume or do nothing.

Layout: config.yaml, checkpoints/checkpoint-N/ (complete ones only; partial saves are
checkpoints/.tmp-checkpoint-N/), model/, metrics.json, loss.png, tensorboard/.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hfllm.errors import ConfigError, InputError
from hfllm.fsutil import atomic_write_text
from hfllm.launch import is_main_process
from hfllm.output import log
from hfllm.training.checkpoints import TMP_PREFIX, checkpoint_step, complete_checkpoints, is_complete

# What a run writes; --overwrite removes these and nothing else (a run never deletes what it did not create).
RUN_ENTRIES = ("config.yaml", "checkpoints", "model", "metrics.json", "loss.png", "tensorboard")


@dataclass
class RunDir:
    """A prepared run dir and what to do in it: start fresh, resume from a checkpoint, or nothing."""

    path: Path
    resume_from: Path | None = None
    finished: bool = False
    overwrite: bool = False
    config_yaml: str | None = None
    started: bool = False

    def start(self) -> None:
        """Make the decision real (rank 0 only): remove old outputs when overwriting, drop partial
        checkpoints, write config.yaml. Call it once the inputs passed their checks."""
        if self.started or self.finished:
            return
        self.started = True
        if not is_main_process():
            return
        if self.overwrite:
            _remove_run_entries(self.path)
        remove_partial_checkpoints(self.checkpoints)
        if self.config_yaml is not None:
            atomic_write_text(self.config, self.config_yaml)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"


def is_finished(path: Path) -> bool:
    """Return whether the run dir holds a finished run (metrics.json and model/ are written last)."""
    return (path / "metrics.json").is_file() and (path / "model" / "config.json").is_file()


def prepare_run_dir(
    output_dir: Path,
    resume: str,
    overwrite: bool,
    config_yaml: str,
    must_match: tuple[str, ...] = (),
    start: bool = True,
) -> RunDir:
    """Return the RunDir for `output_dir` after applying --resume auto|never|PATH and --overwrite.

    auto: resume from the newest complete checkpoint; a finished run is reported as finished.
    never: refuse a non-empty run dir unless `overwrite`. PATH: resume from that checkpoint.
    `must_match` names config keys (dotted) that may not change on resume (model, data, ...).
    Deciding only reads; with `start` (the default) the decision is carried out at once (see
    RunDir.start); pass start=False to run preflight checks first and call `run.start()` after,
    so that a refused run leaves nothing behind.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output_dir {path} is a file, not a directory")
    if overwrite and resume not in ("auto", "never"):
        raise ConfigError(
            "--overwrite removes the run's checkpoints; it cannot be combined with --resume PATH"
        )
    run = RunDir(path, overwrite=overwrite, config_yaml=config_yaml) if overwrite else _decide(path, resume)
    run.config_yaml = config_yaml
    if run.resume_from is not None and (path / "config.yaml").exists():
        _check_config_unchanged(path / "config.yaml", config_yaml, must_match)
    if start:
        run.start()
    return run


def _decide(path: Path, resume: str) -> RunDir:
    entries = list(path.iterdir()) if path.is_dir() else []
    if resume == "never":
        if entries:
            raise ConfigError(
                f"{path} is not empty and --resume never was given",
                "pass --overwrite to start again (it removes this run's outputs), or --resume auto to continue",
            )
        return RunDir(path)
    if resume == "auto":
        if is_finished(path):
            return RunDir(path, finished=True)
        if entries and not (path / "config.yaml").exists() and not (path / "checkpoints").exists():
            raise ConfigError(
                f"{path} is not empty and is not an hfllm run dir",
                "choose another --output-dir, or pass --overwrite to write into it anyway",
            )
        found = complete_checkpoints(path / "checkpoints")
        return RunDir(path, resume_from=found[-1] if found else None)
    checkpoint = Path(resume)
    if not checkpoint.is_dir() or not is_complete(checkpoint):
        raise InputError(
            f"--resume {resume}: not a complete checkpoint dir (checkpoint-N with trainer_state.json)",
            f"use --resume auto to take the newest complete one in {path / 'checkpoints'}",
        )
    return RunDir(path, resume_from=checkpoint)


def _remove_run_entries(path: Path) -> None:
    if not path.is_dir():
        return
    for name in RUN_ENTRIES:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def remove_partial_checkpoints(checkpoints: Path) -> None:
    """Delete checkpoint saves that never completed (temporary dirs this tool created)."""
    if not checkpoints.is_dir():
        return
    for partial in checkpoints.glob(f"{TMP_PREFIX}*"):
        log.warning("removing partial checkpoint %s (its save never completed)", partial)
        shutil.rmtree(partial, ignore_errors=True)


def _check_config_unchanged(old_path: Path, new_yaml: str, keys: tuple[str, ...]) -> None:
    """Raise ConfigError when a resumed run would change settings the checkpoint depends on."""
    if not old_path.exists() or not keys:
        return
    old, new = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}, yaml.safe_load(new_yaml) or {}
    changed = [key for key in keys if _dig(old, key) != _dig(new, key)]
    if changed:
        raise ConfigError(
            f"{old_path}: resuming with a changed {', '.join(changed)} (the checkpoints were made with the old one)",
            "use another --output-dir, or pass --overwrite (or --resume never --overwrite) to start again",
        )


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send anything printed to stdout (Transformers' log dicts, tqdm.write) to stderr instead."""
    sys.stdout.flush()
    with contextlib.redirect_stdout(sys.stderr):
        yield


__all__ = [
    "RunDir",
    "checkpoint_step",
    "is_finished",
    "is_main_process",
    "prepare_run_dir",
    "remove_partial_checkpoints",
    "stdout_to_stderr",
]
