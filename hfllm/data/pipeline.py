"""`hfllm preprocess` as a library: read -> clean -> split -> tokenizer -> pack -> save, with a manifest.

Entry points:
- `run_preprocess(config, force)`: the whole command; writes the data dir and returns the JSON result.
- `build_supervised_splits(config, tokenizer, ...)`: labelled files -> tokenized DatasetDict with a GIVEN
  tokenizer (e.g. a pretrained model's), for `hfllm finetune` on raw files; writes only into `work_dir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hfllm import __version__
from hfllm.data import manifest as mf
from hfllm.data.datadir import MANIFEST, MANIFEST_FORMAT, TOKENIZER_DIR, tokenizer_fingerprint
from hfllm.data.ingest import columns_for, ingest
from hfllm.data.objective import objective_of
from hfllm.data.sources import SPLITS, resolve_sources
from hfllm.data.supervised import label_names, problem_type_of, tag_names
from hfllm.data.tokenizer import load_tokenizer, tokenizer_type, train_tokenizer
from hfllm.errors import ConfigError, InputError
from hfllm.output import log


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
    mf.claim_output_dir(out, force)
    work = mf.make_work_dir(out)
    try:
        sources = resolve_sources(config.data, work / "stdin", exclude=out)
        if not sources:
            raise InputError("no inputs left: every file named in data.* lies inside the output dir")
        key = mf.cache_key(config, sources)
        reason = mf.cache_miss_reason(out, key)
        if reason is None and not force:
            log.info("%s is up to date (same inputs, settings and tokenizer): nothing to do", out)
            return _result(out, mf.read_manifest(out), "cached", timer.total())
        log.info("building %s: %s", out, "--force" if force else reason)
        splits, manifest, tokenizer = _build(config, sources, work, timer)
        manifest["cache_key"] = key
        _save(out, work, splits, tokenizer, config, manifest, timer)
        return _result(out, manifest, "built", manifest["timings"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_supervised_splits(
    config, tokenizer, label2id: dict[str, int] | None = None, work_dir: Path | None = None
):
    """Return (DatasetDict, manifest dict) of labelled raw files tokenized with the given `tokenizer`.

    `config` is a PreprocessConfig with packing.mode supervised; `label2id` (e.g. a pretrained
    classifier's) fixes the label ids, and a label outside it is an error. The Arrow files live in
    `work_dir` (default: a new temporary dir), which must outlive the returned datasets.
    """
    if config.packing.mode != "supervised":
        raise ConfigError("build_supervised_splits needs packing.mode: supervised")
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="hfllm-data-"))
    work.mkdir(parents=True, exist_ok=True)
    sources = resolve_sources(config.data, work / "stdin")
    timer = Timer()
    splits, manifest, _ = _build(config, sources, work, timer, tokenizer=tokenizer, label2id=label2id)
    manifest["timings"] = timer.total()
    return splits, manifest


def _build(config, sources, work: Path, timer: Timer, tokenizer=None, label2id=None):
    """Return (DatasetDict, manifest without cache key, tokenizer) for the inputs."""
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
    labels = _labels(config, cols, cleaned, rows, ingested.label_kinds, label2id)
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


def _labels(config, cols, cleaned, rows, label_kinds, given) -> dict[str, Any]:
    """Return the task's label set: names, label2id and problem type (empty for group/line)."""
    info: dict[str, Any] = {"task": config.task, "problem_type": None, "names": None, "label2id": None}
    if config.task in (None, "causal-lm"):
        return info
    import numpy as np

    kept = np.sort(np.concatenate([rows[name] for name in SPLITS]))
    if config.task == "token-classification":
        names = tag_names(cleaned.select(kept)[cols.tags])
    else:
        info["problem_type"] = problem_type_of(config.problem_type, label_kinds)
        if info["problem_type"] == "regression":
            return info
        names = label_names(cleaned.select(kept)[cols.label], info["problem_type"])
    if given is not None:
        unknown = sorted(set(names) - set(given))
        if unknown:
            raise InputError(
                f"labels not in the model's label2id: {', '.join(unknown[:10])}", "use the same label set"
            )
        names = [n for n, _ in sorted(given.items(), key=lambda item: item[1])]
    info["names"], info["label2id"] = names, {n: i for i, n in enumerate(names)}
    if info["problem_type"] == "single_label_classification":
        missing = sorted(set(names) - set(cleaned.select(rows["train"])[cols.label]))
        if missing:
            log.warning(
                "labels with no train example (the model cannot learn them): %s", ", ".join(missing[:10])
            )
    return info


def _tokenizer(config, train_ds, cols, work: Path):
    """Return the run's tokenizer, saved to and reloaded from `work/tokenizer` (what the data dir will hold),
    and the chat template info of instruction data (else None)."""
    from transformers import AutoTokenizer

    from hfllm.data import stages

    if config.tokenizer.name_or_path:
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
