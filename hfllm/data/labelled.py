"""The labelled data of a fine-tuning run: a supervised data dir, or raw files preprocessed on the spot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.data.datadir import DataDir, open_data_dir
from hfllm.errors import ConfigError, InputError
from hfllm.output import log
from hfllm.tasks.names import REGRESSION, TOKEN, problem_type_from_feature


def preprocess_config(config: Any, model_source: str, output_dir: Path) -> dict[str, Any]:
    """Return the `hfllm preprocess` config (as a mapping) that tokenizes raw files with the model's tokenizer."""
    data = config.data
    mapping: dict[str, Any] = {
        "kind": "preprocess",
        "task": config.task,
        "output_dir": str(output_dir),
        "data": {
            "files": list(data.files),
            "text_column": data.text_column,
            "label_column": data.label_column,
        },
        "tokenizer": {"name_or_path": model_source},
        "packing": {"mode": "supervised", "max_length": data.max_length},
    }
    if data.text_pair_column:
        mapping["data"]["text_pair_column"] = data.text_pair_column
    if config.task == TOKEN and config.label_all_tokens:
        mapping["packing"]["label_all_tokens"] = True
    if config.problem_type:
        mapping["problem_type"] = config.problem_type
    return _merge(mapping, data.preprocess)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def preprocess_raw_files(config: Any, model_source: str, output_dir: Path) -> DataDir:
    """Return the data dir made from `data.files` with the model's tokenizer (reused when already complete)."""
    from hfllm.config import validate_config
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.pipeline import run_preprocess

    mapping = preprocess_config(config, model_source, output_dir)
    pre_config = validate_config(PreprocessConfig, mapping, {}, "finetune data.files (preprocess settings)")
    log.info(
        "preprocessing %d raw file(s) with the model's tokenizer into %s", len(config.data.files), output_dir
    )
    run_preprocess(pre_config, force=False)
    return open_data_dir(output_dir)


def open_or_preprocess(config: Any, model_source: str) -> DataDir:
    """Return the data dir of a finetune config: its `data.dir`, or its raw files preprocessed with the
    model's tokenizer into <output_dir>/data/ (reused when up to date)."""
    if config.data.dir:
        return open_data_dir(Path(config.data.dir))
    return preprocess_raw_files(config, model_source, Path(config.output_dir) / "data")


def load(config: Any, model_source: str, tokenizer: Any) -> tuple[DataDir, Any]:
    """Return (data dir, splits) of a classification finetune, checked for the task and the tokenizer."""
    from hfllm.models.preflight import check_same_tokenizer

    data = open_or_preprocess(config, model_source)
    splits = data.load_splits()
    check_supervised(data, splits, config.task)
    check_same_tokenizer(tokenizer, data, config.model.name_or_path)
    return data, splits


def check_supervised(data: DataDir, splits: Any, task: str) -> None:
    """Raise InputError unless the data dir holds labelled data for `task`."""
    if "train" not in splits or len(splits["train"]) == 0:
        raise InputError(f"{data.path}: the train split is missing or empty")
    missing = [name for name, split in splits.items() if "labels" not in split.column_names]
    if missing:
        raise InputError(
            f"{data.path}: no `labels` column in split(s) {', '.join(missing)}: this data dir has no labels "
            f"(packing mode {data.manifest.get('mode') or data.manifest.get('packing', {}).get('mode')!r})",
            "preprocess labelled data with packing.mode: supervised and data.label_column, then finetune on it",
        )
    recorded = data.manifest.get("task")
    if recorded and recorded != task:
        raise InputError(
            f"{data.path}: the data was preprocessed for {recorded}, not {task}", f"set task: {recorded}"
        )


def resolve_problem_type(config: Any, data: DataDir, splits: Any) -> str | None:
    """Return the problem type: the config's, else the manifest's, else guessed from the labels column."""
    if config.task == TOKEN:
        return None
    recorded = data.manifest.get("problem_type")
    guessed = problem_type_from_feature(splits["train"].features["labels"])
    chosen = config.problem_type or recorded or guessed
    if config.problem_type and recorded and config.problem_type != recorded:
        raise ConfigError(
            f"problem_type: {config.problem_type} differs from the data's {recorded} ({data.path}/manifest.json)",
            "remove problem_type from the config to use the data's",
        )
    return chosen


