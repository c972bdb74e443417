"""Checks run before training: data, tokenizer and model must fit together (each failure exits 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hfllm.errors import InputError


def column_stats(dataset: Any, column: str = "input_ids") -> dict[str, int]:
    """Return the largest token id and the longest row of a list column, read from Arrow without copying."""
    import pyarrow.compute as pc

    values = dataset.data.table.column(column)
    if len(values) == 0:
        return {"max_id": -1, "max_length": 0}
    return {
        "max_id": int(pc.max(pc.list_flatten(values)).as_py()),
        "max_length": int(pc.max(pc.list_value_length(values)).as_py()),
    }


def check_same_tokenizer(tokenizer: Any, data: Any, model_name: str) -> None:
    """Raise InputError when `data` (a DataDir) was tokenized with another tokenizer than `tokenizer`."""
    from hfllm.data.datadir import tokenizer_fingerprint

    recorded = (data.manifest.get("tokenizer") or {}).get("fingerprint")
    check_tokenizer_match(tokenizer_fingerprint(tokenizer), recorded, model_name, str(data.path))


def check_tokenizer_match(
    model_fingerprint: str, data_fingerprint: str | None, model_name: str, data_dir: str
):
    """Raise InputError when the model's tokenizer (by fingerprint) is not the one that tokenized the data."""
    if data_fingerprint != model_fingerprint:
        raise InputError(
            f"{data_dir}: data was tokenized with another tokenizer than the model's ({model_name}) "
            f"(fingerprint {str(data_fingerprint)[:12]} != {model_fingerprint[:12]})",
            f"preprocess the corpus with the model's tokenizer: set tokenizer.name_or_path: {model_name}",
        )


def load_splits(data: Any) -> Any:
    """Return the data dir's splits (DataDir.load_splits: a missing, unreadable or empty split is an InputError)."""
    return data.load_splits()


def pretraining_data(data_dir: str, objective: str, columns: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """Return (DataDir, splits) of a pretraining data dir built for `objective`, each split cut to `columns`."""
    from hfllm.data.datadir import open_data_dir
    from hfllm.data.objective import check_objective

    data = open_data_dir(Path(data_dir))
    check_objective(data, objective)
    splits = load_splits(data)
    check_splits(splits, str(data.path))
    return data, {
        name: s.select_columns([c for c in columns if c in s.column_names]) for name, s in splits.items()
    }


SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # the format's own limit on the JSON header


def check_safetensors(file: Path) -> None:
    """Raise InputError unless `file` is a complete safetensors file (header readable, data all there).

    Reads only the header, without torch: a truncated or foreign file is named before any model code runs.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = handle.read(length) if 0 < length <= min(SAFETENSORS_HEADER_LIMIT, size - 8) else b""
    try:
        tensors = json.loads(header.decode("utf-8")) if header else None
        end = max((int(t["data_offsets"][1]) for k, t in tensors.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        tensors = None
    if tensors is None:
        raise InputError(
            f"{file}: not a readable safetensors file (corrupt or truncated header)",
            "save the model again (save_pretrained), or copy the file again",
        )
    if 8 + length + end != size:
        raise InputError(
            f"{file}: truncated or corrupt safetensors file ({size} bytes; its header says "
            f"{8 + length + end})",
            "save the model again (save_pretrained), or copy the file again",
        )


def check_weights(model_dir: Path) -> None:
    """Raise InputError when a safetensors file of a model dir is truncated or corrupt."""
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        check_safetensors(file)


def check_splits(splits: Any, data_dir: str) -> None:
    """Raise InputError when the train split is missing or empty, or a split lacks input_ids."""
    if "train" not in splits or len(splits["train"]) == 0:
        raise InputError(
            f"{data_dir}: the train split is empty",
            "give preprocess more text, or a smaller validation share",
        )
    for name, split in splits.items():
        if "input_ids" not in split.column_names:
            raise InputError(f"{data_dir}/{name}: no `input_ids` column; is this a data dir for pretraining?")


def check_fits_model(splits: Any, model: Any, data_dir: str) -> dict[str, int]:
    """Return the largest token id and row length over all splits, after raising InputError for token ids
    beyond the model's embedding matrix or rows longer than its position embeddings."""
    from hfllm.models.builders import position_offset

    positions = getattr(model.config, "max_position_embeddings", None)
    usable = positions - position_offset(model.config) if positions else None
    return check_fits(splits, model.get_input_embeddings().num_embeddings, usable, data_dir)


def check_fits(splits: Any, embedding_rows: int, max_positions: int | None, data_dir: str) -> dict[str, int]:
    """Return the largest token id and row length seen over all splits (InputError when they do not fit)."""
    seen = {"max_id": -1, "max_length": 0}
    for name, split in splits.items():
        stats = column_stats(split)
        if stats["max_id"] >= embedding_rows:
            raise InputError(
                f"{data_dir}/{name}: token id {stats['max_id']} >= the model's {embedding_rows} embedding rows",
                "the data was tokenized with a bigger vocabulary than the model's; preprocess with the model's tokenizer",
            )
        if max_positions is not None and stats["max_length"] > max_positions:
            raise InputError(
                f"{data_dir}/{name}: rows of {stats['max_length']} tokens exceed the model's "
                f"{max_positions} position embeddings",
                f"preprocess with max_length <= {max_positions}",
            )
        seen = {key: max(seen[key], stats[key]) for key in seen}
    return seen
