"""`hfllm predict`: stream lines in, one JSON object per good line out, in input order, batched.

Input lines are plain text, or JSON objects with a `text` field (and optionally `text_pair` and
`id`, which is echoed). A bad line (empty, broken JSON, no text, no [MASK] for a masked LM) is
reported on stderr with its line number and skipped, unless --strict. Lines are read in chunks of a
few batches; each chunk is sorted by length so batches pad little, and written back in order. The
next chunk is tokenized on a second thread while the model runs on this one (the Rust tokenizer
and torch both release the GIL), and the model runs in `--precision` (hfllm.precision.for_inference).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hfllm.errors import InputError
from hfllm.inference.batching import length_batches
from hfllm.models.loader import load_for_inference
from hfllm.output import log
from hfllm.tasks.classification import (
    MASKED_LM,
    MULTI,
    REGRESSION,
    TOKEN,
    problem_type_of,
    sequence_outputs,
    softmax,
)

CHUNK_BATCHES = 8  # batches per chunk: enough to sort by length, small enough to stream


@dataclass
class Item:
    """One good input line."""

    line: int
    text: str
    text_pair: str | None = None
    id: Any = None


@dataclass
class Stats:
    lines: int = 0
    predicted: int = 0
    bad: list[int] = field(default_factory=list)


def parse_line(raw: str, number: int) -> Item:
    """Return the Item of one input line; raise ValueError saying what is wrong with it."""
    text = raw.rstrip("\r\n")
    try:
        text.encode("utf-8")  # bytes that were not UTF-8 arrive as lone surrogates (surrogateescape)
    except UnicodeEncodeError as exc:
        raise ValueError(f"not UTF-8 text (column {exc.start + 1})") from None
    if not text.strip():
        raise ValueError("empty line")
    if text.lstrip().startswith("{"):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise ValueError('JSON line without a non-empty string "text" field')
        pair = record.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise ValueError('"text_pair" must be a string')
        return Item(number, value, pair, record.get("id"))
    return Item(number, text)


class Predictor:
    """A loaded model and the settings that turn a list of Items into output records."""

    def __init__(
        self,
        model_dir: Path,
        batch_size: int,
        all_scores: bool,
        top_k: int,
        max_length: int | None,
        precision: str = "auto",
    ):
        from hfllm.precision import for_inference

        model, self.tokenizer, self.task = load_for_inference(model_dir)
        self.model, self.precision = for_inference(model, precision)
        log.info("precision: %s", self.precision)
        config = self.model.config
        positions = getattr(config, "max_position_embeddings", 512)
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= (config.pad_token_id or 0) + 1
        self.max_length = min(
            max_length or positions, positions, self.tokenizer.model_max_length or positions
        )
        self.batch_size, self.all_scores, self.top_k = batch_size, all_scores, top_k
        self.id2label = {int(i): str(n) for i, n in (config.id2label or {}).items()}
        self.problem_type = problem_type_of(config) if self.task not in (TOKEN, MASKED_LM) else None
        self.device = next(self.model.parameters()).device

    def check(self, item: Item) -> None:
        """Raise ValueError for an item this model cannot predict."""
        if self.task == MASKED_LM and self.tokenizer.mask_token not in item.text:
            raise ValueError(f"no {self.tokenizer.mask_token} token to fill in")

    def predict(self, items: list[Item]) -> list[dict[str, Any]]:
        """Return one output record per item, in the items' order."""
        return self.infer(items, self.encode(items))

    def encode(self, items: list[Item]) -> Any:
        """Return the tokenized items (safe to run on another thread than `infer`)."""
        pairs = [i.text_pair for i in items] if any(i.text_pair is not None for i in items) else None
        if pairs is not None:
            pairs = [p or "" for p in pairs]
        return self.tokenizer(
            [i.text for i in items],
            pairs,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=self.task == TOKEN,
        )

    def infer(self, items: list[Item], encoded: Any) -> list[dict[str, Any]]:
        """Return one output record per item from its tokenization, in the items' order."""
        out: list[dict[str, Any] | None] = [None] * len(items)
        for batch in length_batches([len(ids) for ids in encoded["input_ids"]], self.batch_size):
            logits = self._forward(encoded, batch)
            for j, i in enumerate(batch):
                record = {"line": items[i].line}
                if items[i].id is not None:
                    record["id"] = items[i].id
                record.update(self._record(items[i], encoded, i, logits[j]))
                out[i] = record
        return out  # type: ignore[return-value]

    def _forward(self, encoded: Any, batch: list[int]) -> np.ndarray:
        import torch

        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        padded = self.tokenizer.pad([{k: encoded[k][i] for k in keys} for i in batch], return_tensors="pt")
        with torch.inference_mode():
            return (
                self.model(**{k: v.to(self.device) for k, v in padded.items()}).logits.float().cpu().numpy()
            )

    def _record(self, item: Item, encoded: Any, i: int, logits: np.ndarray) -> dict[str, Any]:
        if self.task == TOKEN:
            return {
                "entities": entity_spans(
                    item.text, logits, encoded.word_ids(i), encoded["offset_mapping"][i], self.id2label
                )
            }
        if self.task == MASKED_LM:
            return {"masks": self._fill(encoded["input_ids"][i], logits)}
        return self._classify(logits)

    def _classify(self, logits: np.ndarray) -> dict[str, Any]:
        predictions, scores = sequence_outputs(logits[None], self.problem_type)
        if self.problem_type == REGRESSION:
            return {"value": float(predictions[0])}
        names = [self.id2label[k] for k in range(len(self.id2label))]
        every = {n: round(float(s), 6) for n, s in zip(names, scores[0], strict=True)}
        if self.problem_type == MULTI:
            return {
                "labels": [n for n, hit in zip(names, predictions[0], strict=True) if hit],
                "scores": every,
            }
        best = int(predictions[0])
        record = {"label": names[best], "score": every[names[best]]}
        if self.all_scores:
            record["scores"] = every
        return record

    def _fill(self, input_ids: list[int], logits: np.ndarray) -> list[list[dict[str, Any]]]:
        masks = [p for p, t in enumerate(input_ids) if t == self.tokenizer.mask_token_id]
        result = []
        for position in masks:
            probs = softmax(logits[position][None])[0]
            top = np.argsort(-probs)[: self.top_k]
            result.append(
                [
                    {
                        "token": self.tokenizer.convert_ids_to_tokens(int(t)),
                        "token_id": int(t),
                        "score": round(float(probs[t]), 6),
                    }
                    for t in top
                ]
            )
        return result


