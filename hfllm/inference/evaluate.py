"""`hfllm evaluate`: a saved model on a data dir split -> metrics.json, predictions.jsonl, report, plot.

Every metric is computed once, from the same predictions that predictions.jsonl records, so the
file is the evidence for the numbers (a test recomputes them from it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hfllm.data.datadir import DataDir, open_data_dir
from hfllm.errors import ConfigError, InputError
from hfllm.fsutil import atomic_write_json, make_writable_dir, remove_empty_dirs
from hfllm.inference.batching import forward_logits
from hfllm.inference.report import plot_confusion_matrix, write_report
from hfllm.metrics import compute
from hfllm.models.causal import is_causal_model_dir
from hfllm.models.loader import load_for_inference, resolve
from hfllm.models.preflight import check_same_tokenizer
from hfllm.output import log
from hfllm.owners import MARKER, check_owner, write_marker
from hfllm.precision import for_inference
from hfllm.tasks.classification import clean, sequence_metrics, sequence_outputs
from hfllm.tasks.names import IGNORE_INDEX, MASKED_LM, MULTI, REGRESSION, SEQUENCE, TOKEN, problem_type_of
from hfllm.tasks.tagging import tag_scheme

OUTPUTS = ("metrics.json", "predictions.jsonl", "per_class.txt", "confusion_matrix.png")


def run_evaluate(
    model_dir: Path,
    data: Path | list[Path],
    split: str = "test",
    output_dir: Path | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    seed: int = 42,
    stride: int | None = None,
    read: Any = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Return the evaluation summary after writing its files into `output_dir`.

    `data`: a data dir (its `split` is scored), or raw labelled files read with the model's label map and
    training-time cleaning (`read`: their columns, an EvaluateDataSection). A causal LM is scored by
    hfllm.inference.evaluate_causal: on a data dir split, or on text files with a sliding window moving
    by `stride` tokens.

    A classifier or masked LM runs as `hfllm predict` runs it: length-sorted batches under
    torch.inference_mode, in `precision` (hfllm.precision.for_inference). The default is fp32, unlike
    predict's auto: the metrics are the numbers people compare, and bf16 can flip a close call (1 line
    in 1,024 in bench/predict.py's measurement). A causal LM is scored in fp32.
    """
    started = time.time()
    paths = [Path(p) for p in (data if isinstance(data, (list, tuple)) else [data])]
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(model_dir, split)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {output_dir} is a file", "give a new or empty directory")
    check_owner(output_dir, "evaluate", "--overwrite" if overwrite else "", own_files=(*OUTPUTS, MARKER))
    if (output_dir / "metrics.json").exists() and not overwrite:
        raise ConfigError(
            f"{output_dir}/metrics.json exists; pass --overwrite to replace it, or another --output-dir"
        )
    created = make_writable_dir(output_dir)  # an unwritable place fails before the model is loaded
    try:
        if is_causal_model_dir(Path(resolve(str(model_dir), "--model").location)):
            from hfllm.inference.evaluate_causal import run_evaluate_causal

            if precision != "fp32":
                log.warning(
                    "precision: fp32 (a causal LM is evaluated in fp32; --precision %s ignored)", precision
                )
            return run_evaluate_causal(Path(model_dir), paths, split, output_dir, batch_size, stride)
        if len(paths) == 1 and paths[0].is_dir():
            return _evaluate(model_dir, paths[0], split, output_dir, batch_size, seed, started, precision)
        return _evaluate_files(model_dir, paths, read, output_dir, batch_size, started, precision)
    except BaseException:
        remove_empty_dirs(created)  # a refused evaluation leaves nothing behind
        raise


def _evaluate(
    model_dir,
    data_dir,
    split: str,
    output_dir: Path,
    batch_size: int,
    seed: int,
    started: float,
    precision: str,
):
    # The data is checked first: a wrong --data or --split fails before the model is loaded.
    data = open_data_dir(Path(data_dir))
    splits = data.load_splits()  # a missing or unreadable split is an InputError naming it
    if split not in splits:
        raise InputError(
            f"{data_dir}: no split {split!r}; it has {', '.join(splits)}", "pass --split with one of those"
        )
    model, tokenizer, task, precision_path = _load(model_dir, precision)
    check_same_tokenizer(tokenizer, data, str(model_dir))
    dataset = splits[split]
    if len(dataset) == 0:
        raise InputError(f"{data_dir}/{split}: the split is empty")
    if task != MASKED_LM:
        check_labels(model.config, data, dataset, task, str(data_dir))
    summary = _score(
        model, tokenizer, task, dataset, output_dir, batch_size, seed, f"{Path(model_dir).name} on {split}"
    )
    source = {"split": split, "precision": precision_path}
    return _result(summary, model_dir, str(data_dir), output_dir, source, started)


