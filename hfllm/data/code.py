"""A real code corpus that is always there, offline: the Python standard library of the running interpreter.

`data.files: [python:stdlib]` reads its *.py files as documents (one per file), in sorted path order,
leaving out tests, generated tables and machine-specific files, and at most MAX_BYTES in all. The
manifest records the Python version and the licence (PSF-2.0) of what was read.
"""

from __future__ import annotations

import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path

STDLIB = "python:stdlib"
LICENCE = "PSF-2.0"
# Test suites (much of it deliberately odd code), character maps, generated docs, build-machine config.
SKIP_DIRS = {"test", "tests", "idle_test", "encodings", "pydoc_data", "site-packages", "dist-packages"}
SKIP_PREFIXES = ("_sysconfigdata", "config-")
MAX_FILE_BYTES = 256 * 1024
MAX_BYTES = 16 * 1024 * 1024


def stdlib_root() -> Path:
    """Return the standard library directory of the interpreter running hfllm."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """Return the standard library's .py files hfllm reads, in a deterministic (sorted) order."""
    root = root or stdlib_root()
    chosen, total = [], 0
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        parts = path.relative_to(root).parts
        if any(part in SKIP_DIRS or part == "__pycache__" for part in parts[:-1]):
            continue
        if parts[0].startswith(SKIP_PREFIXES) or not path.is_file():
            continue
        size = path.stat().st_size
        if size > MAX_FILE_BYTES or total + size > MAX_BYTES:
            continue
        chosen.append(path)
        total += size
    return chosen


def stdlib_info(root: Path, files: list[Path]) -> dict:
    """Return what the manifest records about the corpus: Python version, licence, files read."""
    licence_file = root / "LICENSE.txt"
    return {
        "corpus": "Python standard library source",
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "licence": LICENCE,
        "licence_file": str(licence_file) if licence_file.is_file() else None,
        "files": len(files),
    }


def read_stdlib(source, data) -> Iterator[tuple[int, dict, bool]]:
    """Yield (file number, {text_column: source code, "path": relative path}, replaced) per file."""
    from hfllm.errors import InputError

    for number, path in enumerate(source.files, start=1):
        raw = path.read_bytes()
        try:
            text, replaced = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            if data.encoding_errors != "replace":
                raise InputError(
                    f"{path}: not UTF-8 text", "set data.encoding_errors: replace to read it anyway"
                ) from None
            text, replaced = raw.decode("utf-8", errors="replace"), True
        yield number, {data.text_column: text, "path": path.relative_to(source.local).as_posix()}, replaced
