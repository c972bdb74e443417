"""The output contract: data (JSON) on stdout; logs (timestamped) and progress on stderr.

Progress shows as bars on a terminal. When stderr is a file or a pipe, the bars of every library
(tqdm in Transformers, Datasets, huggingface_hub) are switched off before those libraries load and
hfllm logs a line with the count, rate and ETA every HFLLM_PROGRESS_SECONDS (default 30) instead,
so a log file holds no carriage returns.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

log = logging.getLogger("hfllm")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Libraries that attach their own stderr handler (message only) when imported: hfllm's replaces it.
# Others (accelerate, torch) propagate to the root logger, which gets the same handler.
LIBRARY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "evaluate")
# Read before those libraries import; each turns off that library's tqdm bars (TQDM_DISABLE: any tqdm).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NO_BARS_ENV = ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")


def emit(result: dict[str, Any]) -> None:
    """Print one JSON object on stdout (the only thing a run prints there)."""
    sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def rank_prefix() -> str:
    """Return "[rank N] " when this process is one of several, else ""."""
    rank = os.environ.get("RANK")
    return f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""


class StampedFormatter(logging.Formatter):
    """Format a record as `2026-12-01 10:00:00 [rank N] SOURCE: message`, every line of it stamped."""

    def __init__(self, source: str | None = None):
        super().__init__("%(message)s")
        self.source = source  # None: the top-level name of the logger (transformers, datasets, ...)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not sys.stderr.isatty():
            text = ANSI_ESCAPE.sub("", text)  # Transformers' bold headings are noise in a log file
        source = self.source or ("warning" if record.name == "py.warnings" else record.name.split(".")[0])
        stamp = f"{self.formatTime(record, TIME_FORMAT)} {rank_prefix()}{source}: "
        return "\n".join(stamp + line for line in text.splitlines() or [""])


def _stderr_handler(source: str | None) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StampedFormatter(source))
    handler._hfllm = True  # type: ignore[attr-defined]  # ours: replaced, never duplicated, on a new setup
    return handler


class _LibraryLogger(logging.Logger):
    """A library's top logger that keeps hfllm's stamped handler instead of the one the library adds."""

    def addHandler(self, handler: logging.Handler) -> None:  # noqa: N802 (logging's name)
        if _writes_to_stderr(handler) and not getattr(handler, "_hfllm", False):
            return
        super().addHandler(handler)

    @property
    def propagate(self) -> bool:  # Transformers turns propagation on when CI is set: lines would print twice
        return False

    @propagate.setter
    def propagate(self, value: bool) -> None:
        pass


def _writes_to_stderr(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stderr,
        sys.__stderr__,
    )


def _adopt_library_loggers() -> None:
    """Route the libraries' log lines through a stamped handler, whether or not they are imported yet."""
    for name in LIBRARY_LOGGERS:
        existing = logging.Logger.manager.loggerDict.get(name)
        if isinstance(existing, logging.Logger) and not isinstance(existing, _LibraryLogger):
            for handler in existing.handlers:  # imported already: its handler stays, stamped like ours
                if _writes_to_stderr(handler) or getattr(handler, "_hfllm", False):
                    handler.setFormatter(StampedFormatter())
                    existing.propagate = False  # the root's handler would print the line again
            continue
        if existing is None or isinstance(existing, logging.PlaceHolder):
            previous = logging.getLoggerClass()
            logging.setLoggerClass(_LibraryLogger)
            try:
                existing = logging.getLogger(name)
            finally:
                logging.setLoggerClass(previous)
        existing.handlers[:] = [h for h in existing.handlers if not getattr(h, "_hfllm", False)]
        existing.addHandler(_stderr_handler(None))
        existing.propagate = False


def progress_bars() -> bool:
    """Return whether progress may be drawn as bars: stderr is a terminal and logs are not silenced."""
    return log.isEnabledFor(logging.INFO) and sys.stderr.isatty()


def setup_logging(quiet: bool = False, debug: bool = False) -> None:
    """Send log lines to stderr with a timestamp (and the rank when there are several processes).

    hfllm's own lines read `... hfllm: message`; Transformers', Datasets' and Python warnings go
    through the same format. Without a terminal (or with --quiet) progress bars are turned off.
    """
    log.handlers[:] = [_stderr_handler("hfllm")]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    _adopt_library_loggers()
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_hfllm", False)]
    root.addHandler(_stderr_handler(None))  # anything else that logs a warning (and Python's warnings)
    logging.captureWarnings(True)
    if quiet:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if quiet or not sys.stderr.isatty():
        for name in NO_BARS_ENV:
            os.environ.setdefault(name, "1")


def progress(total: int | None, desc: str, unit: str = " docs"):
    """Return a progress counter with `update(n)` and `close()`: a tqdm bar on a terminal, else log lines."""
    if progress_bars():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, leave=False)
    return LogProgress(total, desc, unit.strip())


def progress_seconds() -> float:
    """Return the seconds between two progress log lines (HFLLM_PROGRESS_SECONDS, default 30)."""
    try:
        return max(float(os.environ.get("HFLLM_PROGRESS_SECONDS", "30")), 0.0)
    except ValueError:
        return 30.0


class LogProgress:
    """Log `desc: n/total unit (p%), rate/s, ETA h:mm:ss` every few seconds, for stderr without a terminal."""

    def __init__(
        self, total: int | None, desc: str, unit: str, every: float | None = None, clock=time.monotonic
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.every = progress_seconds() if every is None else every
        self.clock = clock
        self.start = self.last = clock()
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """Return the progress line at time `now`."""
        return f"{self.desc}: {describe_rate(self.n, self.total, now - self.start, self.unit)}"

    def close(self) -> None:
        """Log nothing more: the caller logs its own summary when the work is done."""


def describe_rate(done: int, total: int | None, seconds: float, unit: str) -> str:
    """Return `done/total unit (p%), rate unit/s, ETA h:mm:ss` (no total: count and rate only)."""
    rate = done / seconds if seconds > 0 else 0.0
    text = f"{done:,}/{total:,} {unit} ({100 * done / total:.0f}%)" if total else f"{done:,} {unit}"
    text += f", {rate:,.2f} {unit}/s" if rate < 10 else f", {rate:,.0f} {unit}/s"
    if total and rate > 0:
        text += f", ETA {format_seconds((total - done) / rate)}"
    return text


def format_seconds(seconds: float) -> str:
    """Return seconds as h:mm:ss."""
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
