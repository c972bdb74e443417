"""Datasets named by the Hugging Face Hub (or a local dataset repo): reachability, early checks, rows.

`data.hub: {path, name, revision, splits: {train: ..., validation: ..., test: ...}}` maps a dataset's own
splits to hfllm's. Everything that can fail without reading a row (no network, offline mode, a
configuration or split the dataset lacks) fails before any work, with a message saying what to do.
`check_hub_reachable` is the one reachability check, for datasets here and for Hub models.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfllm.errors import InputError, first_line

REACH_SECONDS = 5.0  # one try, bounded: huggingface_hub's own retries take about 50 s without a network
TRUE = ("1", "ON", "YES", "TRUE")


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


def hub_offline() -> bool:
    """Return whether HF_HUB_OFFLINE or HF_DATASETS_OFFLINE asks for no network."""
    return any(os.environ.get(v, "").upper() in TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_endpoint() -> str:
    """Return the Hub's address (HF_ENDPOINT, or https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def check_hub_reachable(name: str, what: str = "dataset", timeout: float = REACH_SECONDS) -> None:
    """Return when the Hub answers within `timeout` seconds; otherwise raise InputError saying what to do.

    The Hub's front page answers 200; 401 (a private endpoint) counts too. Any other status comes
    from something in between (a proxy, a captive portal) and counts as unreachable. DNS lookups are
    bounded too, by running the request in a thread. Offline mode (HF_HUB_OFFLINE) is refused here
    as well: a Hub name cannot be fetched then.
    """
    if hub_offline():
        raise InputError(
            f"{what} {name!r} is not a local dir, and HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) is set",
            "give a local dir, or unset HF_HUB_OFFLINE on a machine that can reach the Hugging Face Hub",
        )
    endpoint = hub_endpoint()
    outcome: list[BaseException | None] = []

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError as exc:
            outcome.append(None if exc.code == 401 else ConnectionError(f"it answered HTTP {exc.code}"))
        except Exception as exc:  # URLError, timeouts, refused connections, bad addresses
            outcome.append(exc)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    thread.join(timeout)
    problem = outcome[0] if outcome else TimeoutError(f"no answer within {timeout:g} s")
    if problem is not None:
        reason = getattr(problem, "reason", problem)
        raise InputError(
            f"cannot reach the Hugging Face Hub at {endpoint} to fetch the {what} {name!r} ({reason})",
            "set HF_HUB_OFFLINE=1 and give a local dir, or check the network (and HF_ENDPOINT / HTTPS_PROXY)",
        )


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
