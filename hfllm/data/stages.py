"""The steps of a preprocess run between reading and saving, each on Arrow files in a scratch dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hfllm.data import cleaning, instruct, packing, supervised
from hfllm.data.causal import text_prefix
from hfllm.data.ingest import Columns
from hfllm.data.parallel import map_arrow
from hfllm.data.sources import SPLITS
from hfllm.data.splits import assign_splits, check_train, keep_mask
from hfllm.errors import InputError
from hfllm.output import log

TOKENIZE_BATCH = 8192


def workers(config, rows: int) -> int:
    """Return how many processes to use: the config's num_proc (all cores, at most 8), never more than batches."""
    wanted = config.num_proc or min(os.cpu_count() or 1, 8)
    return max(1, min(wanted, rows // config.batch_size))


def threads(config) -> int:
    """Return how many threads the Rust tokenizer may use (num_proc, like the processes of cleaning)."""
    return config.num_proc or min(os.cpu_count() or 1, 8)


def _tokenize_map(ds, fn, config, work: Path, name: str, **kwargs):
    """Return `ds.map(fn)` in this process, on big batches, into an Arrow file in `work`.

    The Rust tokenizer spreads each batch over num_proc threads, which beats forking workers that
    pickle the tokenizer and write shards to merge (measured with bench/preprocess.py). The explicit
    fingerprint and file name stop datasets from hashing the function (a whole tokenizer) to look
    for a cache it could reuse from another run.
    """
    return ds.map(
        fn,
        batched=True,
        batch_size=max(config.batch_size, TOKENIZE_BATCH),
        cache_file_name=str(work / f"{name}.arrow"),
        new_fingerprint=f"hfllm-{name}-{os.getpid()}",
        desc=name,
        **kwargs,
    )


def clean(raw, config, cols: Columns, work: Path):
    """Return the cleaned dataset (with `_changed`, `_drop`, `_hash`) and the per-step change counts."""
    from datasets import Value

    if cols.chat is not None:
        # Chats are kept as written: responses are often code, where whitespace is meaning.
        fn, kwargs = instruct.check_messages_batch, {}
    elif cols.tokens:
        fn, kwargs = cleaning.check_tokens_batch, {"tokens_column": cols.tokens, "tags_column": cols.tags}
    else:
        fn = cleaning.clean_batch
        kwargs = {"clean": config.clean, "text_column": cols.text, "pair_column": cols.text_pair}
    features = raw.features.copy()
    features.update({"_changed": Value("int32"), "_drop": Value("int8"), "_hash": Value("int64")})
    source = Path(raw.cache_files[0]["filename"])
    processes = workers(config, len(raw))
    cleaned = map_arrow(source, fn, kwargs, features, processes, work, "clean", config.batch_size)
    changed = cleaning.count_steps(cleaned.data.column("_changed").to_numpy())
    replaced = changed.pop("decode_replaced")
    return cleaned, changed, replaced


def split(cleaned, config, sources) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return the row indices of each split and the counts of documents dropped and kept."""
    drop = cleaned.data.column("_drop").to_numpy()
    dropped = cleaning.count_drops(drop)
    keep, duplicates = keep_mask(drop, cleaned.data.column("_hash").to_numpy(), config.clean.dedup)
    dropped["duplicate"] = duplicates
    kept = int(keep.sum())
    if kept == 0:
        names = ", ".join(s.path for s in sources[:3]) + ("..." if len(sources) > 3 else "")
        raise InputError(
            f"{names}: no documents left after cleaning ({len(drop)} read; dropped: "
            + ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
            + ")",
            "check data.text_column and relax clean.min_chars / min_words / max_* filters",
        )
    given = cleaned.data.column("_split").to_numpy()
    kept_per_input = np.bincount(cleaned.data.column("_file").to_numpy()[keep], minlength=len(sources))
    _check_inputs_kept(sources, kept_per_input)
    splits = assign_splits(keep, given, config.split.validation, config.split.test, config.split.seed)
    check_train(splits, kept)
    counts = {"documents_read": len(drop), "dropped": dropped, "documents_kept": kept}
    counts["kept_per_input"] = kept_per_input.tolist()
    counts["documents_by_split"] = {name: len(splits[name]) for name in SPLITS}
    return splits, counts


def _check_inputs_kept(sources, kept_per_input: np.ndarray) -> None:
    """Warn about an input that cleaning emptied; fail when that leaves a given split with nothing."""
    for split_name in SPLITS:
        named = [i for i, s in enumerate(sources) if s.split == split_name]
        if named and kept_per_input[named].sum() == 0:
            files = ", ".join(sources[i].path for i in named)
            raise InputError(
                f"{files}: no documents left after cleaning for the {split_name} split",
                "check the file, data.text_column, and the clean.* filters",
            )
    for source, kept in zip(sources, kept_per_input, strict=True):
        if kept == 0:
            log.warning("%s: every document was dropped by cleaning or de-duplication", source.path)


def training_texts(train_ds, cols: Columns, batch_size: int = 1000):
    """Yield batches of train-split text for the tokenizer trainer (pre-split words joined by spaces)."""
    if cols.chat is not None:
        for table in (
            train_ds.select_columns([instruct.MESSAGES]).with_format("arrow").iter(batch_size=batch_size)
        ):
            yield instruct.training_texts(table.column(0).to_pylist())
        return
    column = cols.tokens or cols.text
    for table in train_ds.select_columns([column]).with_format("arrow").iter(batch_size=batch_size):
        values = table.column(0).to_pylist()
        yield [" ".join(v) for v in values] if cols.tokens else values
    if cols.text_pair:
        for table in (
            train_ds.select_columns([cols.text_pair]).with_format("arrow").iter(batch_size=batch_size)
        ):
            yield table.column(0).to_pylist()


def pack_group(ds, tokenizer, config, cols: Columns, work: Path, name: str):
    """Return the split as max_length blocks and its counts (tokens = in blocks + dropped)."""
    prefix, suffix, separator = packing.special_ids(tokenizer)
    doc_prefix: list[int] = []
    if config.objective == "causal":
        # A stream of documents, each ending with EOS, cut anywhere: no [CLS]/[SEP] framing per block.
        prefix, suffix, separator, doc_prefix = [], [], [tokenizer.eos_token_id], text_prefix(tokenizer)
    packer = packing.BlockPacker(
        config.packing.max_length, prefix, suffix, separator, tokenizer.unk_token_id, doc_prefix
    )
    blocks = packing.group_blocks(
        ds.select_columns([cols.text]),
        tokenizer.backend_tokenizer.to_str(),
        packer,
        keep_remainder=config.packing.remainder == "keep",
        path=work / f"blocks-{name}.arrow",
        batch_size=max(config.batch_size, TOKENIZE_BATCH),
        desc=f"tokenize+pack {name}",
    )
    return blocks, packer.counts


def pack_line(ds, tokenizer, config, cols: Columns, work: Path, name: str):
    """Return one truncated example per document and its counts (tokens = kept + truncated)."""
    spec = tokenizer.backend_tokenizer.to_str()
    prefix, suffix, _ = packing.special_ids(tokenizer)
    if config.objective == "causal":
        prefix, suffix = text_prefix(tokenizer), [tokenizer.eos_token_id]
    texts = ds.select_columns([cols.text]).with_format("arrow")
    kwargs = {
        "spec": spec,
        "column": cols.text,
        "max_length": config.packing.max_length,
        "prefix": prefix,
        "suffix": suffix,
    }
    lines = _tokenize_map(
        texts,
        packing.line_table,
        config,
        work,
        f"line-{name}",
        fn_kwargs=kwargs,
        remove_columns=[cols.text],
    )
    lengths = lines.data.column("_length").to_numpy().astype(np.int64)
    budget = config.packing.max_length - len(prefix) - len(suffix)
    truncated = np.maximum(lengths - budget, 0)
    counts = {
        "documents": len(lengths),
        "tokens": int(lengths.sum()),
        "tokens_truncated": int(truncated.sum()),
    }
    counts["examples_truncated"] = int((truncated > 0).sum())
    counts["tokens_in_examples"] = counts["tokens"] - counts["tokens_truncated"]
    counts["special_tokens"] = len(lengths) * (len(prefix) + len(suffix))
    counts["unk_tokens"] = _count_id(lines, tokenizer.unk_token_id)
    return lines.remove_columns(["_length"]).with_format(None), counts


def _count_id(ds, token_id) -> int:
    import pyarrow.compute as pc

    if token_id is None or len(ds) == 0:
        return 0
    flat = pc.list_flatten(ds.data.column("input_ids"))
    return int(pc.sum(pc.equal(flat, token_id)).as_py() or 0)


def pack_supervised(ds, tokenizer, config, cols: Columns, work: Path, name: str, labels: dict[str, Any]):
    """Return the split as labelled examples (raw text kept) and its counts."""
    max_length = config.packing.max_length
    if cols.tokens:
        supervised.check_fast(tokenizer)
        kwargs = {
            "tokenizer": tokenizer,
            "cols": cols,
            "max_length": max_length,
            "tag2id": labels["label2id"],
        }
        kwargs["label_all"] = config.packing.label_all_tokens
        fn, keep = supervised.encode_tokens_batch, [cols.tokens, cols.tags]
    else:
        kwargs = {"tokenizer": tokenizer, "cols": cols, "max_length": max_length}
        kwargs.update(problem_type=labels["problem_type"], label2id=labels["label2id"])
        fn, keep = supervised.encode_sequence_batch, [c for c in (cols.text, cols.text_pair) if c]
    drop = [c for c in ds.column_names if c not in keep]
    encoded = _tokenize_map(ds, fn, config, work, f"supervised-{name}", fn_kwargs=kwargs, remove_columns=drop)
    counts = _supervised_counts(encoded, tokenizer)
    encoded = encoded.remove_columns([c for c in ("_length", "_words_cut") if c in encoded.column_names])
    renames = {cols.text: "text", cols.text_pair: "text_pair", cols.tokens: "tokens", cols.tags: "tags"}
    renames = {k: v for k, v in renames.items() if k and k != v}
    encoded = encoded.rename_columns(renames) if renames else encoded
    return encoded.cast(_supervised_features(encoded, labels)), counts


def _supervised_counts(encoded, tokenizer) -> dict[str, int]:
    lengths = np.asarray(encoded.data.column("input_ids").combine_chunks().value_lengths(), dtype=np.int64)
    counts = {
        "documents": len(encoded),
        "tokens": int(lengths.sum()),
        "unk_tokens": _count_id(encoded, tokenizer.unk_token_id),
    }
    counts["tokens_in_examples"] = counts["tokens"]
    if "_length" in encoded.column_names:
        before = encoded.data.column("_length").to_numpy().astype(np.int64)
        counts["tokens"] = int(before.sum())
        counts["tokens_truncated"] = int((before - lengths).sum())
        counts["examples_truncated"] = int((before > lengths).sum())
    else:
        cut = encoded.data.column("_words_cut").to_numpy()
        counts["words_truncated"] = int(cut.sum())
        counts["examples_truncated"] = int((cut > 0).sum())
    return counts


def _supervised_features(encoded, labels: dict[str, Any]):
    from datasets import ClassLabel, Sequence, Value

    features = encoded.features.copy()
    names = labels["names"]
    if labels["task"] == "token-classification":
        features["tags"] = Sequence(ClassLabel(names=names))
        features["labels"] = Sequence(Value("int64"))
    elif labels["problem_type"] == "single_label_classification":
        features["labels"] = ClassLabel(names=names)
    elif labels["problem_type"] == "multi_label_classification":
        features["labels"] = Sequence(Value("float32"))
    else:
        features["labels"] = Value("float32")
    return features


def pack_chat(ds, tokenizer, config, work: Path, name: str):
    """Return the split's chats as labelled (and optionally packed) examples and their counts."""
    return instruct.pack_chat(ds, tokenizer, config, work, name, _tokenize_map)
