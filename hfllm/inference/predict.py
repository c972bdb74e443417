"""`hfllm predict`: stream lines in, one JSON object per good line out, in input order, batched.

Input lines are plain text, or JSON objects with a `text` field (and optionally `text_pair` and
`id`, which is echoed). A bad line (empty, broken JSON, no text, no [MASK] for a masked LM) is
reported on stderr with its line number and skipped, unless --strict. Lines are read in chunks of a
few batches as they arrive (a partial chunk goes after a short idle time, so `tail -f | hfllm predict`
answers line by line); each chunk is sorted by length so batches pad little, and written back in order.
A second thread reads, cleans and tokenizes the next chunk while the model runs on this one (the Rust
tokenizer and torch both release the GIL), and the model runs in `--precision`
(hfllm.precision.for_inference).
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

from hfllm.data.cleaning import inference_cleaner
from hfllm.errors import InputError
from hfllm.inference.batching import length_batches
from hfllm.inference.stream import line_batches, line_text
from hfllm.models.loader import load_for_inference, resolve
from hfllm.output import log
from hfllm.tasks.classification import sequence_outputs, softmax
from hfllm.tasks.names import MASKED_LM, MULTI, REGRESSION, SEQUENCE, TOKEN, problem_type_of

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
    text = line_text(raw)
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

        model, self.tokenizer, self.task = load_for_inference(model_dir, tasks=(SEQUENCE, TOKEN, MASKED_LM))
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
        # Inputs are cleaned as the training text was (model/cleaning.json); the mask token stays as typed.
        mask = self.tokenizer.mask_token if self.task == MASKED_LM else None
        self.clean = inference_cleaner(resolve(str(model_dir), "--model").location, keep=mask)

    def check(self, item: Item) -> None:
        """Clean the item's text as the training text was; raise ValueError for one this model cannot predict."""
        item.text = self.clean(item.text)
        if item.text_pair is not None:
            item.text_pair = self.clean(item.text_pair)
        if not item.text.strip():
            raise ValueError("no text left after the model's training-time cleaning")
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
    """Return the entities of one text as {entity, start, end, text, score} with character offsets.

    Each word takes the tag of its first sub-token (as in training); entities are read from the word
    tags as the scorer reads them (hfllm.tasks.tagging: seqeval strict, IOB2 or IOBES by the label set).
    """
    from hfllm.tasks.tagging import entities, tag_scheme

    probs = softmax(np.asarray(logits, dtype=np.float64))
    words: dict[int, dict[str, Any]] = {}
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        start, end = offsets[position]
        if word not in words:
            best = int(probs[position].argmax())
            words[word] = {"tag": id2label[best], "score": float(probs[position, best]), "start": start}
        words[word]["end"] = end
    ordered = [words[w] for w in sorted(words)]
    spans = []
    for kind, first, last in entities([w["tag"] for w in ordered], tag_scheme(id2label.values())):
        start, end = ordered[first]["start"], ordered[last - 1]["end"]
        score = np.mean([w["score"] for w in ordered[first:last]])
        spans.append(
            {
                "entity": kind,
                "start": start,
                "end": end,
                "text": text[start:end],
                "score": round(float(score), 6),
            }
        )
    return spans


def read_chunks(
    stream: Iterable[str], size: int, predictor: Predictor, stats: Stats, strict: bool, name: str
) -> Iterator[list[Item]]:
    """Yield lists of up to `size` good Items as lines arrive (a partial list after a short idle time, see
    hfllm.inference.stream); report (or, with strict, raise on) bad lines."""
    for batch in line_batches(stream, size):
        chunk: list[Item] = []
        for number, raw in batch:
            stats.lines = number
            try:
                item = parse_line(raw, number)
                predictor.check(item)
            except ValueError as exc:
                if strict:
                    if chunk:  # the good lines before the bad one are answered first
                        yield chunk
                    raise InputError(
                        f"{name}:{number}: {exc}", "fix the line, or drop --strict to skip bad lines"
                    ) from None
                stats.bad.append(number)
                sys.stderr.write(f"hfllm: {name}:{number}: skipped: {exc}\n")
                continue
            chunk.append(item)
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
    """Yield the records of each chunk, in order, while a second thread reads, checks and tokenizes the next.

    Each chunk is handed over as soon as it is tokenized, so a live pipe still gets every answer before
    its next line arrives; an error of the reading side (a --strict bad line, an unreadable input) is
    raised here, after the chunks before it.
    """
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=2)  # bounded: reading runs at most two chunks ahead
    stop = threading.Event()

    def hand_over(thing: Any) -> None:
        while not stop.is_set():
            try:
                return ready.put(thing, timeout=0.5)
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for chunk in chunks:
                hand_over((chunk, predictor.encode(chunk)))
                if stop.is_set():
                    return
        except BaseException as exc:  # raised again in the caller's thread
            hand_over(exc)
        hand_over(None)

    threading.Thread(target=produce, name="hfllm-tokenize", daemon=True).start()
    try:
        while True:
            try:
                got = ready.get(timeout=0.5)  # short waits: Ctrl-C gets through
            except queue.Empty:
                continue
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield predictor.infer(*got)
    finally:
        stop.set()


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
