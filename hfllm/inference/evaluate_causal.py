"""`hfllm evaluate` for causal LMs: loss per token and perplexity of a data dir split (pretraining blocks,
or instruction data scored on its response tokens), or of a text file with a sliding window.

The loss is a mean over every scored token of the split or file, not over batch means, so it does
not depend on the batch size. Per-row (per-window) sums go to predictions.jsonl.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hfllm.errors import InputError
from hfllm.fsutil import atomic_write_json
from hfllm.models.loader import resolve
from hfllm.output import log
from hfllm.tasks.causal_lm import IGNORE_INDEX, CausalLMCollator, perplexity

OUTPUTS = ("metrics.json", "predictions.jsonl")


def run_evaluate_causal(
    model_dir: Path,
    data: Path | list[Path],
    split: str,
    output_dir: Path,
    batch_size: int = 16,
    stride: int | None = None,
) -> dict[str, Any]:
    """Return the evaluation summary of a causal LM on a data dir split or text files (cleaned as the
    model's training text was), after writing metrics.json and predictions.jsonl into `output_dir`."""
    from hfllm.data.cleaning import inference_cleaner
    from hfllm.models.causal import context_length, load_causal_lm

    started = time.time()
    paths = [Path(p) for p in (data if isinstance(data, (list, tuple)) else [data])]
    data = paths[0]
    if len(paths) > 1 or data.is_file():
        texts = [text for path in paths for text in read_texts(path)]
        model, tokenizer = load_causal_lm(Path(model_dir))
        clean = inference_cleaner(resolve(str(model_dir), "--model").location)
        texts = [clean(text) for text in texts]
        limit = context_length(model) or 1024
        metrics, records = evaluate_texts(
            model, tokenizer, texts, limit, stride or max(limit // 2, 1), batch_size
        )
        shown = str(data) if len(paths) == 1 else [str(p) for p in paths]
        metrics = {"data": shown, "documents": len(texts), **metrics}
    else:
        dataset, data_dir = _split(data, split)
        model, tokenizer = load_causal_lm(Path(model_dir))
        _check_fits(model, tokenizer, data_dir, dataset, str(data))
        metrics, records = evaluate_split(model, tokenizer, dataset, batch_size)
        metrics = {"split": split, "rows": len(dataset), **metrics}
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (output_dir / name).unlink(missing_ok=True)
    from hfllm.inference.evaluate import write_predictions

    metrics = {"task": "causal-lm", **metrics}
    write_predictions(output_dir / "predictions.jsonl", records)
    atomic_write_json(output_dir / "metrics.json", metrics)
    return {
        "status": "ok",
        "model_dir": str(model_dir),
        "data_dir": ", ".join(map(str, paths)),
        "output_dir": str(output_dir),
        "metrics": metrics,
        "files": {
            "metrics": str(output_dir / "metrics.json"),
            "predictions": str(output_dir / "predictions.jsonl"),
        },
        "seconds": round(time.time() - started, 2),
    }


def _split(path: Path, split: str):
    """Return (the split's Dataset, the DataDir), refusing masked-LM and classification data."""
    from hfllm.data.datadir import open_data_dir
    from hfllm.data.objective import objective_of

    data = open_data_dir(path)
    objective, task = objective_of(data.manifest), data.manifest.get("task")
    if objective != "causal" and task != "causal-lm":
        built = f"{objective} ({task})" if task else objective
        raise InputError(
            f"{path}: the data dir was built for the {built} objective; a causal LM is evaluated on causal "
            "data (objective: causal) or instruction data (task: causal-lm)",
            "preprocess the text with objective: causal and the model's tokenizer, or give a text file",
        )
    splits = data.load_splits()
    if split not in splits:
        raise InputError(
            f"{path}: no split {split!r}; it has {', '.join(splits)}", "pass --split with one of those"
        )
    if len(splits[split]) == 0:
        raise InputError(f"{path}/{split}: the split is empty")
    return splits[split], data


def _check_fits(model: Any, tokenizer: Any, data: Any, dataset: Any, where: str) -> None:
    from hfllm.inference.evaluate import check_same_tokenizer
    from hfllm.models.causal import context_length
    from hfllm.models.preflight import check_fits

    check_same_tokenizer(tokenizer, data, where)
    rows = model.get_input_embeddings().num_embeddings
    check_fits({"split": dataset}, rows, context_length(model), where)


def read_texts(path: Path) -> list[str]:
    """Return the documents of a text file: a .jsonl's `text` fields (one per line), else the whole file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file", "give text files, or a data dir made by `hfllm preprocess`")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: bytes that are not UTF-8 at byte offset {exc.start}") from None
    if path.suffix.lower() != ".jsonl":
        if not raw.strip():
            raise InputError(f"{path}: the file is empty", "give text to score")
        return [raw]
    texts = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text:
            raise InputError(f'{path}: line {number}: no non-empty string "text" field')
        texts.append(text)
    if not texts:
        raise InputError(f"{path}: no documents", 'give JSON lines with a "text" field')
    return texts


def windows(ids: list[int], max_length: int, stride: int) -> list[dict[str, list[int]]]:
    """Return the sliding windows of a long text: max_length tokens, moving by `stride`, each token scored
    once, in the first window that has all the context before it that a window can hold."""
    out, scored_to = [], 0
    for begin in range(0, max(len(ids) - 1, 1), stride):
        end = min(begin + max_length, len(ids))
        window = ids[begin:end]
        labels = list(window)
        fresh = end - max(scored_to, begin)
        labels[: len(window) - fresh] = [IGNORE_INDEX] * (len(window) - fresh)
        out.append({"input_ids": window, "labels": labels})
        scored_to = end
        if end == len(ids):
            break
    return out


def evaluate_texts(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, stride: int, batch_size: int
):
    """Return (metrics, per-window records) of scoring `texts` with a sliding window."""
    from hfllm.data.causal import encode_prompt

    if stride > max_length:
        raise InputError(f"--stride {stride} is longer than the window ({max_length} tokens)")
    rows, owners = [], []
    for doc, text in enumerate(texts):
        ids = encode_prompt(tokenizer, text)
        for window in windows(ids, max_length, stride):
            rows.append(window)
            owners.append(doc)
    collator = CausalLMCollator(tokenizer.pad_token_id or 0, reset_at_eos=False)
    nll, counts, correct = _score(model, collator, rows, batch_size)
    records = [
        {"document": owners[i], "window": i, "tokens": int(counts[i]), "nll": round(float(nll[i]), 6)}
        for i in range(len(rows))
    ]
    metrics = _metrics(nll, counts, correct)
    metrics.update(windows=len(rows), max_length=max_length, stride=stride, loss_on="all tokens")
    return metrics, records


def evaluate_split(model: Any, tokenizer: Any, dataset: Any, batch_size: int):
    """Return (metrics, per-row records) of a split: response tokens of instruction data (its labels),
    every token of pretraining blocks (documents kept apart where the model supports it)."""
    from hfllm.tasks.causal_lm import documents_isolated

    columns = [c for c in ("input_ids", "labels", "position_ids") if c in dataset.column_names]
    rows = list(dataset.select_columns(columns))
    instruction = "labels" in columns
    isolated = None if instruction else documents_isolated(model, tokenizer.eos_token_id)
    collator = CausalLMCollator(
        tokenizer.pad_token_id or 0, tokenizer.eos_token_id, reset_at_eos=bool(isolated) and not instruction
    )
    nll, counts, correct = _score(model, collator, rows, batch_size)
    records = [{"id": i, "tokens": int(counts[i]), "nll": round(float(nll[i]), 6)} for i in range(len(rows))]
    metrics = _metrics(nll, counts, correct)
    metrics["loss_on"] = "response tokens" if instruction else "all tokens"
    if not instruction:
        metrics["documents_isolated"] = isolated
    return metrics, records


def _score(model: Any, collator: CausalLMCollator, rows: list[dict], batch_size: int):
    """Return per-row arrays (summed NLL, scored tokens, correct next-token guesses)."""
    import torch

    from hfllm.tasks.causal_lm import causal_eval_outputs

    device = next(model.parameters()).device
    sums, counts, hits = [], [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collator(rows[start : start + batch_size])
            labels = batch.pop("labels")
            logits = model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).logits
            nll, count, correct = causal_eval_outputs(logits, labels.to(device))
            sums += nll.cpu().tolist()
            counts += count.cpu().tolist()
            hits += correct.cpu().tolist()
    log.info("scored %d rows", len(rows))
    return np.asarray(sums), np.asarray(counts), np.asarray(hits)


def _metrics(nll: np.ndarray, counts: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    tokens = int(counts.sum())
    loss = float(nll.sum()) / tokens if tokens else float("nan")
    return {
        "token_loss": loss,
        "perplexity": perplexity(loss),
        "next_token_accuracy": float(correct.sum()) / tokens if tokens else 0.0,
        "tokens": tokens,
    }
