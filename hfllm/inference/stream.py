"""Read input lines as they arrive and hand them out in batches, for predict and generate.

A batch goes out when it is full, when the input ends, or when a partial batch has waited
`idle` seconds with nothing new arriving: `tail -f log | hfllm generate` answers line by line,
while a file or a fast pipe still fills whole batches. A reader thread does the blocking reads,
so the main thread (and its Ctrl-C handler) never waits on the input.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from hfllm.errors import InputError

IDLE_SECONDS = 0.2  # well under a second: a line typed or logged shows its answer at once
_END = object()


def line_batches(
    stream: Iterable[str], batch_size: int, idle: float = IDLE_SECONDS, first_number: int = 1
) -> Iterator[list[tuple[int, str]]]:
    """Yield lists of (line number, raw line) of at most `batch_size`, in input order.

    A list is yielded when full, at the end of the input, or after `idle` seconds without a new
    line while some are waiting. An error reading the input is raised here, in the caller's thread.
    """
    lines: queue.Queue = queue.Queue(maxsize=max(4 * batch_size, 64))
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for item in enumerate(stream, start=first_number):
                lines.put(item)
        except BaseException as exc:  # e.g. a decoding error: reported by the main thread
            failure.append(exc)
        finally:
            lines.put(_END)

    threading.Thread(target=read, name="hfllm-input", daemon=True).start()
    batch: list[tuple[int, str]] = []
    while True:
        try:
            # Block (in short waits, so signals get through) for the first line of a batch;
            # wait at most `idle` for each further one.
            item = lines.get(timeout=idle if batch else 0.5)
        except queue.Empty:
            if batch:
                yield batch
                batch = []
            continue
        if item is _END:
            break
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if failure:
        raise failure[0]
    if batch:
        yield batch


def open_input(source: str, hint: str):
    """Return a context manager over the lines of `source` (a file, or - for standard input).

    Bytes that are not UTF-8 become lone surrogates, so a bad line can be reported by number
    instead of stopping the stream with a decoding error.
    """
    if source == "-":
        with contextlib.suppress(AttributeError, ValueError):  # a replaced sys.stdin may not reconfigure
            sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        return contextlib.nullcontext(sys.stdin)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"input file not found: {path}", hint)
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def read_first(stream, name: str, what: str) -> str:
    """Return the first line of the input; empty or binary input is an InputError naming it.

    Read before any model is loaded: a wrong input fails fast, without torch.
    """
    first = stream.readline()
    if not first:
        raise InputError(f"{name}: empty input, nothing to {what}", "give one prompt per line, or JSON lines")
    if "\0" in first:
        raise InputError(
            f"{name}: looks like a binary file (NUL byte on line 1), not lines of text",
            "give UTF-8 lines of text, or JSON lines",
        )
    return first


def line_text(raw: str) -> str:
    """Return an input line without its line break; raise ValueError when it is not UTF-8 or is empty."""
    text = raw.rstrip("\r\n")
    try:
        text.encode("utf-8")  # bytes that were not UTF-8 arrive as lone surrogates (surrogateescape)
    except UnicodeEncodeError as exc:
        raise ValueError(f"not UTF-8 text (column {exc.start + 1})") from None
    if not text.strip():
        raise ValueError("empty line")
    return text
