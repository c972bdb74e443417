"""Datasets named by the Hugging Face Hub (or a local dataset repo): early checks, then rows.

`data.hub: {path, name, revision, splits: {train: ..., validation: ..., test: ...}}` maps a dataset's own
splits to hfllm's. Everything that can fail without reading a row (no network, offline mode, a
configuration or split the dataset lacks) fails before any work, with a message saying what to do.
The network check itself (`hfllm.hub.check_hub_reachable`) is shared with the model loader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfllm.errors import InputError, first_line
from hfllm.hub import check_hub_reachable, hub_offline


@dataclass(frozen=True)
class HubRef:
    """One split of a dataset that `datasets.load_dataset` reads: a Hub name or a local dataset dir."""

    path: str
    split: str
    name: str | None = None
    revision: str | None = None
    data_files: Any = field(default=None, hash=False, compare=False)

    @property
    def local(self) -> Path | None:
        """Return the dataset's dir when `path` is a local one, else None (a Hub name)."""
        path = Path(self.path).expanduser()
        return path if path.is_dir() else None

    def label(self) -> str:
        """Return how messages name this input: `glue (sst2) [validation]`."""
        return f"{self.path}{f' ({self.name})' if self.name else ''} [{self.split}]"

    def key(self) -> dict[str, Any]:
        """Return what identifies this input in the manifest and the cache key."""
        return {"path": self.path, "name": self.name, "revision": self.revision, "split": self.split}


def refs_from_section(hub) -> list[tuple[str, HubRef]]:
    """Return (our split, HubRef) for each split a `data.hub` section maps, in train, validation, test order."""
    return [
        (ours, HubRef(hub.path, theirs, hub.name, hub.revision, hub.data_files))
        for ours, theirs in hub.splits.model_dump().items()
        if theirs is not None
    ]


def check_refs(refs: list[HubRef]) -> None:
    """Raise InputError unless every dataset can be opened now and has the configuration and splits named.

    Reads metadata only (no rows). A Hub name needs the network, or offline a copy in the datasets
    cache; a local dataset dir needs neither.
    """
    seen: dict[tuple, list[str]] = {}
    for ref in refs:
        key = (ref.path, ref.name, ref.revision)
        if key not in seen:
            seen[key] = _available_splits(ref)
        available = seen[key]
        if available and ref.split not in available:
            raise InputError(
                f"{ref.label()}: the dataset has no split {ref.split!r}; it has: {', '.join(available)}",
                "set data.hub.splits to the dataset's own split names",
            )


def _available_splits(ref: HubRef) -> list[str]:
    """Return the split names of the dataset configuration `ref` names ([] when it does not say)."""
    if ref.local is None and not hub_offline():
        check_hub_reachable(ref.path)
    from datasets import load_dataset_builder

    try:
        builder = load_dataset_builder(ref.path, ref.name, revision=ref.revision, data_files=ref.data_files)
    except Exception as exc:  # datasets raises many kinds; Interrupted (a BaseException) passes through
        raise _open_error(ref, exc) from None
    if builder.info.splits:
        return list(builder.info.splits)
    return list(builder.config.data_files or [])


def _open_error(ref: HubRef, exc: Exception) -> InputError:
    text = " ".join(str(exc).split())
    where = f"{ref.path}{f' ({ref.name})' if ref.name else ''}"
    if ref.local is None and hub_offline():
        return InputError(
            f"{where}: not a local dir, and offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) with no copy in the "
            f"datasets cache ({first_line(exc)})",
            "give a local dataset dir (datasets' save_to_disk or a dir of data files) in data.hub.path or "
            "data.files, or unset HF_HUB_OFFLINE on a machine that can reach the Hugging Face Hub",
        )
    if "config" in text.lower() and ("missing" in text.lower() or "not found" in text.lower()):
        return InputError(
            f"{where}: {text[:400]}", "set data.hub.name to one of the dataset's configurations"
        )
    return InputError(
        f"{where}: cannot open this dataset ({text[:400]})", "check data.hub.path and data.hub.name"
    )


def iter_rows(ref: HubRef, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield (row number, record) of one split, streamed; class-label ids in `columns` become their names."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(
            ref.path,
            ref.name,
            split=ref.split,
            revision=ref.revision,
            data_files=ref.data_files,
            streaming=True,
        )
    except Exception as exc:
        raise _open_error(ref, exc) from None
    names = _class_names(dataset.features, columns)
    for row, record in enumerate(dataset, start=1):
        for column, to_name in names.items():
            if column in record:
                record[column] = to_name(record[column])
        yield row, record


def _class_names(features, columns: tuple[str, ...]) -> dict[str, Any]:
    """Return {column: function turning class ids into names} for ClassLabel columns (and lists of them)."""
    from datasets import ClassLabel, List

    found = {}
    for column in columns:
        feature = (features or {}).get(column)
        inner = feature.feature if isinstance(feature, List) else None
        if isinstance(feature, ClassLabel):
            found[column] = lambda value, f=feature: f.int2str(value) if isinstance(value, int) else value
        elif isinstance(inner, ClassLabel):
            found[column] = lambda values, f=inner: [
                f.int2str(v) if isinstance(v, int) else v for v in values
            ]
    return found
