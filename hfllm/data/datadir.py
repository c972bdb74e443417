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

from hfllm.errors import InputError

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
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.tokenizer_path))

    def load_splits(self):
        """Return the DatasetDict (memory-mapped Arrow, nothing read into RAM)."""
        from datasets import load_from_disk

        return load_from_disk(str(self.path))

    @property
    def label2id(self) -> dict[str, int] | None:
        return self.manifest.get("label2id")


def open_data_dir(path: Path, check_tokenizer: bool = True) -> DataDir:
    """Return the DataDir at `path` after checking it is complete and its tokenizer is the one recorded."""
    path = Path(path)
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
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(
            f"{manifest_path}: written by an incompatible hfllm (format {manifest.get('format')!r})"
        )
    data = DataDir(path, manifest)
    if check_tokenizer:
        if not data.tokenizer_path.is_dir():
            raise InputError(f"{path}: no {TOKENIZER_DIR}/ beside the data; rerun `hfllm preprocess --force`")
        recorded = manifest.get("tokenizer", {}).get("fingerprint")
        actual = tokenizer_fingerprint(data.load_tokenizer())
        if recorded != actual:
            raise InputError(
                f"{data.tokenizer_path}: tokenizer changed since the data was tokenized "
                f"(fingerprint {actual[:12]} != manifest {str(recorded)[:12]})",
                "rerun `hfllm preprocess --force` so data and tokenizer match",
            )
    return data
