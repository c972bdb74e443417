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
        self._previous = ""  # the text a dead holder left, put back when this run turns out to do nothing
        self._claimed = False

    def acquire(self, what: str) -> None:
        """Take the lock and name this process in it at once, or raise ConfigError naming the pid and host
        that hold it. A run that turns out to have nothing to do puts the file back as it was: see `claim`."""
        import fcntl

        from hfllm.errors import ConfigError

        self.created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            if not _wait_for_orphans(fd, holder):
                os.close(fd)
                raise ConfigError(
                    f"{self.path.parent} is in use by another {what} ({holder})",
                    "wait for it to finish, or use another --output-dir",
                ) from None
        self._fd = fd
        self._previous = _holder_text(fd)
        _write_holder(fd, _this_process())

    def claim(self) -> None:
        """Keep the lock file as this run's (it then goes when the run releases it), warning when a
        process that died left it behind."""
        from hfllm.output import log

        if self._previous:
            log.warning(
                "taking over the lock of %s, left by %s (no longer running)", self.path.parent, self._previous
            )
        self._claimed = True

    def release(self) -> None:
        """Drop the lock. The lock file goes too (removed while still locked) when this process made or
        claimed it, so a finished dir holds no lock file and the next holder sees a clean handover."""
        if self._fd is None:
            return
        import fcntl

        if self._claimed or self.created:
            self.path.unlink(missing_ok=True)
        else:
            _write_holder(self._fd, self._previous)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


ORPHAN_WAIT_S = 30.0


def _wait_for_orphans(fd: int, holder: str) -> bool:
    """Return True once the lock is taken, when the holder it names is a dead process of this host: the
    processes it forked (data loader workers) share its lock until they notice and exit, a few seconds
    after a kill. False at once for a live or remote holder, or after ORPHAN_WAIT_S."""
    import fcntl
    import socket
    import time

    from hfllm.output import log

    parts = holder.split()
    if len(parts) != 5 or parts[0] != "pid" or parts[4] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
        return False  # alive (or someone else's process): really in use
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    log.info("the lock's holder (%s) is gone; waiting for processes it forked to let go", holder)
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
    return False


def _this_process() -> str:
    import socket

    return f"pid {os.getpid()} on host {socket.gethostname()}"


def _write_holder(fd: int, text: str) -> None:
    """Replace the lock file's text in one write, then cut what is left of the old text (never empty between)."""
    data = f"{text}\n".encode() if text else b""
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def _read_holder(fd: int) -> str:
    """The holder named in the lock file, giving a holder that took the lock a moment ago up to a second to
    write its name."""
    import time

    for _ in range(20):
        text = _holder_text(fd)
        if text:
            return text
        time.sleep(0.05)
    return "unknown holder"


def _holder_text(fd: int) -> str:
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()


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
