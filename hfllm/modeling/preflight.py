"""Checks run before training: data, tokenizer and model must fit together (each failure exits 3)."""

from __future__ import annotations

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


def check_tokenizer_match(
    model_fingerprint: str, data_fingerprint: str | None, model_source: str, data_dir: str
):
    """Raise InputError when the model's tokenizer is not the one that tokenized the data."""
    if data_fingerprint != model_fingerprint:
        raise InputError(
            f"{data_dir}: data was tokenized with another tokenizer than the model's ({model_source}) "
            f"(fingerprint {str(data_fingerprint)[:12]} != {model_fingerprint[:12]})",
            f"preprocess the corpus with the model's tokenizer: set tokenizer.name_or_path: {model_source}",
        )


def load_splits(data: Any) -> Any:
    """Return the data dir's splits; an unreadable or empty (zero-shard) split becomes an InputError."""
    try:
        return data.load_splits()
    except (IndexError, ValueError, FileNotFoundError, OSError) as exc:
        # datasets cannot load a split saved with zero rows (it has no shard); name the problem instead.
        for split_dir in sorted(p for p in data.path.iterdir() if p.is_dir()):
            if (split_dir / "state.json").exists() and not list(split_dir.glob("*.arrow")):
                raise InputError(
                    f"{data.path}: the {split_dir.name} split is empty",
                    "give preprocess more text, or a smaller validation/test share",
                ) from None
        raise InputError(
            f"{data.path}: cannot read the splits ({type(exc).__name__}: {exc})",
            "rerun `hfllm preprocess --force` for this data dir",
        ) from None


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


def check_fits_model(
    splits: Any, embedding_rows: int, max_positions: int | None, data_dir: str
) -> dict[str, int]:
    """Raise InputError for token ids beyond the embedding matrix or rows longer than the positions.

    Returns the largest token id and row length seen over all splits.
    """
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
