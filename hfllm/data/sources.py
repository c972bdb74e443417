"""Which inputs a preprocess run reads: files, globs, directories, saved datasets, stdin, Hub names."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hfllm.data.hub import HubRef, refs_from_section
from hfllm.errors import ConfigError, InputError

COMPRESSIONS = {".gz": "gzip", ".xz": "xz", ".bz2": "bz2", ".zst": "zstd"}
FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}
FORMATS.update({".parquet": "parquet", ".conll": "conll", ".iob": "conll", ".bio": "conll"})
SPLITS = ("train", "validation", "test")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class Source:
    """One input: a file (possibly compressed), a save_to_disk dir, a Hub dataset split, or standard input."""

    path: str  # as the user wrote it, expanded (a real path, "-", or a Hub dataset split's label)
    format: str
    split: str | None  # None: pooled, split by ratio
    compression: str | None = None
    local: Path | None = None  # where the bytes are (stdin is copied to the work dir first)
    hub: HubRef | None = None  # format "hub": which dataset, configuration, revision and split
    files: list[Path] | None = None  # a corpus of chosen files under `local` (python:stdlib)
    info: dict = field(default_factory=dict)  # more for the manifest (e.g. the corpus's licence)

    def _files(self) -> list[Path]:
        if self.files is not None:
            return self.files
        return (
            [self.local] if self.local.is_file() else sorted(p for p in self.local.rglob("*") if p.is_file())
        )

    def stat(self) -> dict:
        """Return size and mtime of a local source (a dir: summed over its files)."""
        if self.local is None:
            return {"bytes": None, "mtime_ns": None}
        stats = [p.stat() for p in self._files()]
        return {
            "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        }

    def sha256(self) -> str | None:
        """Return the sha256 of the source's bytes (a dir: of its files' names and bytes)."""
        if self.local is None:
            return None
        digest = hashlib.sha256()
        for file in self._files():
            if self.local.is_dir():
                digest.update(str(file.relative_to(self.local)).encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def resolve_sources(data, stdin_dir: Path | None = None, exclude: Path | None = None) -> list[Source]:
    """Return the inputs named in the `data` section, globs and directories expanded, in a stable order.

    Files under `exclude` (the output dir, which may sit inside an input directory) are skipped.
    """
    named = _named(data)
    if not named and data.hub is None:
        raise ConfigError(
            "no inputs: set data.files (or data.train_files ..., or data.hub) to files, globs, directories "
            "or a dataset"
        )
    if data.files and data.train_files:
        raise ConfigError("set data.files (split by ratio) or data.train_files (given splits), not both")
    sources: list[Source] = []
    for pattern, split in named:
        sources.extend(_expand(str(pattern), split, data, stdin_dir))
    if data.hub is not None:
        sources.extend(_hub_source(ref, split) for split, ref in refs_from_section(data.hub))
    if exclude is not None:
        skip = exclude.resolve()
        sources = [
            s for s in sources if s.path == "-" or s.local is None or skip not in s.local.resolve().parents
        ]
    if sum(s.path == "-" for s in sources) > 1:
        raise ConfigError("standard input (`-`) can be named only once in data.*files")
    return sources


def _named(data) -> list[tuple[str, str | None]]:
    """Return (pattern, given split or None) for every entry of data.files and data.<split>_files."""
    return [(p, None) for p in data.files] + [(p, s) for s in SPLITS for p in getattr(data, f"{s}_files")]


def hub_refs(data) -> list[HubRef]:
    """Return the Hub dataset splits a `data` section reads (data.hub, and Hub names in data.*files)."""
    refs = [ref for _, ref in refs_from_section(data.hub)] if data.hub is not None else []
    refs += [HubRef(str(p), data.hub_split) for p, _ in _named(data) if _is_hub_name(str(p), data.format)]
    return refs


def _is_hub_name(pattern: str, fmt: str) -> bool:
    """Return whether a data.*files entry names a Hub dataset: nothing local, and it reads like one."""
    path = Path(pattern).expanduser()
    if pattern == "-" or any(ch in pattern for ch in "*?[") or path.exists():
        return False
    return fmt == "hub" or (
        fmt == "auto" and not _format_of(path, "auto", strict=False) and bool(_HUB_NAME.match(pattern))
    )


def _expand(pattern: str, split: str | None, data, stdin_dir: Path | None) -> list[Source]:
    fmt = data.format
    if pattern == "-":
        return [_stdin_source(split, fmt, stdin_dir)]
    if pattern.startswith("python:"):
        return [_stdlib_source(pattern, split)]
    path = Path(pattern).expanduser()
    if path.is_dir():
        if _is_saved_dataset(path):
            return [Source(str(path), "arrow", split, local=path)]
        found = sorted(p for p in path.rglob("*") if p.is_file() and _format_of(p, "auto", strict=False))
        if not found:
            raise InputError(
                f"{path}: directory holds no readable input files", f"supported: {', '.join(FORMATS)}"
            )
        return [_file_source(p, split, fmt) for p in found]
    if any(ch in pattern for ch in "*?["):
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise InputError(f"no file matches the pattern {pattern!r}", "check the glob (quote it in YAML)")
        return [s for m in matches for s in _expand(m, split, data, stdin_dir)]
    if path.is_file():
        return [_file_source(path, split, fmt)]
    if _is_hub_name(pattern, fmt):
        return [_hub_source(HubRef(pattern, data.hub_split), split)]
    raise InputError(
        f"input file not found: {path}", "check data.files (paths are relative to the current directory)"
    )


def _file_source(path: Path, split: str | None, fmt: str) -> Source:
    suffix = path.suffix.lower()
    compression = COMPRESSIONS.get(suffix)
    return Source(str(path), _format_of(path, fmt), split, compression, local=path)


def _format_of(path: Path, fmt: str, strict: bool = True) -> str | None:
    if fmt not in ("auto", "hub"):
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    found = FORMATS.get(suffixes[-1]) if suffixes else None
    if found is None and strict:
        raise InputError(
            f"{path}: cannot tell the format from the extension {''.join(path.suffixes) or '(none)'!r}",
            f"use one of {', '.join(FORMATS)} (optionally .gz/.xz/.bz2/.zst) or set data.format",
        )
    return found


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _stdin_source(split: str | None, fmt: str, stdin_dir: Path | None) -> Source:
    """Copy standard input to the work dir so it can be hashed and read like a file."""
    if stdin_dir is None:
        raise InputError("standard input cannot be read here")
    fmt = "txt" if fmt == "auto" else fmt
    stdin_dir.mkdir(parents=True, exist_ok=True)
    local = stdin_dir / f"stdin.{fmt}"
    with open(local, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return Source("-", fmt, split, local=local)


def _hub_source(ref: HubRef, split: str | None) -> Source:
    # A local dataset dir is hashed like any input; a Hub dataset is known by name, configuration,
    # revision and split (pin the revision: an unpinned one may change under the same name).
    return Source(ref.label(), "hub", split, local=ref.local, hub=ref)


def _stdlib_source(name: str, split: str | None) -> Source:
    from hfllm.data.code import STDLIB, stdlib_files, stdlib_info, stdlib_root

    if name != STDLIB:
        raise InputError(f"unknown corpus {name!r}", f"the built-in code corpus is {STDLIB}")
    root = stdlib_root()
    files = stdlib_files(root)
    if not files:
        raise InputError(f"{STDLIB}: no .py files under {root}", "this Python ships without its source")
    return Source(STDLIB, "stdlib", split, local=root, files=files, info=stdlib_info(root, files))
