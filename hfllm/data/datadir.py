"""The data dir that `hfllm preprocess` writes and the training commands read.

Layout: the splits as `DatasetDict.save_to_disk` (dataset_dict.json, train/, validation/, test/),
`tokenizer/` (loads with AutoTokenizer.from_pretrained) and `manifest.json`, written last: a dir
without a complete manifest is an unfinished run and is never read as data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfllm.errors import InputError, first_line

MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
MANIFEST_FORMAT = 1


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Return a hash of what a fast tokenizer does (vocabulary, normalizer, special tokens).

    Padding and truncation settings are left out: they change with use, not with identity, and a
    tokenizer re-saved beside a model must keep the fingerprint of the one that tokenized the data.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


@dataclass
class DataDir:
    """A checked data dir: its manifest, and loaders for its tokenizer and splits."""

    path: Path
    manifest: dict[str, Any]

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_DIR

    def load_tokenizer(self):
        """Return the data's tokenizer; an unreadable tokenizer/ is an InputError naming it."""
        from hfllm.models.loader import load_tokenizer

        try:
            return load_tokenizer(str(self.tokenizer_path), key=str(self.tokenizer_path))
        except InputError as exc:
            raise InputError(
                f"{self.tokenizer_path}: cannot load the data's tokenizer ({exc.message})",
                "rerun `hfllm preprocess --force` for this data dir",
            ) from None

    def load_splits(self):
        """Return the DatasetDict (memory-mapped Arrow, nothing read into RAM).

        A missing, unreadable or empty (zero-shard) split is an InputError that names it.
        """
        from datasets import load_from_disk

        try:
            return load_from_disk(str(self.path))
        except Exception as exc:  # datasets and pyarrow raise many types (OSError, ArrowInvalid, KeyError...)
            _raise_for_bad_split(self.path)
            raise InputError(
                f"{self.path}: cannot read the splits ({type(exc).__name__}: {first_line(exc)})",
                "rerun `hfllm preprocess --force` for this data dir",
            ) from None

    @property
    def label2id(self) -> dict[str, int] | None:
        return self.manifest.get("label2id")


def open_data_dir(path: Path, check_tokenizer: bool = True) -> DataDir:
    """Return the DataDir at `path` after checking it is complete and its tokenizer is the one recorded."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{path} is a file, not a data dir", "give the directory that `hfllm preprocess` wrote"
        )
    if not path.is_dir():
        raise InputError(
            f"data dir not found: {path}", "create it with `hfllm preprocess --config FILE --output-dir DIR`"
        )
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise InputError(
            f"{path} is not a finished hfllm data dir (no {MANIFEST})",
            "run `hfllm preprocess` to completion for this directory",
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{manifest_path}: unreadable manifest ({exc}); rerun `hfllm preprocess --force`"
        ) from None
    if not isinstance(manifest, dict):
        raise InputError(
            f"{manifest_path}: a manifest is a JSON object, not {type(manifest).__name__}; "
            "rerun `hfllm preprocess --force`"
        )
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(
            f"{manifest_path}: written by an incompatible hfllm (format {manifest.get('format')!r})"
        )
    data = DataDir(path, manifest)
    if check_tokenizer:
        if not data.tokenizer_path.is_dir():
            raise InputError(f"{path}: no {TOKENIZER_DIR}/ beside the data; rerun `hfllm preprocess --force`")
        info = manifest.get("tokenizer")
        recorded = info.get("fingerprint") if isinstance(info, dict) else None
        actual = tokenizer_fingerprint(data.load_tokenizer())
        if recorded != actual:
            raise InputError(
                f"{data.tokenizer_path}: tokenizer changed since the data was tokenized "
                f"(fingerprint {actual[:12]} != manifest {str(recorded)[:12]})",
                "rerun `hfllm preprocess --force` so data and tokenizer match",
            )
    return data


def _raise_for_bad_split(path: Path) -> None:
    """Raise InputError naming the first split of dataset_dict.json that is empty, missing or unreadable."""
    from datasets import Dataset

    again = "rerun `hfllm preprocess --force` for this data dir"
    # datasets cannot load a split saved with zero rows (it has no shard); name the problem instead.
    for split_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        if (split_dir / "state.json").exists() and not list(split_dir.glob("*.arrow")):
            raise InputError(
                f"{path}: the {split_dir.name} split is empty",
                "give preprocess more text, or a smaller validation/test share",
            )
    try:
        names = [
            str(n) for n in json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{path / 'dataset_dict.json'}: missing or unreadable (it lists the splits)", again
        ) from None
    for name in names:
        if not (path / name).is_dir():
            raise InputError(
                f"{path / name}: the {name} split is missing (dataset_dict.json lists it)", again
            )
        try:
            Dataset.load_from_disk(str(path / name))
        except Exception as exc:
            raise InputError(
                f"{path / name}: the {name} split is unreadable (truncated or corrupt: {first_line(exc)})",
                again,
            ) from None
