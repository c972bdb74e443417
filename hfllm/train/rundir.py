"""The run dir of a training command, and the decision to start fresh, resume or do nothing.

Layout: .hfllm-run.json (who made it: command, recipe, config hash), .hfllm.lock, config.yaml,
run_facts.json, checkpoints/checkpoint-N/ (complete ones only; partial saves are
checkpoints/.tmp-checkpoint-N/), model/, metrics.json, loss.png, tensorboard/.

A command writes only into an empty dir or a run dir of its own kind, and holds the dir's lock for
the whole run: a folder that merely holds a config.yaml, a data dir or another command's run is
refused, and so is a second run on a locked dir. A finished run is reported again only when the
resolved config is the same; otherwise the changed keys are named.

run_facts.json records what the checkpoints depend on beyond config.yaml (the tokenizer's fingerprint,
max_length, the model's size, the world size, the global batch): a data dir re-preprocessed at the
same path or another --num-processes changes no config key, yet would silently change the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hfllm.config.loader import changed_keys
from hfllm.errors import ConfigError, InputError
from hfllm.fsutil import (
    LOCK_FILE,
    DirLock,
    atomic_write_json,
    atomic_write_text,
    make_writable_dir,
    remove_empty_dirs,
    remove_entries,
)
from hfllm.launch import is_main_process
from hfllm.output import log
from hfllm.owners import MARKER, check_owner, write_marker
from hfllm.train.checkpoints import TMP_PREFIX, complete_checkpoints, is_complete

# What a run writes; --overwrite removes these and nothing else (a run never deletes what it did not create).
FACTS = "run_facts.json"
RUN_ENTRIES = (
    MARKER,
    "config.yaml",
    FACTS,
    "checkpoints",
    "model",
    "metrics.json",
    "loss.png",
    "tensorboard",
    "hub.json",  # training.push_to_hub: where model/ was uploaded
)
# Set in the workers of a launch whose launcher holds the run dir's lock (they must not take it again).
LOCK_HELD_ENV = "HFLLM_RUN_LOCK_HELD"


@dataclass
class RunDir:
    """A prepared run dir and what to do in it: start fresh, resume from a checkpoint, or nothing."""

    path: Path
    resume_from: Path | None = None
    finished: bool = False
    overwrite: bool = False
    config_yaml: str | None = None
    started: bool = False
    facts: dict[str, Any] | None = None
    command: str | None = None
    recipe: str | None = None
    created: list[Path] = field(default_factory=list)  # dirs this run made before it started
    lock: DirLock | None = None

    def start(self) -> None:
        """Make the decision real (rank 0 only): remove old outputs when overwriting, drop partial
        checkpoints, write the marker, config.yaml and run facts. Call it once the inputs passed their checks."""
        if self.started or self.finished:
            return
        self.started = True
        if not is_main_process():
            return
        if self.overwrite:
            _remove_run_entries(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        remove_partial_checkpoints(self.checkpoints)
        if self.config_yaml is not None:
            digest = hashlib.sha256(self.config_yaml.encode("utf-8")).hexdigest()
            write_marker(self.path, self.command or "run", recipe=self.recipe, config_sha256=digest)
            atomic_write_text(self.config, self.config_yaml)
        if self.facts is not None:
            atomic_write_json(self.path / FACTS, self.facts)

    def close(self) -> None:
        """Release the lock; a run that never started leaves nothing behind (its lock file, the dirs it made)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if not self.started:
            remove_empty_dirs(self.created)

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
    force: bool = False,
    command: str | None = None,
    recipe: str | None = None,
    reads: tuple[Path, ...] = (),
    lock: bool = False,
) -> RunDir:
    """Return the RunDir for `output_dir` after applying --resume auto|never|PATH and --overwrite.

    auto: resume from the newest complete checkpoint; a finished run with the same resolved config
    is reported as finished (another config is refused, naming the changed keys).
    never: refuse a non-empty run dir unless `overwrite`. PATH: resume from that checkpoint.
    `must_match` names config keys (dotted) that may not change on resume (model, data, ...);
    with `force` (--resume-force) a change is a warning instead. `command` (default: the config's
    `kind:`) and `recipe` say what kind of run dir this is; another kind's dir is refused, and so is an
    --overwrite that would delete a path in `reads` (the model or data the run starts from).
    With `lock`, the dir's lock is taken (rank 0, unless a launcher holds it); `close()` drops it.
    Deciding only reads; with `start` (the default) the decision is carried out at once (see
    RunDir.start); pass start=False to run preflight checks first and call `run.start()` after,
    so that a refused run leaves nothing behind.
    """
    path = Path(output_dir)
    command = command or (yaml.safe_load(config_yaml) or {}).get("kind")
    if path.exists() and not path.is_dir():
        raise InputError(f"output_dir {path} is a file, not a directory", "give a new or empty --output-dir")
    if overwrite and resume not in ("auto", "never"):
        raise ConfigError(
            "--overwrite removes the run's checkpoints; it cannot be combined with --resume PATH"
        )
    check_owner(path, command or "run", "--overwrite" if overwrite else "")
    if overwrite:
        check_not_reading(path, reads)
        run = RunDir(path, overwrite=True)
    else:
        run = decide(path, resume)
    run.config_yaml, run.command, run.recipe = config_yaml, command, recipe
    if run.finished:
        _check_same_config(path / "config.yaml", config_yaml)
    elif run.resume_from is not None and (path / "config.yaml").exists():
        _check_config_unchanged(path / "config.yaml", config_yaml, must_match, force)
    if lock or start:
        run.created = make_writable_dir(path)
    if lock:
        take_lock(run, command or "run")
        if run.lock is not None and not run.finished:
            run.lock.claim()
    if start:
        run.start()
    return run


