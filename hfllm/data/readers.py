"""Streaming readers: each yields (row number, record) from one input, naming file and row on bad data."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from collections.abc import Iterator
from contextlib import contextmanager

from hfllm.data.sources import Source
from hfllm.errors import InputError

SNIFF_BYTES = 8192
# Records are (row, dict, replaced): row is the 1-based line (txt, jsonl, csv) or row index (parquet, arrow);
# replaced says undecodable bytes were substituted (data.encoding_errors: replace).
Record = tuple[int, dict, bool]


@contextmanager
def open_binary(source: Source):
    """Yield a binary stream of the source's bytes, decompressed."""
    path = source.local
    try:
        if source.compression == "gzip":
            handle = gzip.open(path, "rb")
        elif source.compression == "xz":
            handle = lzma.open(path, "rb")
        elif source.compression == "bz2":
            handle = bz2.open(path, "rb")
        elif source.compression == "zstd":
            handle = _open_zstd(source)
        else:
            handle = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{source.path}: cannot open ({exc})") from None
    try:
        yield handle
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InputError(
            f"{source.path}: corrupt or truncated {source.compression or ''} file ({exc})"
        ) from None
    finally:
        handle.close()


def _open_zstd(source: Source):
    try:
        import zstandard
    except ImportError:
        raise InputError(
            f"{source.path}: reading .zst needs the `zstandard` package", "pip install zstandard"
        ) from None
    return io.BufferedReader(
        zstandard.ZstdDecompressor().stream_reader(open(source.local, "rb"), closefd=True)
    )


def check_not_binary(source: Source, head: bytes) -> None:
    """Raise InputError if the first bytes of a text input look binary (NUL bytes)."""
    where = "standard input" if source.path == "-" else source.path
    if not head:
        raise InputError(f"{where}: file is empty", "give a file with at least one document")
    nul = head.find(b"\0")
    if nul >= 0:
        raise InputError(
            f"{where}: looks like a binary file (NUL byte at offset {nul}), not text",
            "give UTF-8 text (txt, jsonl, csv, tsv) or parquet; UTF-16 files must be converted to UTF-8",
        )


def decode(raw: bytes, source: Source, line: int, offset: int, errors: str) -> tuple[str, bool]:
    """Return the text of one line and whether bytes were replaced; strict mode names file, line and offset."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError as exc:
        if errors == "replace":
            return raw.decode("utf-8", errors="replace"), True
        raise InputError(
            f"{source.path}: line {line}: bytes that are not UTF-8 at byte offset {offset + exc.start}",
            "convert the file to UTF-8, or set data.encoding_errors: replace to substitute and count them",
        ) from None


def iter_lines(source: Source, errors: str) -> Iterator[tuple[int, str, bool]]:
    """Yield (line number, text without newline, replaced) of a text input."""
    with open_binary(source) as handle:
        head = handle.peek(SNIFF_BYTES)[:SNIFF_BYTES] if hasattr(handle, "peek") else b""
        check_not_binary(source, head)
        offset = 0
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, offset = raw[3:], 3  # a UTF-8 byte-order mark is not part of the text
            text, replaced = decode(raw, source, number, offset, errors)
            offset += len(raw)
            yield number, text.rstrip("\r\n"), replaced


def read_txt(source: Source, data) -> Iterator[Record]:
    """Yield documents of a .txt: one per line, or per blank-line separated paragraph."""
    if data.txt_mode == "line":
        for number, text, replaced in iter_lines(source, data.encoding_errors):
            yield number, {data.text_column: text}, replaced
        return
    lines: list[str] = []
    start, replaced_any = 0, False
    for number, text, replaced in iter_lines(source, data.encoding_errors):
        if text.strip():
            start = start or number
            lines.append(text)
            replaced_any |= replaced
        elif lines:
            yield start, {data.text_column: "\n".join(lines)}, replaced_any
            lines, start, replaced_any = [], 0, False
    if lines:
        yield start, {data.text_column: "\n".join(lines)}, replaced_any


def read_conll(source: Source, data) -> Iterator[Record]:
    """Yield sentences of a CoNLL-style file: one `word ... tag` per line (tag last), blank line between."""
    tokens: list[str] = []
    tags: list[str] = []
    start, replaced_any = 0, False
    for number, text, replaced in iter_lines(source, data.encoding_errors):
        fields = text.split()
        if fields and fields[0] == "-DOCSTART-":
            continue
        if fields:
            if len(fields) < 2:
                raise InputError(f"{source.path}: line {number}: expected `word tag`, got {text.strip()!r}")
            start = start or number
            tokens.append(fields[0])
            tags.append(fields[-1])
            replaced_any |= replaced
        elif tokens:
            yield start, {data.tokens_column: tokens, data.tags_column: tags}, replaced_any
            tokens, tags, start, replaced_any = [], [], 0, False
    if tokens:
        yield start, {data.tokens_column: tokens, data.tags_column: tags}, replaced_any


def read_jsonl(source: Source, data) -> Iterator[Record]:
    """Yield the objects of a JSON-lines file (or of a JSON array, for .json files)."""
    if source.format == "json" and _starts_with_bracket(source):
        yield from _read_json_array(source)
        return
    for number, text, replaced in iter_lines(source, data.encoding_errors):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{source.path}: line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise InputError(
                f"{source.path}: line {number}: expected a JSON object, got {type(obj).__name__}"
            )
        yield number, obj, replaced


def _starts_with_bracket(source: Source) -> bool:
    with open_binary(source) as handle:
        head = handle.read(SNIFF_BYTES)
    check_not_binary(source, head)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _read_json_array(source: Source) -> Iterator[Record]:
    # A JSON array has to be parsed whole; large corpora belong in .jsonl, which streams.
    with open_binary(source) as handle:
        raw = handle.read()
    try:
        items = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{source.path}: bytes that are not UTF-8 at byte offset {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source.path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    for index, obj in enumerate(items, start=1):
        if not isinstance(obj, dict):
            raise InputError(f"{source.path}: item {index}: expected a JSON object, got {type(obj).__name__}")
        yield index, obj, False


def read_csv(source: Source, data) -> Iterator[Record]:
    """Yield the rows of a CSV/TSV with a header line; a row with the wrong number of fields is an error."""
    delimiter = "\t" if source.format == "tsv" else ","
    state = {"line": 0, "replaced": False}

    def lines():
        for number, text, replaced in iter_lines(source, data.encoding_errors):
            state["line"], state["replaced"] = number, replaced
            yield text + "\n"

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{source.path}: file is empty") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # A dict of the row would keep only the last of the columns that share a name.
        raise InputError(
            f"{source.path}: line 1: the header names column {repeated[0]!r} {header.count(repeated[0])} times",
            "give every column its own name",
        )
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(
                f"{source.path}: line {state['line']}: {len(row)} fields where the header has {len(header)}",
                "fix the row (quote fields that contain the delimiter) or remove it",
            )
        yield state["line"], dict(zip(header, row, strict=True)), state["replaced"]


def read_parquet(source: Source, data) -> Iterator[Record]:
    """Yield the rows of a parquet file, batch by batch (bounded memory)."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(source.local)
    except Exception as exc:  # pyarrow raises ArrowInvalid for anything that is not parquet
        raise InputError(f"{source.path}: not a readable parquet file ({exc})") from None
    row = 0
    for batch in handle.iter_batches(batch_size=10_000):
        for obj in batch.to_pylist():
            row += 1
            yield row, obj, False