def entity_spans(
    text: str, logits: np.ndarray, word_ids: list, offsets: list, id2label: dict[int, str]
) -> list[dict]:
    """Return the BIO entities of one text as {entity, start, end, text, score} with character offsets.

    Each word takes the tag of its first sub-token (as in training); an entity runs from a B-X (or
    an I-X that does not continue an X) through the following I-X words.
    """
    probs = softmax(np.asarray(logits, dtype=np.float64))
    words: dict[int, dict[str, Any]] = {}
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        start, end = offsets[position]
        if word not in words:
            best = int(probs[position].argmax())
            words[word] = {
                "tag": id2label[best],
                "score": float(probs[position, best]),
                "start": start,
                "end": end,
            }
        else:
            words[word]["end"] = end
    spans: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for word in sorted(words):
        prefix, _, kind = words[word]["tag"].partition("-")
        if current is not None and (prefix != "I" or kind != current["entity"]):
            spans.append(current)
            current = None
        if prefix in ("B", "I") and kind and current is None:
            current = {"entity": kind, "start": words[word]["start"], "end": words[word]["end"], "scores": []}
        if current is not None:
            current["end"] = words[word]["end"]
            current["scores"].append(words[word]["score"])
    if current is not None:
        spans.append(current)
    for span in spans:
        scores = span.pop("scores")
        span["text"] = text[span["start"] : span["end"]]
        span["score"] = round(float(np.mean(scores)), 6)
    return spans