def _evaluate_files(
    model_dir, paths: list[Path], read: Any, output_dir: Path, batch_size: int, started: float, precision: str
):
    import shutil
    import tempfile

    from hfllm.config.schemas.evaluate import EvaluateDataSection
    from hfllm.data.labelled import evaluation_split

    model, tokenizer, task, precision_path = _load(model_dir, precision)
    if task == MASKED_LM:
        raise InputError(
            f"{model_dir}: a masked LM is evaluated on a data dir made with its tokenizer, not on raw files",
            "run `hfllm preprocess` with tokenizer.name_or_path set to the model, then --data that dir",
        )
    location = Path(resolve(str(model_dir), "--model").location)
    work = Path(tempfile.mkdtemp(prefix=".data-", dir=output_dir))  # a run writes only in its output dir
    try:
        dataset, _ = evaluation_split(
            [str(p) for p in paths],
            read or EvaluateDataSection(),
            tokenizer,
            location,
            model.config,
            task,
            work,
        )
        title = f"{Path(model_dir).name} on {paths[0].name}" + (
            f" (+{len(paths) - 1})" if len(paths) > 1 else ""
        )
        summary = _score(model, tokenizer, task, dataset, output_dir, batch_size, 0, title)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data = ", ".join(map(str, paths))
    source = {"data": [str(p) for p in paths], "precision": precision_path}
    return _result(summary, model_dir, data, output_dir, source, started)


def _load(model_dir, precision: str) -> tuple[Any, Any, str, str]:
    """Return (model in `precision`, tokenizer, task, the precision path taken) of a classifier or masked LM."""
    model, tokenizer, task = load_for_inference(Path(model_dir), tasks=(SEQUENCE, TOKEN, MASKED_LM))
    model, precision_path = for_inference(model, precision)
    log.info("precision: %s", precision_path)
    return model, tokenizer, task, precision_path


def _score(model, tokenizer, task: str, dataset, output_dir: Path, batch_size: int, seed: int, title: str):
    """Return (metrics, files) after scoring `dataset` and writing the outputs (earlier ones removed)."""
    # Every check passed: only now may earlier results in the output dir go.
    write_marker(output_dir, "evaluate")
    for name in OUTPUTS:
        (output_dir / name).unlink(missing_ok=True)
    if task == MASKED_LM:
        metrics, records = evaluate_masked_lm(model, tokenizer, dataset, batch_size, seed)
        files: dict[str, str] = {}
    else:
        evaluator = evaluate_tokens if task == TOKEN else evaluate_sequences
        metrics, records = evaluator(model, tokenizer, dataset, batch_size)
        files = write_class_outputs(output_dir, metrics, title)
    write_predictions(output_dir / "predictions.jsonl", records)
    return {"task": task, "examples": len(dataset), **metrics}, files


def _result(summary, model_dir, data: str, output_dir: Path, source: dict[str, Any], started: float):
    metrics, files = summary
    metrics = clean({"task": metrics.pop("task"), **source, **metrics})
    atomic_write_json(output_dir / "metrics.json", metrics)
    headline = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    return {
        "status": "ok",
        "model_dir": str(model_dir),
        "data_dir": data,
        "output_dir": str(output_dir),
        "metrics": headline,
        "files": {
            "metrics": str(output_dir / "metrics.json"),
            "predictions": str(output_dir / "predictions.jsonl"),
            **files,
        },
        "seconds": round(time.time() - started, 2),
    }


def default_output_dir(model_dir: Path, split: str) -> Path:
    """Return where evaluate writes by default: <run>/eval-<split> beside a run's model/, else ./eval-<name>-<split>."""
    from hfllm.models.loader import resolve

    model_dir = Path(resolve(str(model_dir), "--model").location).resolve()
    if model_dir.name == "model" and (model_dir.parent / "config.yaml").is_file():
        return model_dir.parent / f"eval-{split}"
    return Path.cwd() / f"eval-{model_dir.name}-{split}"


