"""Read every input into one Arrow file on disk (bounded memory), checking columns and labels as it goes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfllm.data.instruct import MESSAGES, record_messages
from hfllm.data.readers import iter_records
from hfllm.data.sources import SPLITS, Source
from hfllm.errors import InputError
from hfllm.output import log, progress

WRITE_BATCH = 10_000
SPLIT_CODE = {None: -1, **{name: i for i, name in enumerate(SPLITS)}}


@dataclass
class Columns:
    """Which record keys a run needs, and what it writes for them."""

    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    tokens: str | None = None
    tags: str | None = None
    label_separator: str | None = None
    numeric_label: bool = False  # problem_type regression: every label must be a number
    single_label: bool = False  # problem_type single-label or regression: a list is not a label
    chat: Any = None  # task causal-lm: the data section that names the chat columns; stored as `messages`

    def needed(self) -> list[str]:
        return [c for c in (self.text, self.text_pair, self.label, self.tokens, self.tags) if c]


@dataclass
class IngestStats:
    """What reading found: documents per input, and the kinds of label values seen (with the first
    place and value of each kind, for messages)."""

    documents: list[int] = field(default_factory=list)
    label_kinds: set[str] = field(default_factory=set)
    first_of_kind: dict[str, tuple[str, str]] = field(default_factory=dict)
    kind_counts: dict[str, int] = field(default_factory=dict)

    def check_label_kinds(self, column: str) -> None:
        """Raise InputError when labels mix lists with single values, or class names with numbers."""
        kinds = self.label_kinds
        clash = (
            ("list", next(k for k in ("str", "int", "float") if k in kinds)) if "list" in kinds and len(kinds) > 1
            else ("str", "float" if "float" in kinds else "int") if "str" in kinds and kinds & {"int", "float"}
            else None
        )  # fmt: skip
        if clash is None:
            return
        shown = "; ".join(
            f"{self.kind_counts[k]} {_KIND_NAMES[k]} (first at {self.first_of_kind[k][0]}: {self.first_of_kind[k][1]})"
            for k in clash
        )
        raise InputError(
            f"labels in column {column!r} mix kinds: {shown}",
            "make every label the same kind (all names, all numbers, or all lists), or set problem_type",
        )


_KIND_NAMES = {"list": "lists", "str": "names", "int": "integers", "float": "fractional numbers"}


def columns_for(config) -> Columns:
    """Return the columns the config's mode and task need."""
    data = config.data
    if config.task == "causal-lm":
        return Columns(chat=data)
    if config.task == "token-classification":
        return Columns(tokens=data.tokens_column, tags=data.tags_column)
    label = data.label_column if config.task == "sequence-classification" else None
    numeric = label is not None and config.problem_type == "regression"
    single = label is not None and config.problem_type in ("regression", "single_label_classification")
    return Columns(
        data.text_column,
        data.text_pair_column,
        label,
        label_separator=data.label_separator,
        numeric_label=numeric,
        single_label=single,
    )


def features_for(cols: Columns):
    """Return the datasets Features of the ingested table."""
    from datasets import Features, Sequence, Value

    spec = {
        "_file": Value("int32"),
        "_row": Value("int64"),
        "_split": Value("int8"),
        "_replaced": Value("bool"),
    }
    for name in (cols.text, cols.text_pair, cols.label):
        if name:
            spec[name] = Value("string")
    for name in (cols.tokens, cols.tags):
        if name:
            spec[name] = Sequence(Value("string"))
    if cols.chat is not None:
        spec[MESSAGES] = Value("string")
    return Features(spec)


def ingest(sources: list[Source], data, cols: Columns, path: Path):
    """Write every record of `sources` to an Arrow file at `path`; return (Dataset, IngestStats)."""
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    stats = IngestStats()
    features = features_for(cols)
    writer = ArrowWriter(features=features, path=str(path))
    batch: dict[str, list] = {name: [] for name in features}
    bar = progress(None, "reading")
    try:
        for index, source in enumerate(sources):
            count = 0
            for row, record, replaced in iter_records(source, data):
                _append(batch, record, cols, source, row, stats)
                batch["_file"].append(index)
                batch["_row"].append(row)
                batch["_split"].append(SPLIT_CODE[source.split])
                batch["_replaced"].append(replaced)
                count += 1
                if len(batch["_file"]) >= WRITE_BATCH:
                    writer.write_batch(batch)
                    bar.update(len(batch["_file"]))
                    batch = {name: [] for name in features}
            if count == 0:
                raise InputError(
                    f"{source.path}: no documents in this input", "check data.txt_mode and the file"
                )
            stats.documents.append(count)
            log.info("read %d documents from %s", count, source.path)
        if batch["_file"]:
            writer.write_batch(batch)
            bar.update(len(batch["_file"]))
        writer.finalize()
    finally:
        writer.close()
        bar.close()
    return Dataset.from_file(str(path)), stats


