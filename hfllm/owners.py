"""Which hfllm command made a directory: every output dir carries a marker, and a command writes only
into an empty dir or one that it made itself (never into a data dir, another command's run, or a
folder that merely holds a config.yaml)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hfllm import __version__
from hfllm.errors import ConfigError
from hfllm.fsutil import LOCK_FILE, atomic_write_json

MARKER = ".hfllm-run.json"
LEGACY_PREPROCESS_MARKER = ".hfllm-preprocess"  # written by preprocess before the JSON marker existed
# What a running hfllm keeps in a dir for a moment (the lock, a scratch dir, a write probe, the marker
# on its way to its name: hfllm.fsutil.atomic_write_text): says nothing of who made it.
TRANSIENT = (LOCK_FILE, ".hfllm-work-", ".hfllm-write-test-", f".{MARKER}.")


def owner_of(path: Path) -> str | None:
    """Return the command that made `path` (preprocess, pretrain, finetune, evaluate), or None."""
    try:
        made = json.loads((path / MARKER).read_text(encoding="utf-8"))
        if isinstance(made, dict) and made.get("command"):
            return str(made["command"])
    except (OSError, ValueError):
        pass
    if (path / "manifest.json").is_file() or (path / LEGACY_PREPROCESS_MARKER).is_file():
        return "preprocess"
    if (path / "config.yaml").is_file():
        # Run dirs written before the marker existed: their config.yaml names an hfllm command as its kind.
        from hfllm.config.schemas import SCHEMAS

        try:
            kind = (yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}).get("kind")
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            return None
        return str(kind) if kind in SCHEMAS else None
    # A finetune run that stopped after preprocessing its raw files into data/, before it started.
    if entries(path) == ["data"] and owner_of(path / "data") == "preprocess":
        return "finetune"
    return None


def entries(path: Path) -> list[str]:
    """Return the names in `path` that say something about it (the lock file does not)."""
    return sorted(p.name for p in path.iterdir() if not p.name.startswith(TRANSIENT)) if path.is_dir() else []


def check_owner(path: Path, command: str, refused_with: str = "", own_files: tuple[str, ...] = ()) -> None:
    """Raise ConfigError unless `path` is missing, empty, or a dir that `command` made.

    `refused_with` names the flag the user might think overrides this (--overwrite, --force): it does not.
    `own_files`: names only `command` writes; a dir holding nothing else is its own (written before markers).
    """
    found = entries(path)
    if not found or (own_files and set(found) <= set(own_files)):
        return
    owner = owner_of(path)
    never = f" ({refused_with} never writes into what another command made)" if refused_with else ""
    if owner is None:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise ConfigError(
            f"{path} is not empty and was not made by hfllm (it holds {shown})",
            f"choose a new or empty output dir{never}",
        )
    if owner != command:
        what = "a data dir" if owner == "preprocess" else f"a run dir of `hfllm {owner}`"
        raise ConfigError(
            f"{path} is {what}, not an output dir of `hfllm {command}`", f"choose a new output dir{never}"
        )


def write_marker(path: Path, command: str, **extra: Any) -> None:
    """Write `path`'s marker: which command made it (and what else the command records)."""
    atomic_write_json(path / MARKER, {"command": command, "hfllm_version": __version__, **extra})
