"""`hfllm preprocess` as a library: read -> clean -> split -> tokenizer -> pack -> save, with a manifest.

`run_preprocess(config, force)` is the whole command: it writes the data dir and returns the JSON result.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hfllm import __version__
from hfllm.data import manifest as mf
from hfllm.data.datadir import MANIFEST, MANIFEST_FORMAT, TOKENIZER_DIR, tokenizer_fingerprint
from hfllm.data.hub import check_refs
from hfllm.data.ingest import columns_for, ingest
from hfllm.data.objective import objective_of
from hfllm.data.sources import SPLITS, hub_refs, resolve_sources
from hfllm.data.supervised import label_names, tag_names
from hfllm.data.tokenizer import tokenizer_type, train_tokenizer
from hfllm.errors import ConfigError, InputError
from hfllm.fsutil import DirLock, make_writable_dir, remove_empty_dirs
from hfllm.output import log
from hfllm.owners import MARKER, check_owner, owner_of, write_marker
from hfllm.tasks.names import problem_type_from_labels
from hfllm.tasks.tagging import tag_scheme


class Timer:
    """Collect wall-clock seconds per named stage."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": round(time.perf_counter() - self.start, 3)}


def run_preprocess(config, force: bool = False) -> dict[str, Any]:
    """Build the data dir `config.output_dir` (or reuse it when nothing changed); return the JSON result."""
    if not config.output_dir:
        raise ConfigError("no output dir: set output_dir in the config or pass --output-dir")
    timer = Timer()
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output dir {out} is a file", "choose another --output-dir")
    check_owner(out, "preprocess", "--force" if force else "")
    checked = _check_datasets_first(config, out, force)
    created = make_writable_dir(out)
    lock = DirLock(out)
    lock.acquire("`hfllm preprocess`")
    work, built = mf.make_work_dir(out), False
    try:
        sources = resolve_sources(config.data, work / "stdin", exclude=out)
        if not sources:
            raise InputError("no inputs left: every file named in data.* lies inside the output dir")
        key = mf.cache_key(config, sources)
        manifest = mf.read_manifest(out)
        if manifest is not None:
            key = mf.same_content(manifest, key, sources)
        reason = mf.cache_miss_reason(out, key)
        if reason is None and not force:
            log.info("%s is up to date (same inputs, settings and tokenizer): nothing to do", out)
            return _result(out, mf.read_manifest(out), "cached", timer.total())
        changed = None if force else mf.changes(out, config, key)
        if changed:
            raise ConfigError(
                f"{out} holds a finished data dir built differently: {changed}",
                "use a new --output-dir, or --force to rebuild it (runs trained on it then no longer match it)",
            )
        lock.claim()
        if (
            owner_of(out) != "preprocess" or not (out / MARKER).is_file()
        ):  # never touch a finished dir's files
            write_marker(out, "preprocess")
        log.info("building %s: %s", out, "--force" if force else reason)
        if not checked:
            check_refs(hub_refs(config.data))
        splits, manifest, tokenizer = build(config, sources, work, timer)
        manifest["cache_key"] = key
        _save(out, work, splits, tokenizer, config, manifest, timer)
        built = True
        return _result(out, manifest, "built", manifest["timings"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        lock.release()
        if not built and created and mf.read_manifest(out) is None:
            remove_new_dir(out, created)


def remove_new_dir(out: Path, created: list[Path]) -> None:
    """Remove a data dir this run created and never finished (its marker, then the dirs)."""
    (out / MARKER).unlink(missing_ok=True)
    remove_empty_dirs(created)


def _check_datasets_first(config, out: Path, force: bool) -> bool:
    """Fail before any work when a Hub dataset cannot be opened (no network, offline, no such split).

    Returns False when the check was left for later: a rerun with the same settings may be answered
    from the data dir's cache, offline too.
    """
    refs = hub_refs(config.data)
    manifest = None if force or not refs else mf.read_manifest(out)
    if manifest is not None and manifest.get("settings_hash") == mf.settings_hash(config):
        return False
    check_refs(refs)
    return True


def build(config, sources, work: Path, timer: Timer, tokenizer=None, label2id=None):
    """Return (DatasetDict, manifest without cache key, tokenizer) for the inputs.

    `tokenizer`: use this one instead of loading or training one; `label2id`: a model's label map, which
    the labels must keep to (evaluate on raw files: a label outside it is refused, naming its row).
    """
    from datasets import DatasetDict

    from hfllm.data import stages

    # The Rust tokenizer (training and encoding) uses num_proc threads; read once, when it first runs.
    os.environ.setdefault("RAYON_NUM_THREADS", str(stages.threads(config)))
    cols = columns_for(config)
    raw, ingested = ingest(sources, config.data, cols, work / "raw.arrow")
    timer.lap("read")
    cleaned, changed, replaced = stages.clean(raw, config, cols, work)
    timer.lap("clean")
    rows, counts = stages.split(cleaned, config, sources)
    counts.update(changed=changed, decode_replaced=replaced)
    by_split = {name: cleaned.select(rows[name]) for name in SPLITS if len(rows[name])}
    warnings = split_warnings(config, rows)
    labels = _labels(config, cols, cleaned, rows, ingested, label2id, sources, warnings)
    report_warnings(warnings, config.strict)
    timer.lap("split")
    chat = None
    if tokenizer is None:
        tokenizer, chat = _tokenizer(config, by_split["train"], cols, work)
    elif generative(config):
        chat = prepare_generative(tokenizer, config, str(config.tokenizer.name_or_path or "tokenizer"))
    timer.lap("tokenizer")
    packed, pack_counts = {}, {}
    for name, ds in by_split.items():
        packed[name], pack_counts[name] = _pack(ds, tokenizer, config, cols, work, name, labels)
        log.info("%s: %d documents -> %d examples", name, len(ds), len(packed[name]))
    timer.lap("tokenize_and_pack")
    counts.update(_sum_counts(pack_counts), by_split=pack_counts)
    manifest = _manifest(config, cols, sources, ingested, tokenizer, labels, counts, packed, chat)
    return DatasetDict(packed), manifest, tokenizer


# A class with fewer examples than this cannot be learned or measured: warned about (refused under --strict).
MIN_CLASS_EXAMPLES = 5


def split_warnings(config, rows) -> list[str]:
    """Return warnings about splits that the config asked for but the data left empty."""
    asked = {"validation": config.split.validation, "test": config.split.test}
    return [
        f"the {name} split is empty: {len(rows['train'])} documents are too few for split.{name}: {share}"
        for name, share in asked.items()
        if share > 0 and len(rows[name]) == 0
    ]


def report_warnings(warnings: list[str], strict: bool) -> None:
    """Log each data warning, or refuse the data under --strict (exit 3)."""
    if warnings and strict:
        raise InputError(
            f"--strict: {warnings[0]}" + (f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""),
            "fix the data, or drop --strict to accept it with warnings",
        )
    for warning in warnings:
        log.warning("%s", warning)


def _labels(config, cols, cleaned, rows, ingested, given, sources, warnings) -> dict[str, Any]:
    """Return the task's label set: names, label2id and problem type (empty for group/line); add the
    data's label warnings to `warnings`, refuse labels that cannot be right."""
    info: dict[str, Any] = {"task": config.task, "problem_type": None, "names": None, "label2id": None}
    if config.task in (None, "causal-lm"):
        return info
    import numpy as np

    kept = np.sort(np.concatenate([rows[name] for name in SPLITS]))
    where = f"{', '.join(s.path for s in sources[:2])}{'...' if len(sources) > 2 else ''}"
    if config.task == "token-classification":
        names = tag_names(cleaned.select(kept)[cols.tags])
        try:
            if given is None:  # the entity scorer (seqeval, strict) reads IOB2 / IOBES tags only
                tag_scheme(names)
        except ValueError as exc:
            raise InputError(f"{where}: column {cols.tags!r}: {exc}") from None
    else:
        ingested.check_label_kinds(cols.label)
        info["problem_type"] = problem_type_from_labels(config.problem_type, ingested.label_kinds)
        if info["problem_type"] == "regression":
            if config.problem_type == "auto":
                warnings.append(
                    f"{where}: labels in column {cols.label!r} include fractional numbers (first at "
                    f"{ingested.first_of_kind['float'][0]}: {ingested.first_of_kind['float'][1]}), so "
                    "problem_type auto chose regression; set problem_type to say which you mean"
                )
            return info
        names = label_names(cleaned.select(kept)[cols.label], info["problem_type"])
        if given is not None:
            info["names"], info["label2id"] = _given_labels(names, given, cleaned, kept, cols, sources)
            return info
        if len(names) < 2:
            raise InputError(
                f"{where}: column {cols.label!r} holds {len(names)} class ({', '.join(names)}); "
                "classification needs at least 2",
                "check data.label_column, or give examples of every class",
            )
        warnings += rare_class_warnings(cleaned.select(kept)[cols.label], info["problem_type"], cols.label)
    if given is not None:
        info["names"], info["label2id"] = _given_labels(names, given, cleaned, kept, cols, sources)
        return info
    info["names"], info["label2id"] = names, {n: i for i, n in enumerate(names)}
    if info["problem_type"] == "single_label_classification":
        missing = sorted(set(names) - set(cleaned.select(rows["train"])[cols.label]))
        if missing:
            log.warning(
                "labels with no train example (the model cannot learn them): %s", ", ".join(missing[:10])
            )
    return info


def _given_labels(names, given: dict[str, int], cleaned, kept, cols, sources) -> tuple[list[str], dict]:
    """Return (names, label2id) of a model's label map; a label of the data outside it is an InputError
    naming the label and the first row that has it. Classes the data lacks are fine."""
    import json

    from hfllm.data.ingest import row_place

    unknown = sorted(set(names) - set(given))
    if unknown:
        rows = cleaned.select(kept)
        column = rows[cols.tags or cols.label]
        has = [
            unknown[0] in (value if cols.tags else json.loads(value) if value.startswith("[") else [value])
            for value in column
        ]
        first = rows[has.index(True)]
        place = row_place(sources[first["_file"]], first["_row"])
        known = ", ".join(sorted(given, key=given.get))
        raise InputError(
            f"{place}: label {unknown[0]!r} is not one of the model's labels ({known})"
            + (f"; other unknown labels: {', '.join(map(repr, unknown[1:6]))}" if len(unknown) > 1 else ""),
            "evaluate on rows labelled with the model's classes (or fine-tune a model on these labels)",
        )
    names = [n for n, _ in sorted(given.items(), key=lambda item: item[1])]
    return names, {n: i for i, n in enumerate(names)}


def _tokenizer(config, train_ds, cols, work: Path):
    """Return the run's tokenizer, saved to and reloaded from `work/tokenizer` (what the data dir will hold),
    and the chat template info of instruction data (else None)."""
    from transformers import AutoTokenizer

    from hfllm.data import stages

    if config.tokenizer.name_or_path:
        from hfllm.models.loader import load_tokenizer

        tokenizer = load_tokenizer(config.tokenizer.name_or_path, config.tokenizer.trust_remote_code)
        limit = tokenizer.model_max_length
        if limit and limit < 10**6 and config.packing.max_length > limit:
            log.warning(
                "packing.max_length %d is above the tokenizer's model_max_length %d",
                config.packing.max_length,
                limit,
            )
    else:
        n = len(train_ds) * (2 if cols.text_pair else 1)
        log.info(
            "training a %s tokenizer (vocab_size %d) on %d train documents",
            config.tokenizer.train.type,
            config.tokenizer.train.vocab_size,
            len(train_ds),
        )
        tokenizer = train_tokenizer(
            stages.training_texts(train_ds, cols),
            n,
            config.tokenizer.train,
            config.packing.max_length,
            causal=generative(config),
        )
    chat = None
    if generative(config):
        chat = prepare_generative(tokenizer, config, config.tokenizer.name_or_path or "the trained tokenizer")
    tokenizer.save_pretrained(str(work / TOKENIZER_DIR))
    return AutoTokenizer.from_pretrained(str(work / TOKENIZER_DIR)), chat


def _pack(ds, tokenizer, config, cols, work: Path, name: str, labels):
    from hfllm.data import stages

    mode = config.packing.mode
    if mode == "group":
        return stages.pack_group(ds, tokenizer, config, cols, work, name)
    if mode == "line":
        return stages.pack_line(ds, tokenizer, config, cols, work, name)
    if config.task == "causal-lm":
        return stages.pack_chat(ds, tokenizer, config, work, name)
    return stages.pack_supervised(ds, tokenizer, config, cols, work, name, labels)


def rare_class_warnings(values: list[str], problem_type: str, column: str) -> list[str]:
    """Return a warning when classes have fewer than MIN_CLASS_EXAMPLES examples (naming the rarest)."""
    import collections
    import json

    if problem_type == "multi_label_classification":
        counts = collections.Counter(n for v in values for n in (json.loads(v) if v.startswith("[") else [v]))
    else:
        counts = collections.Counter(values)
    rare = sorted((n, name) for name, n in counts.items() if n < MIN_CLASS_EXAMPLES)
    if not rare:
        return []
    shown = ", ".join(f"{name!r} ({n})" for n, name in rare[:5]) + ("..." if len(rare) > 5 else "")
    return [
        f"{len(rare)} of {len(counts)} classes in column {column!r} have fewer than {MIN_CLASS_EXAMPLES} "
        f"examples: {shown}"
    ]


def generative(config) -> bool:
    """Return whether the data is for a causal (generative) language model: pretraining or instructions."""
    return config.objective == "causal" or config.task == "causal-lm"


def prepare_generative(tokenizer, config, where: str) -> dict[str, Any] | None:
    """Check and complete a causal LM's tokenizer: an EOS is required, a pad token is added, and for
    instruction data the chat template is set. Returns the chat template info (None for pretraining)."""
    from hfllm.data.causal import check_causal_tokenizer, ensure_pad_token

    check_causal_tokenizer(tokenizer, where)
    source = tokenizer_fingerprint(tokenizer)
    ensure_pad_token(tokenizer)
    if config.task == "causal-lm":
        from hfllm.data.chat import setup_chat_template

        info = setup_chat_template(tokenizer, config.chat_template, where)
        return {**info, "source_fingerprint": source, "pack_examples": config.packing.pack_examples}
    return None


def _generative_info(config, tokenizer, chat) -> dict[str, Any]:
    """Return the manifest entries of causal data: EOS and text prefix ids, the chat template used."""
    if not generative(config):
        return {}
    from hfllm.data.causal import text_prefix

    info: dict[str, Any] = {
        "causal": {
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "text_prefix": text_prefix(tokenizer),
        }
    }
    if chat is not None:
        info["chat"] = chat
    return info


def _sum_counts(per_split: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in per_split.values():
        for key, value in counts.items():
            if key != "documents":
                total[key] = total.get(key, 0) + value
    return total


def _manifest(
    config, cols, sources, ingested, tokenizer, labels, counts, packed, chat=None
) -> dict[str, Any]:
    inputs = []
    kept = counts.pop("kept_per_input")
    for source, documents, n_kept in zip(sources, ingested.documents, kept, strict=True):
        inputs.append(
            {
                "path": source.path,
                "format": source.format,
                "split": source.split,
                "sha256": source.sha256(),
                **source.stat(),
                **({"hub": source.hub.key()} if source.hub is not None else {}),
                **source.info,
                "documents": documents,
                "documents_kept": n_kept,
            }
        )
    tokens = counts.get("tokens", 0)
    unk = {name: _rate(c.get("unk_tokens", 0), c.get("tokens", 0)) for name, c in counts["by_split"].items()}
    supervised = config.packing.mode == "supervised"
    return {
        "format": MANIFEST_FORMAT,
        "hfllm_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": config.packing.mode,
        "objective": "supervised" if supervised else config.objective,
        "task": config.task,
        "problem_type": labels["problem_type"],
        "max_length": config.packing.max_length,
        "label2id": labels["label2id"],
        "id2label": {str(i): n for n, i in labels["label2id"].items()} if labels["label2id"] else None,
        "text_column": ("text" if supervised else cols.text) if cols.text else None,
        "text_pair_column": ("text_pair" if supervised else cols.text_pair) if cols.text_pair else None,
        "tokens_column": "tokens" if cols.tokens else None,
        "tags_column": "tags" if cols.tags else None,
        "columns": {name: ds.column_names for name, ds in packed.items()},
        "tokenizer": _tokenizer_info(config, tokenizer),
        **_generative_info(config, tokenizer, chat),
        "inputs": inputs,
        "settings_hash": mf.settings_hash(config),
        "counts": counts,
        "splits": {name: len(packed[name]) if name in packed else 0 for name in SPLITS},
        "unk_rate": _rate(counts.get("unk_tokens", 0), tokens),
        "unk_rate_by_split": unk,
    }


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _tokenizer_info(config, tokenizer) -> dict[str, Any]:
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return {
        "fingerprint": tokenizer_fingerprint(tokenizer),
        "type": tokenizer_type(tokenizer),
        "vocab_size": len(tokenizer),
        "source": config.tokenizer.name_or_path or f"trained:{config.tokenizer.train.type}",
        "special_tokens": specials,
    }


def _save(out: Path, work: Path, splits, tokenizer, config, manifest: dict, timer: Timer) -> None:
    from hfllm.config import to_yaml

    staged = work / "data"
    splits.save_to_disk(str(staged))
    manifest["tokenizer"]["file_sha256"] = mf.file_sha256(work / TOKENIZER_DIR / "tokenizer.json")
    timer.lap("save")
    manifest["timings"] = timer.total()
    mf.commit(out, staged, work / TOKENIZER_DIR, to_yaml(config), manifest)


def _result(out: Path, manifest: dict, status: str, timings: dict) -> dict[str, Any]:
    counts = manifest.get("counts", {})
    return {
        "status": status,
        "output_dir": str(out),
        "manifest": str(out / MANIFEST),
        "mode": manifest.get("mode"),
        "objective": objective_of(manifest),
        "task": manifest.get("task"),
        "splits": manifest.get("splits"),
        "documents_read": counts.get("documents_read"),
        "documents_kept": counts.get("documents_kept"),
        "tokens": counts.get("tokens"),
        "unk_rate": manifest.get("unk_rate"),
        "label2id": manifest.get("label2id"),
        "tokenizer": {
            k: manifest.get("tokenizer", {}).get(k) for k in ("type", "vocab_size", "source", "fingerprint")
        },
        "timings": timings,
    }