def check_labels(model_config: Any, data: DataDir, dataset: Any, task: str, data_dir: str) -> None:
    """Raise InputError unless the data has labels with the same names (and ids) as the model's."""
    if "labels" not in dataset.column_names:
        raise InputError(
            f"{data_dir}: the split has no `labels` column; evaluate a classifier on supervised data"
        )
    if task == TOKEN and not {"tokens", "tags"} <= set(dataset.column_names):
        raise InputError(
            f"{data_dir}: token-classification data needs `tokens` and `tags` columns "
            "(preprocess supervised mode with task: token-classification)"
        )
    if task != TOKEN and problem_type_of(model_config) == REGRESSION:
        if data.manifest.get("problem_type") not in (None, REGRESSION):
            raise InputError(
                f"{data_dir}: the model does regression but the data is {data.manifest.get('problem_type')}"
            )
        return
    model_labels = {str(name): int(i) for i, name in model_config.id2label.items()}
    data_labels = {str(k): int(v) for k, v in (data.label2id or {}).items()}
    if model_labels != data_labels:
        only_data = sorted(set(data_labels) - set(model_labels))
        only_model = sorted(set(model_labels) - set(data_labels))
        detail = (
            f"only in the data: {only_data}; only in the model: {only_model}"
            if only_data or only_model
            else "same names, other ids"
        )
        raise InputError(
            f"{data_dir}/manifest.json: label set differs from the model's ({detail})",
            "evaluate on data preprocessed with the model's labels, or fine-tune on this data first",
        )