def check_not_reading(path: Path, reads: tuple[Path, ...]) -> None:
    """Raise ConfigError when --overwrite would delete a path the run reads (its starting model, its data)."""
    doomed = [(path / name).resolve() for name in RUN_ENTRIES]
    for read in reads:
        target = Path(read).resolve()
        if any(target == d or d in target.parents for d in doomed):
            raise ConfigError(
                f"--overwrite would delete {read}, which this run reads",
                "copy that model or data elsewhere first, or use another --output-dir",
            )


def take_lock(run: RunDir, what: str) -> None:
    """Hold the run dir's lock in this process, unless another rank or the launcher holds it for us."""
    held = os.environ.get(LOCK_HELD_ENV)
    if not is_main_process() or (held and Path(held).resolve() == run.path.resolve()):
        return
    lock = DirLock(run.path)
    try:
        lock.acquire(f"`hfllm {what}`")
    except ConfigError:
        run.close()
        raise
    run.lock = lock


def _check_same_config(old_path: Path, new_yaml: str) -> None:
    """Raise ConfigError when a finished run is asked for again with another resolved config."""
    if not old_path.is_file():
        return
    old = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}
    changed = changed_keys(old, yaml.safe_load(new_yaml) or {}, ignore=("output_dir",))
    if changed:
        listed = "; ".join(f"{k}: {shown(a)} -> {shown(b)}" for k, a, b in changed[:6])
        more = f" (and {len(changed) - 6} more)" if len(changed) > 6 else ""
        raise ConfigError(
            f"{old_path.parent} holds a finished run made with another config: {listed}{more}",
            "use a new --output-dir, or --overwrite to train again with the new settings",
        )


def decide(path: Path, resume: str) -> RunDir:
    entries = [p for p in path.iterdir() if p.name != LOCK_FILE] if path.is_dir() else []
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
    if path.is_dir():
        remove_entries(path, RUN_ENTRIES)


def remove_partial_checkpoints(checkpoints: Path) -> None:
    """Delete checkpoint saves that never completed (temporary dirs this tool created)."""
    if not checkpoints.is_dir():
        return
    for partial in checkpoints.glob(f"{TMP_PREFIX}*"):
        log.warning("removing partial checkpoint %s (its save never completed)", partial)
        shutil.rmtree(partial, ignore_errors=True)


def _check_config_unchanged(old_path: Path, new_yaml: str, keys: tuple[str, ...], force: bool) -> None:
    """Raise ConfigError when a resumed run would change settings the checkpoint depends on."""
    if not old_path.exists() or not keys:
        return
    old, new = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}, yaml.safe_load(new_yaml) or {}
    changed = [key for key in keys if _dig(old, key) != _dig(new, key)]
    if changed and force:
        if is_main_process():
            log.warning("--resume-force: resuming with a changed %s (%s)", ", ".join(changed), old_path)
    elif changed:
        raise ConfigError(
            f"{old_path}: resuming with a changed {', '.join(changed)} (the checkpoints were made with the old one)",
            "use another --output-dir, pass --overwrite to start again, or --resume-force to resume anyway",
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


def shown(value: Any) -> str:
    """Return a value short enough for a one-line message (a sha256 as its first 12 characters)."""
    text = str(value)
    return text[:12] if isinstance(value, str) and len(value) == 64 else text[:60]