def read_chunks(
    stream: Iterable[str], size: int, predictor: Predictor, stats: Stats, strict: bool, name: str
) -> Iterator[list[Item]]:
    """Yield lists of up to `size` good Items; report (or, with strict, raise on) bad lines."""
    chunk: list[Item] = []
    for number, raw in enumerate(stream, start=1):
        stats.lines = number
        try:
            item = parse_line(raw, number)
            predictor.check(item)
        except ValueError as exc:
            if strict:
                raise InputError(
                    f"{name}:{number}: {exc}", "fix the line, or drop --strict to skip bad lines"
                ) from None
            stats.bad.append(number)
            sys.stderr.write(f"hfllm: {name}:{number}: skipped: {exc}\n")
            continue
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_predict(
    model_dir: Path,
    source: str,
    batch_size: int = 64,
    all_scores: bool = False,
    top_k: int = 5,
    strict: bool = False,
    max_length: int | None = None,
    precision: str = "auto",
) -> Stats:
    """Write one JSON line per good input line to stdout; return the counts (also logged with lines/s)."""
    name = "<stdin>" if source == "-" else source
    stats = Stats()
    with _open(source) as stream:
        # Read the first line before loading the model: empty input fails fast, without torch.
        first = stream.readline()
        if not first:
            raise InputError(
                f"{name}: empty input, nothing to predict",
                "give lines of text, or JSON lines with a `text` field",
            )
        if "\0" in first:  # text has no NUL bytes: do not load the model to skip every line of a binary
            raise InputError(
                f"{name}: looks like a binary file (NUL byte on line 1), not lines of text",
                "give UTF-8 lines of text, or JSON lines with a `text` field",
            )
        predictor = Predictor(Path(model_dir), batch_size, all_scores, top_k, max_length, precision)
        started = time.time()
        chunks = read_chunks(
            itertools.chain([first], stream), batch_size * CHUNK_BATCHES, predictor, stats, strict, name
        )
        try:
            for records in predicted_chunks(predictor, chunks):
                sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
                sys.stdout.flush()
                stats.predicted += len(records)
        except BrokenPipeError:  # e.g. `| head`: the reader has what it wanted; exit quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return stats
    if stats.predicted == 0:
        raise InputError(
            f"{name}: none of the {stats.lines} line(s) could be predicted (see the messages above)"
        )
    seconds = max(time.time() - started, 1e-9)
    log.info(
        "predicted %d line(s) in %.1f s (%.0f lines/s), %d skipped",
        stats.predicted,
        seconds,
        stats.predicted / seconds,
        len(stats.bad),
    )
    return stats


def predicted_chunks(predictor: Predictor, chunks: Iterable[list[Item]]) -> Iterator[list[dict[str, Any]]]:
    """Yield the records of each chunk, in order, tokenizing the next chunk while the model runs.

    Reading ahead means a chunk's output waits for the next chunk to be read (or the input to end);
    a --strict error in that next chunk still lets the chunk before it out first, as before.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfllm-tokenize") as pool:
        pending = None
        try:
            for chunk in chunks:
                ahead = (chunk, pool.submit(predictor.encode, chunk))
                if pending is not None:
                    yield predictor.infer(pending[0], pending[1].result())
                pending = ahead
        except InputError:
            if pending is not None:
                yield predictor.infer(pending[0], pending[1].result())
            raise
        if pending is not None:
            yield predictor.infer(pending[0], pending[1].result())


def _open(source: str):
    import contextlib

    if source == "-":
        # Undecodable bytes become a bad line (reported with its number), not a crash mid-stream.
        sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        return contextlib.nullcontext(sys.stdin)
    path = Path(source)
    if not path.is_file():
        raise InputError(
            f"input file not found: {path}", "give a file of lines, or --input - to read standard input"
        )
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")
