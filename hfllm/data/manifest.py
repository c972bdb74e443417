"""The data dir's bookkeeping: cache keys, the cache check, output-dir ownership, and the atomic commit."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from hfllm import __version__
from hfllm.config.loader import changed_keys
from hfllm.data.datadir import MANIFEST, MANIFEST_FORMAT, TOKENIZER_DIR
from hfllm.data.sources import Source
from hfllm.fsutil import atomic_write_json, atomic_write_text, remove_entries

WORK_PREFIX = ".hfllm-work-"
OWN_PATHS = ("dataset_dict.json", "train", "validation", "test", TOKENIZER_DIR, "config.yaml")
# Settings that change how fast a run goes, never what it writes.
NOT_HASHED = ("output_dir", "num_proc", "batch_size", "strict")
PIPELINE_VERSION = 1


def settings_hash(config) -> str:
    """Return a hash of every setting that decides the output (and of the hfllm version that wrote it)."""
    settings = config.model_dump(mode="json", exclude=set(NOT_HASHED))
    payload = {"settings": settings, "hfllm": __version__, "pipeline": PIPELINE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def input_stats(sources: list[Source]) -> list[dict[str, Any]]:
    """Return what identifies each input cheaply: path, split, size and mtime (stdin: its sha256)."""
    records = []
    for source in sources:
        record = {"path": source.path, "format": source.format, "split": source.split, **source.stat()}
        if source.hub is not None:
            record["hub"] = source.hub.key()
        if source.path == "-":
            record["sha256"] = source.sha256()
            record["mtime_ns"] = None
        records.append(record)
    return records


def tokenizer_source_key(name_or_path: str | None) -> list[dict[str, Any]] | str | None:
    """Return what identifies an existing tokenizer: its local files' sizes and mtimes, or its Hub name."""
    from hfllm.data.tokenizer import source_files

    if name_or_path is None:
        return None
    files = source_files(name_or_path)
    if not files:
        return name_or_path
    return [{"file": f.name, "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


def cache_key(config, sources: list[Source]) -> dict[str, Any]:
    """Return the cache key of a run: settings, inputs, and the tokenizer it starts from."""
    return {
        "settings_hash": settings_hash(config),
        "inputs": input_stats(sources),
        "tokenizer_source": tokenizer_source_key(config.tokenizer.name_or_path),
    }


def read_manifest(out: Path) -> dict[str, Any] | None:
    """Return the manifest of a finished run in `out`, or None."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT else None


def same_content(manifest: dict[str, Any], key: dict[str, Any], sources: list[Source]) -> dict[str, Any]:
    """Return `key` with the size and mtime of the inputs recorded in `manifest` where only the mtime
    differs and the content hash is the recorded one: a touched or copied file is the same input."""
    recorded = {(i["path"], i.get("split")): i for i in manifest.get("inputs", [])}
    cached = {(i["path"], i.get("split")): i for i in manifest.get("cache_key", {}).get("inputs", [])}
    by_name = {(src.path, src.split): src for src in sources}
    inputs = []
    for item in key["inputs"]:
        name = (item["path"], item.get("split"))
        old, was = recorded.get(name), cached.get(name)
        if (
            was is not None
            and old is not None
            and item != was
            and item.get("bytes") == was.get("bytes")
            and item["path"] != "-"
            and name in by_name
            and by_name[name].sha256() == old.get("sha256")
        ):
            item = {**item, "mtime_ns": was.get("mtime_ns")}
        inputs.append(item)
    return {**key, "inputs": inputs}


def cache_miss_reason(out: Path, key: dict[str, Any]) -> str | None:
    """Return why the data dir in `out` cannot be reused for `key`, or None when it can."""
    manifest = read_manifest(out)
    if manifest is None:
        return "no finished run in the output dir"
    cached = manifest.get("cache_key", {})
    if cached.get("settings_hash") != key["settings_hash"]:
        return "settings changed"
    return _input_change(cached, key) or _outputs_missing(out, manifest)


def _outputs_missing(out: Path, manifest: dict[str, Any]) -> str | None:
    tokenizer_json = out / TOKENIZER_DIR / "tokenizer.json"
    if not (out / "dataset_dict.json").exists() or not tokenizer_json.exists():
        return "outputs are missing"
    if file_sha256(tokenizer_json) != manifest.get("tokenizer", {}).get("file_sha256"):
        return "tokenizer/ was modified"
    for split, n in manifest.get("splits", {}).items():
        if n and not (out / split / "state.json").exists():
            return f"split {split} is missing"
    return None


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def changes(out: Path, config, key: dict[str, Any]) -> str | None:
    """Return what differs between the finished data dir in `out` and a run of `config` on these inputs
    (settings by key, inputs, the source tokenizer), or None when there is no finished data dir or nothing
    differs. A finished data dir is never rebuilt silently: a training run may depend on it."""
    manifest = read_manifest(out)
    if manifest is None:
        return None
    reason = _input_change(manifest.get("cache_key", {}), key)
    if manifest.get("cache_key", {}).get("settings_hash") != key["settings_hash"]:
        old = _settings(out / "config.yaml")
        new = config.model_dump(mode="json")
        keys = changed_keys(old, new, ignore=NOT_HASHED) if old is not None else []
        shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in keys[:6])
        reason = f"settings changed ({shown})" if shown else "settings changed (or the hfllm version)"
    return reason


def _input_change(cached: dict[str, Any], key: dict[str, Any]) -> str | None:
    old_inputs = {(i["path"], i.get("split")): i for i in cached.get("inputs", [])}
    new_inputs = {(i["path"], i.get("split")): i for i in key["inputs"]}
    if old_inputs.keys() != new_inputs.keys():
        return "the list of inputs changed"
    for name, new in new_inputs.items():
        if new != {k: v for k, v in old_inputs[name].items() if k in new}:
            return f"input changed: {name[0]}"
    if cached.get("tokenizer_source") != key["tokenizer_source"]:
        return "the source tokenizer changed"
    return None


def _settings(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _short(value: Any) -> str:
    return str(value)[:60]


def make_work_dir(out: Path) -> Path:
    """Return a fresh scratch dir inside `out` (same file system, so results move in by rename)."""
    for stale in out.glob(f"{WORK_PREFIX}*"):
        # Left by a run that was killed outright (SIGKILL, power loss); a live run keeps its own.
        pid = stale.name[len(WORK_PREFIX) :]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    work = out / f"{WORK_PREFIX}{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit(out: Path, staged_data: Path, staged_tokenizer: Path, config_yaml: str, manifest: dict) -> None:
    """Move the new splits and tokenizer into `out`, then write the manifest last.

    The old manifest goes first: if anything below fails, the dir reads as unfinished, never as a
    finished run whose files do not match its manifest.
    """
    (out / MANIFEST).unlink(missing_ok=True)
    remove_entries(out, OWN_PATHS)
    for entry in staged_data.iterdir():
        os.replace(entry, out / entry.name)
    os.replace(staged_tokenizer, out / TOKENIZER_DIR)
    atomic_write_text(out / "config.yaml", config_yaml)
    atomic_write_json(out / MANIFEST, manifest)