def label_maps(
    data: DataDir, problem_type: str | None
) -> tuple[dict[str, int] | None, dict[int, str] | None]:
    """Return (label2id, id2label) from the manifest; None for regression."""
    if problem_type == REGRESSION:
        return None, None
    label2id = data.label2id
    if not label2id:
        raise InputError(
            f"{data.path}/manifest.json: no label2id; rerun `hfllm preprocess` in supervised mode"
        )
    label2id = {str(k): int(v) for k, v in label2id.items()}
    return label2id, {v: k for k, v in label2id.items()}


def class_weights(train: Any, num_labels: int, setting: Any, task: str) -> list[float] | None:
    """Return per-class loss weights: None, the given list, or `balanced` = n / (k * count)."""
    if setting == "none":
        return None
    if isinstance(setting, list):
        if len(setting) != num_labels:
            raise ConfigError(f"class_weights: {len(setting)} weights for {num_labels} labels")
        return [float(w) for w in setting]
    import numpy as np

    labels = train.data.table.column("labels").combine_chunks()
    if task == TOKEN:
        labels = labels.flatten()
    values = np.asarray(labels.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = values[values >= 0]
    counts = np.bincount(values, minlength=num_labels).astype(np.float64)
    return [float(len(values) / (num_labels * c)) if c else 0.0 for c in counts]


def evaluation_split(
    files: list[str], read: Any, tokenizer: Any, model_dir: Path, model_config: Any, task: str, work: Path
) -> tuple[Any, dict[str, Any]]:
    """Return (Dataset, manifest) of raw labelled files for evaluating a model: read and tokenized by the
    preprocess pipeline with the model's tokenizer, its label map (a label outside it is refused, naming
    the row; classes the files lack are fine) and its training-time cleaning (model/cleaning.json). Every
    row is kept (no de-duplication or length filters; rows left without text are dropped and counted)."""
    from hfllm.config import validate_config
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.cleaning import recorded_cleaning
    from hfllm.data.pipeline import Timer, build
    from hfllm.data.sources import resolve_sources
    from hfllm.tasks.names import problem_type_of

    problem_type = problem_type_of(model_config) if task != TOKEN else None
    label2id = (
        None if problem_type == REGRESSION else {str(n): int(i) for i, n in model_config.id2label.items()}
    )
    columns = ("format", "text_column", "text_pair_column", "label_column", "label_separator")
    data = {"files": list(files), **{k: getattr(read, k) for k in (*columns, "tokens_column", "tags_column")}}
    mapping: dict[str, Any] = {
        "kind": "preprocess",
        "task": task,
        "data": data,
        "clean": _evaluation_cleaning(recorded_cleaning(model_dir)),
        "split": {"validation": 0, "test": 0},
        "tokenizer": {"name_or_path": str(model_dir)},
        "packing": {
            "mode": "supervised",
            "max_length": read.max_length or _trained_length(tokenizer, model_config),
        },
    }
    if problem_type:
        mapping["problem_type"] = problem_type
    config = validate_config(PreprocessConfig, mapping, {}, "evaluate --data (raw files)")
    sources = resolve_sources(config.data, work / "stdin")
    splits, manifest, _ = build(config, sources, work, Timer(), tokenizer=tokenizer, label2id=label2id)
    dropped = {k: v for k, v in manifest["counts"].get("dropped", {}).items() if v}
    if dropped:
        log.warning("rows not evaluated: %s", ", ".join(f"{v} {k}" for k, v in dropped.items()))
    return splits["train"], manifest


def _evaluation_cleaning(recorded: Any) -> dict[str, Any]:
    """Return the preprocess `clean:` of evaluation files: the model's text steps, no filters."""
    steps = (
        recorded.model_dump()
        if recorded is not None
        else {
            "html": False,
            "unicode_normalization": "none",
            "remove_control": False,
            "replace_urls": None,
            "replace_emails": None,
            "lowercase": False,
            "collapse_whitespace": False,
        }
    )
    return {**steps, "min_chars": 1, "max_chars": None, "min_words": 0, "max_words": None, "dedup": False}


def _trained_length(tokenizer: Any, model_config: Any) -> int:
    """Return the length the model was trained on (its tokenizer's model_max_length, set at export),
    within its position embeddings."""
    positions = getattr(model_config, "max_position_embeddings", None) or 512
    limit = (
        tokenizer.model_max_length
        if tokenizer.model_max_length and tokenizer.model_max_length < 10**6
        else positions
    )
    return max(8, min(limit, positions))