def read_arrow(source: Source, data) -> Iterator[Record]:
    """Yield the rows of a `save_to_disk` dataset (for a DatasetDict, of split `data.hub_split`)."""
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(source.local))
    except Exception as exc:
        raise InputError(f"{source.path}: not a readable save_to_disk dataset ({exc})") from None
    if isinstance(loaded, DatasetDict):
        if data.hub_split not in loaded:
            raise InputError(
                f"{source.path}: no split {data.hub_split!r}; it has: {', '.join(loaded)}",
                "set data.hub_split",
            )
        loaded = loaded[data.hub_split]
    yield from _iter_dataset(loaded)


def read_hub(source: Source, data) -> Iterator[Record]:
    """Yield the rows of one split of a Hub dataset (or local dataset repo), streamed; class ids become names."""
    from hfllm.data.hub import iter_rows

    for row, obj in iter_rows(source.hub, (data.label_column, data.tags_column)):
        yield row, obj, False


def _iter_dataset(dataset) -> Iterator[Record]:
    row = 0
    for batch in dataset.with_format("arrow").iter(batch_size=10_000):
        for obj in batch.to_pylist():
            row += 1
            yield row, obj, False


def columns_of(source: Source) -> list[str] | None:
    """Return the column names a tabular source declares up front (None: known only per record)."""
    if source.format == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(source.local).schema_arrow.names)
        except Exception as exc:
            raise InputError(f"{source.path}: not a readable parquet file ({exc})") from None
    return None


def read_stdlib(source: Source, data) -> Iterator[Record]:
    """Yield the Python standard library's source files (python:stdlib), one document per file."""
    from hfllm.data.code import read_stdlib as read

    yield from read(source, data)


READERS = {
    "stdlib": read_stdlib,
    "txt": read_txt,
    "conll": read_conll,
    "jsonl": read_jsonl,
    "json": read_jsonl,
    "csv": read_csv,
    "tsv": read_csv,
    "parquet": read_parquet,
    "arrow": read_arrow,
    "hub": read_hub,
}


def iter_records(source: Source, data) -> Iterator[Record]:
    """Yield (row, record, replaced) for every record of `source`."""
    yield from READERS[source.format](source, data)
