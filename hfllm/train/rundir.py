"""The run dir of a training command, and the decision to start fresh, resume or do nothing.

Layout: config.yaml, run_facts.json, checkpoints/checkpoint-N/ (complete ones only; partial saves
are checkpoints/.tmp-checkpoint-N/), model/, metrics.json, loss.png, tensorboard/.

run_facts.json records what the checkpoints depend on beyond config.yaml (the tokenizer's fingerprint,
max_length, the model's size, the world size, the global batch): a data dir re-preprocessed at the
same path or another --num-processes changes no config key, yet would silently change the run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hfllm.errors import ConfigError, InputError
from hfllm.fsutil import atomic_write_json, atomic_write_text
from hfllm.launch import is_main_process, world_size
from hfllm.output import log
from hfllm.train.checkpoints import TMP_PREFIX, checkpoint_step, complete_checkpoints, is_complete

# What a run writes; --overwrite removes these and nothing else (a run never deletes what it did not create).
FACTS = "run_facts.json"
RUN_ENTRIES = ("config.yaml", FACTS, "checkpoints", "model", "metrics.json", "loss.png", "tensorboard")


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
        if self.facts is not None:
            atomic_write_json(self.path / FACTS, self.facts)

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
) -> RunDir:
    """Return the RunDir for `output_dir` after applying --resume auto|never|PATH and --overwrite.

    auto: resume from the newest complete checkpoint; a finished run is reported as finished.
    never: refuse a non-empty run dir unless `overwrite`. PATH: resume from that checkpoint.
    `must_match` names config keys (dotted) that may not change on resume (model, data, ...);
    with `force` (--resume-force) a change is a warning instead.
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
        _check_config_unchanged(path / "config.yaml", config_yaml, must_match, force)
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


# Model config fields that fix the shapes of the weights in a checkpoint.
MODEL_FACTS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "num_labels",
)
# How a fact is called in messages, and what restores it ({old}: the recorded value).
FACT_NAMES = {
    "tokenizer": ("tokenizer fingerprint", "use data tokenized with the old tokenizer"),
    "max_length": ("max_length", "use data packed to max_length {old}"),
    "model": ("model size", "set the model back to the old size"),
    "labels": ("labels", "use data with the old label set"),
    "world_size": ("world size", "resume with world size {old} (--num-processes {old} on one machine)"),
    "global_batch_size": ("global batch size", "keep per-device batch x processes x accumulation as before"),
}


def run_facts(
    tokenizer: str | None,
    max_length: int | None,
    model_config: Any,
    global_batch_size: int,
    **extra: Any,
) -> dict[str, Any]:
    """Return the facts a run's checkpoints depend on (recorded in run_facts.json when it starts)."""
    model = {key: getattr(model_config, key, None) for key in MODEL_FACTS}
    return {
        "format": 1,
        "tokenizer": tokenizer,
        "max_length": int(max_length) if max_length else None,
        "model": {key: value for key, value in model.items() if value is not None},
        "world_size": world_size(),
        "global_batch_size": int(global_batch_size),
        **extra,
    }


def planned_global_batch(training: dict[str, Any]) -> int:
    """Return per-device batch x processes x accumulation as the `training:` settings ask for."""
    per_device = int(training.get("per_device_train_batch_size") or 8)
    accumulation = int(training.get("gradient_accumulation_steps") or 1)
    return per_device * world_size() * accumulation


def facts_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """Return (fact, name in messages, old, new) for each recorded fact whose value changed."""
    changes = []
    for key, (name, _) in FACT_NAMES.items():
        before, after = old.get(key), new.get(key)
        if key not in old or key not in new or before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for sub in sorted(set(before) | set(after)):
                if before.get(sub) != after.get(sub):
                    changes.append((key, f"model.{sub}", before.get(sub), after.get(sub)))
        else:
            changes.append((key, name, before, after))
    return changes


def _shown(value: Any) -> str:
    text = str(value)
    return text[:12] if isinstance(value, str) and len(value) == 64 else text[:60]


def check_resume_facts(run: RunDir, facts: dict[str, Any], force: bool = False) -> None:
    """Record `facts` for run.start(); when resuming, raise ConfigError if the checkpoints were made
    with other ones (naming each change, old -> new), or only warn with `force` (--resume-force)."""
    run.facts = facts
    if run.resume_from is None:
        return
    recorded = Path(run.resume_from).parent.parent / FACTS
    if not recorded.is_file():
        log.info("%s records no run facts (an older run dir): resuming without comparing them", recorded)
        return
    try:
        old = json.loads(recorded.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{recorded}: unreadable ({exc})", "pass --overwrite to start again") from None
    changes = facts_changes(old, facts)
    if not changes:
        return
    said = "; ".join(f"{name} {_shown(a)} -> {_shown(b)}" for _, name, a, b in changes)
    if force:
        if is_main_process():
            log.warning("--resume-force: resuming from %s although %s", run.resume_from, said)
        return
    remedies = list(dict.fromkeys(FACT_NAMES[key][1].format(old=_shown(a)) for key, _, a, _ in changes))
    raise ConfigError(
        f"{recorded}: cannot resume, the checkpoints were made with other settings: {said}",
        f"{'; '.join(remedies)}; or pass --resume-force to resume anyway, or --overwrite to start again",
    )


def check_world_size_before_launch(
    output_dir: Path, resume: str, overwrite: bool, force: bool, processes: int
):
    """Refuse, before starting `processes` workers, to resume a run recorded with another world size
    (else every worker would load everything, then print the same refusal)."""
    if overwrite or force or resume == "never":
        return
    try:
        run = _decide(Path(output_dir), resume)
    except (ConfigError, InputError):
        return  # the run itself reports these, once
    if run.resume_from is None or run.finished:
        return
    recorded = Path(run.resume_from).parent.parent / FACTS
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(recorded.read_text(encoding="utf-8"))
        if old.get("world_size", processes) != processes:
            check_resume_facts(run, {**old, "world_size": processes})


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
    "FACTS",
    "RunDir",
    "check_resume_facts",
    "check_world_size_before_launch",
    "checkpoint_step",
    "is_finished",
    "is_main_process",
    "planned_global_batch",
    "prepare_run_dir",
    "remove_partial_checkpoints",
    "run_facts",
    "stdout_to_stderr",
]