def evaluate_sequences(
    model: Any, tokenizer: Any, dataset: Any, batch_size: int
) -> tuple[dict[str, Any], list[dict]]:
    """Return the metrics and per-example records of a sequence classifier on `dataset`."""
    problem_type = problem_type_of(model.config)
    id2label = {int(i): str(n) for i, n in model.config.id2label.items()}
    rows = dataset.select_columns(
        [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    )
    logits = np.stack(forward_logits(model, tokenizer, list(rows), batch_size))
    predictions, scores = sequence_outputs(logits, problem_type)
    gold = np.asarray(list(dataset["labels"]))
    metrics = sequence_metrics(predictions, gold, problem_type, id2label)
    texts = list(dataset["text"]) if "text" in dataset.column_names else [None] * len(dataset)
    pairs = list(dataset["text_pair"]) if "text_pair" in dataset.column_names else None
    records = []
    for i in range(len(dataset)):
        record = {"id": i, "text": texts[i]}
        if pairs is not None:
            record["text_pair"] = pairs[i]
        record.update(_sequence_fields(problem_type, id2label, gold[i], predictions[i], scores[i]))
        records.append(record)
    return {"problem_type": problem_type, **metrics}, records


def _sequence_fields(
    problem_type: str, id2label: dict[int, str], gold: Any, pred: Any, score: Any
) -> dict[str, Any]:
    if problem_type == REGRESSION:
        return {"gold": float(gold), "predicted": float(pred), "score": float(score)}
    if problem_type == MULTI:
        names = [id2label[i] for i in range(len(id2label))]
        return {
            "gold": [n for n, g in zip(names, gold, strict=True) if g > 0.5],
            "predicted": [n for n, p in zip(names, pred, strict=True) if p],
            "score": {n: round(float(s), 6) for n, s in zip(names, score, strict=True)},
        }
    return {
        "gold": id2label[int(gold)],
        "predicted": id2label[int(pred)],
        "score": round(float(score[int(pred)]), 6),
    }


def evaluate_tokens(
    model: Any, tokenizer: Any, dataset: Any, batch_size: int
) -> tuple[dict[str, Any], list[dict]]:
    """Return entity-level metrics and per-sentence records, scored per word (first sub-token)."""
    id2label = {int(i): str(n) for i, n in model.config.id2label.items()}
    if "tokens" not in dataset.column_names or "tags" not in dataset.column_names:
        raise InputError(
            "token-classification data needs `tokens` and `tags` columns (preprocess supervised mode)"
        )
    words, tags = list(dataset["tokens"]), list(dataset["tags"])
    names = getattr(dataset.features["tags"], "feature", None)
    if hasattr(names, "int2str"):  # preprocess stores tags as class ids (a ClassLabel sequence)
        tags = [[names.int2str(int(t)) for t in row] for row in tags]
    limit = min(getattr(model.config, "max_position_embeddings", 512), tokenizer.model_max_length or 512)
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=limit)
    rows = [
        {"input_ids": ids, "attention_mask": mask}
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    logits = forward_logits(model, tokenizer, rows, batch_size)
    predicted_all, records = [], []
    for i, row_logits in enumerate(logits):
        predicted, score = word_predictions(row_logits, encoded.word_ids(i), len(words[i]), id2label)
        predicted_all.append(predicted)
        records.append(
            {
                "id": i,
                "text": " ".join(words[i]),
                "tokens": words[i],
                "gold": list(tags[i]),
                "predicted": predicted,
                "score": score,
            }
        )
    gold_all = [list(t) for t in tags]
    scheme = tag_scheme(id2label.values())
    metrics = compute("entities", predictions=predicted_all, references=gold_all, scheme=scheme)
    flat_gold = [t for row in gold_all for t in row]
    flat_pred = [t for row in predicted_all for t in row]
    names = [id2label[i] for i in sorted(id2label)]
    table = compute(
        "classification",
        predictions=[names.index(t) for t in flat_pred],
        references=[names.index(t) if t in names else -1 for t in flat_gold],
        labels=list(range(len(names))),
        label_names=names,
    )
    return {
        **metrics,
        "per_class": metrics["per_type"],
        "confusion_matrix": table["confusion_matrix"],
        "labels": names,
    }, records


def word_predictions(logits: np.ndarray, word_ids: list[int | None], n_words: int, id2label: dict[int, str]):
    """Return (tag per word, mean top probability): each word takes its first sub-token's prediction.

    Words cut off by truncation are predicted `O` (they count as misses if they hold an entity).
    """
    from hfllm.tasks.classification import softmax

    probs = softmax(np.asarray(logits, dtype=np.float64))
    tags, scores, seen = ["O"] * n_words, [], set()
    for position, word in enumerate(word_ids):
        if word is None or word in seen:
            continue
        seen.add(word)
        best = int(probs[position].argmax())
        tags[word] = id2label[best]
        scores.append(float(probs[position, best]))
    return tags, round(float(np.mean(scores)), 6) if scores else 0.0


def evaluate_masked_lm(model: Any, tokenizer: Any, dataset: Any, batch_size: int, seed: int):
    """Return perplexity and masked-token accuracy over fixed evaluation masks, and per-row records."""
    import torch

    from hfllm.config.schemas.pretrain import MaskingSection
    from hfllm.tasks.mlm_collator import EVAL_EPOCH, make_mlm_collator

    collator = make_mlm_collator(tokenizer, MaskingSection(), seed)
    collator.epoch = EVAL_EPOCH  # the same masks as pretrain's evaluation with this seed
    rows = list(
        dataset.select_columns([c for c in ("input_ids", "attention_mask") if c in dataset.column_names])
    )
    device = next(model.parameters()).device
    predictions, references, nll, records = [], [], [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collator(rows[start : start + batch_size])
            labels = batch.pop("labels")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            log_probs = torch.log_softmax(logits, dim=-1)
            for j in range(len(labels)):
                masked = labels[j] != IGNORE_INDEX
                gold = labels[j][masked]
                row_nll = (-log_probs[j][masked].gather(-1, gold[:, None])[:, 0]).tolist()
                pred = log_probs[j][masked].argmax(-1)
                predictions += pred.tolist()
                references += gold.tolist()
                nll += row_nll
                records.append(
                    {
                        "id": start + j,
                        "gold": tokenizer.convert_ids_to_tokens(gold.tolist()),
                        "predicted": tokenizer.convert_ids_to_tokens(pred.tolist()),
                        "nll": [round(x, 6) for x in row_nll],
                    }
                )
    return compute("masked_lm", predictions=predictions, references=references, nll=nll), records


def write_class_outputs(output_dir: Path, metrics: dict[str, Any], title: str) -> dict[str, str]:
    """Write the per-class report and the confusion matrix (when the task has them); return their paths."""
    files = {}
    if metrics.get("per_class"):
        files["report"] = str(write_report(output_dir / "per_class.txt", metrics["per_class"], title))
    if metrics.get("confusion_matrix") is not None and metrics.get("labels"):
        files["confusion_matrix"] = str(
            plot_confusion_matrix(
                metrics["confusion_matrix"], metrics["labels"], output_dir / "confusion_matrix.png", title
            )
        )
    return files


def write_predictions(path: Path, records: list[dict[str, Any]]) -> None:
    """Write one JSON object per example, atomically (temp name, then rename)."""
    from hfllm.fsutil import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(clean(r), ensure_ascii=False) + "\n" for r in records))
    log.info("wrote %d predictions to %s", len(records), path)