def row_place(source: Source, row: int) -> str:
    """Return where a record came from, for messages: `file: line N` (or `row N`)."""
    if source.format == "stdlib":
        return f"{source.path}: file {source.files[row - 1]}"
    unit = "line" if source.format in ("txt", "jsonl", "csv", "tsv", "conll") else "row"
    return f"{source.path}: {unit} {row}"


def _append(
    batch: dict[str, list], record: dict, cols: Columns, source: Source, row: int, stats: IngestStats
):
    if cols.chat is not None:
        try:
            batch[MESSAGES].append(json.dumps(record_messages(record, cols.chat), ensure_ascii=False))
        except ValueError as exc:
            raise InputError(
                f"{row_place(source, row)}: {exc}",
                "give `prompt` and `response` strings, or `messages`: a list of {role, content} "
                "(data.prompt_column / response_column / messages_column name the columns)",
            ) from None
        return
    missing = [c for c in cols.needed() if c not in record]
    if missing:
        raise InputError(
            f"{row_place(source, row)}: no column {missing[0]!r}; the columns are: {', '.join(map(str, record)) or '(none)'}",
            "set data.text_column / data.label_column / data.tokens_column to one of them",
        )
    for name in (cols.text, cols.text_pair):
        if name:
            value = record[name]
            batch[name].append("" if value is None else value if isinstance(value, str) else str(value))
    if cols.label:
        batch[cols.label].append(_label_text(record[cols.label], cols, source, row, stats))
    if cols.tokens:
        tokens, tags = record[cols.tokens], record[cols.tags]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise InputError(f"{row_place(source, row)}: {cols.tokens!r} and {cols.tags!r} must be lists")
        if len(tokens) != len(tags):
            raise InputError(
                f"{row_place(source, row)}: {len(tokens)} tokens but {len(tags)} tags",
                "give one tag per token",
            )
        if any(t is None for t in tags):
            raise InputError(f"{row_place(source, row)}: a tag is missing (null)")
        batch[cols.tokens].append([str(t) for t in tokens])
        batch[cols.tags].append([str(t) for t in tags])


def _label_text(value, cols: Columns, source: Source, row: int, stats: IngestStats) -> str:
    """Return a label as text (lists as JSON), recording its kind; a missing label names file and row."""
    if (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    ):
        raise InputError(
            f"{row_place(source, row)}: missing label (column {cols.label!r})",
            "give every row a label, or remove the unlabelled rows",
        )
    if isinstance(value, dict):
        raise InputError(
            f"{row_place(source, row)}: label {json.dumps(value)[:60]} (column {cols.label!r}) is a JSON object",
            "give one class name or number per row (a list for multi-label data)",
        )
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        raise InputError(
            f"{row_place(source, row)}: label {json.dumps(value)[:60]} (column {cols.label!r}) nests lists or objects",
            "a multi-label row is a flat list of class names",
        )
    text, kind = _label_and_kind(value, cols)
    if kind == "list" and cols.single_label:
        raise InputError(
            f"{row_place(source, row)}: label {text[:60]} (column {cols.label!r}) is a list, but problem_type "
            "expects one label per row",
            "give one label per row, or set problem_type: multi_label_classification",
        )
    if cols.numeric_label and kind not in ("int", "float"):
        # Found here, the row is known; found later (when labels are encoded) it would not be.
        raise InputError(
            f"{row_place(source, row)}: label {value!r} (column {cols.label!r}) is not a number, "
            "but problem_type is regression",
            "fix the label, or set problem_type to a classification type",
        )
    stats.label_kinds.add(kind)
    stats.first_of_kind.setdefault(kind, (row_place(source, row), text[:40]))
    stats.kind_counts[kind] = stats.kind_counts.get(kind, 0) + 1
    return text


def _label_and_kind(value, cols: Columns) -> tuple[str, str]:
    if isinstance(value, list):
        return json.dumps([str(v) for v in value]), "list"
    if isinstance(value, bool):
        return str(value).lower(), "str"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, float):
        return (str(int(value)), "int") if value.is_integer() else (repr(value), "float")
    text = str(value).strip()
    if cols.label_separator:
        return json.dumps([part.strip() for part in text.split(cols.label_separator) if part.strip()]), "list"
    return text, _kind_of_text(text)


def _kind_of_text(text: str) -> str:
    # CSV labels arrive as text: "3" is an integer class, "0.75" a regression target, "sports" a name.
    try:
        int(text)
        return "int"
    except ValueError:
        pass
    try:
        float(text)
        return "float"
    except ValueError:
        return "str"
