"""File writes that never leave a half-written file behind: write a temporary name, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path`, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_save_figure(fig: Any, path: Path) -> Path:
    """Return `path` after saving the matplotlib figure there (temporary name, then rename) and closing it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


LOCK_FILE = ".hfllm.lock"


class DirLock:
    """An exclusive lock on a directory (flock on `<dir>/.hfllm.lock`), held until `release()`.

    The kernel drops a flock when its holder dies, however it dies; the file's text (pid and host) only
    names the holder for messages. A lock that a dead process left behind is taken over with a warning.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        self.created = (
            False  # whether acquire() made the lock file (then a run that never started removes it)
        )
        self._claimed = False

    def acquire(self, what: str) -> None:
        """Take the lock, or raise ConfigError naming the pid and host that hold it. Nothing is written
        yet (a run that turns out to have nothing to do leaves the file as it was): see `claim`."""
        import fcntl

        from hfllm.errors import ConfigError

        self.created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is in use by another {what} ({holder})",
                "wait for it to finish, or use another --output-dir",
            ) from None
        self._fd = fd

    def claim(self) -> None:
        """Write this process as the holder (for the message a second run gets)."""
        import socket

        from hfllm.output import log

        previous = _read_holder(self._fd)
        if previous != "unknown holder":
            log.warning(
                "taking over the lock of %s, left by %s (no longer running)", self.path.parent, previous
            )
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._claimed = True

    def release(self) -> None:
        """Drop the lock. The lock file goes too (removed while still locked) when this process made or
        claimed it, so a finished dir holds no lock file and the next holder sees a clean handover."""
        if self._fd is None:
            return
        import fcntl

        if self._claimed or self.created:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return text or "unknown holder"


def make_writable_dir(path: Path) -> list[Path]:
    """Create `path` (and missing parents) and check a file can be written there; return the dirs made.

    Raises InputError (exit 3) before any model is built when the place cannot hold the run's outputs.
    """
    made = [p for p in [path, *path.parents] if not p.exists()][::-1]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".hfllm-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        remove_empty_dirs(made)
        from hfllm.errors import InputError

        raise InputError(
            f"cannot write the run's outputs to {path}: {exc.strerror or exc}",
            "choose an --output-dir where you can create files",
        ) from None
    return made


def remove_empty_dirs(made: list[Path]) -> None:
    """Remove the dirs `make_writable_dir` made (deepest first), each only while it is empty."""
    for path in reversed(made):
        with contextlib.suppress(OSError):
            path.rmdir()


def remove_entries(directory: Path, names: tuple[str, ...]) -> None:
    """Delete the files and dirs called `names` in `directory` (what one command wrote there), nothing else."""
    import shutil

    for name in names:
        target = Path(directory) / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
