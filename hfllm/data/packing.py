"""Tokenize documents and pack them: `group` into max_length blocks, `line` one example per document.

Every token is accounted for: tokens = tokens in examples + tokens dropped (group) or truncated (line).
"""

from __future__ import annotations

import functools
from itertools import chain
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=4)
def backend_from(spec: str):
    """Return a `tokenizers.Tokenizer` from its JSON, set to encode plainly (cached per worker process)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(spec)
    tok.no_truncation()
    tok.no_padding()
    # "[SEP]" written in a document is text, not a separator: a corpus must not inject special tokens.
    tok.encode_special_tokens = True
    return tok


def special_ids(tokenizer) -> tuple[list[int], list[int], list[int]]:
    """Return the ids that open a block, close it, and separate documents inside it.

    BERT style: [CLS] ... [SEP], documents separated by [SEP]; RoBERTa style: <s> ... </s> with </s>.
    A tokenizer with none of these (e.g. GPT-2's) packs plain text with only its end-of-text token.
    """
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    as_list = [] if first is None else [first]
    closing = [] if last is None else [last]
    return as_list, closing, closing


def _list_array(lengths: np.ndarray, values: np.ndarray):
    import pyarrow as pa

    # 32-bit offsets (Arrow `list`, what datasets' Sequence is): one batch stays far below 2**31 tokens.
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def tokenize_table(table, spec: str, column: str):
    """Return an Arrow table with the `input_ids` (int32, no special tokens) of each document in `table`."""
    import pyarrow as pa

    encodings = backend_from(spec).encode_batch_fast(
        table.column(column).to_pylist(), add_special_tokens=False
    )
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    values = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return pa.table({"input_ids": _list_array(lengths, values)})


def line_table(table, spec: str, column: str, max_length: int, prefix: list[int], suffix: list[int]):
    """Return one truncated example per document, with `_length` (tokens before truncation) for the counts."""
    import pyarrow as pa

    budget = max_length - len(prefix) - len(suffix)
    encodings = backend_from(spec).encode_batch_fast(
        table.column(column).to_pylist(), add_special_tokens=False
    )
    rows, masks, lengths = [], [], []
    special = [1] * len(prefix), [1] * len(suffix)
    for enc in encodings:
        ids = enc.ids
        lengths.append(len(ids))
        body = ids[:budget]
        rows.append(prefix + body + suffix)
        masks.append(special[0] + [0] * len(body) + special[1])
    sizes = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(sizes.sum()))
    special_mask = np.fromiter(chain.from_iterable(masks), dtype=np.int8, count=int(sizes.sum()))
    return pa.table(
        {
            "input_ids": _list_array(sizes, flat),
            "attention_mask": _list_array(sizes, np.ones(len(flat), dtype=np.int8)),
            "special_tokens_mask": _list_array(sizes, special_mask),
            "_length": pa.array(lengths, type=pa.int32()),
        }
    )


def block_features():
    """Return the Features of packed examples."""
    from datasets import Features, Sequence, Value

    return Features(
        {
            "input_ids": Sequence(Value("int32")),
            "attention_mask": Sequence(Value("int8")),
            "special_tokens_mask": Sequence(Value("int8")),
        }
    )


class BlockPacker:
    """Cut the stream of documents (each followed by a separator) into blocks, carrying the rest forward.

    The carry crosses batch boundaries, so only the very end of a split can be short; the HF example's
    group_texts drops a remainder in every map batch instead (up to max_length-1 tokens per 1,000 docs).
    """

    def __init__(
        self,
        max_length: int,
        prefix: list[int],
        suffix: list[int],
        separator: list[int],
        unk_id,
        doc_prefix: list[int] | None = None,
    ):
        self.body = max_length - len(prefix) - len(suffix)
        self.prefix, self.suffix, self.separator = prefix, suffix, separator
        self.doc_prefix = list(doc_prefix or [])  # causal: ids before each document (Llama's BOS)
        self.unk_id = -1 if unk_id is None else unk_id
        self.carry_ids = np.empty(0, dtype=np.int32)
        self.carry_special = np.empty(0, dtype=np.int8)
        self.counts = {"documents": 0, "tokens": 0, "unk_tokens": 0, "blocks": 0, "tokens_in_blocks": 0}
        self.counts.update({"special_tokens": 0, "tokens_dropped": 0, "separators_dropped": 0})

    def feed(self, lengths: np.ndarray, values: np.ndarray):
        """Add documents (token lengths and concatenated ids); return the table of full blocks, or None."""
        self.counts["documents"] += len(lengths)
        self.counts["tokens"] += len(values)
        self.counts["unk_tokens"] += int((values == self.unk_id).sum())
        ids, special = values, np.zeros(len(values), dtype=np.int8)
        if self.separator or self.doc_prefix:
            ends = np.cumsum(lengths)
            # Where a document ends and the next starts, the separator goes first, then the prefix.
            at = [ends] * len(self.separator[:1]) + [ends - lengths] * len(self.doc_prefix)
            fill = self.separator[:1] + self.doc_prefix
            where = np.concatenate(at)
            what = np.concatenate([np.full(len(a), f, dtype=np.int32) for a, f in zip(at, fill, strict=True)])
            order = np.argsort(where, kind="stable")
            ids = np.insert(values, where[order], what[order])
            special = np.insert(special, where[order], 1)
        ids = np.concatenate([self.carry_ids, ids])
        special = np.concatenate([self.carry_special, special])
        full = len(ids) // self.body * self.body
        self.carry_ids, self.carry_special = ids[full:], special[full:]
        return self._blocks(ids[:full], special[:full]) if full else None

    def finish(self, keep: bool):
        """Return the last short block (keep) or count it as dropped; None when nothing is left."""
        ids, special = self.carry_ids, self.carry_special
        self.carry_ids, self.carry_special = ids[:0], special[:0]
        if len(ids) == 0:
            return None
        if keep:
            return self._blocks(ids, special, rows=1)
        self.counts["separators_dropped"] += int(special.sum())
        self.counts["tokens_dropped"] += int(len(ids) - special.sum())
        return None

    def _blocks(self, ids: np.ndarray, special: np.ndarray, rows: int | None = None):
        import pyarrow as pa

        rows = rows or len(ids) // self.body
        ids, special = ids.reshape(rows, -1), special.reshape(rows, -1)
        self.counts["tokens_in_blocks"] += int(ids.size - special.sum())
        pre = np.broadcast_to(np.asarray(self.prefix, dtype=np.int32), (rows, len(self.prefix)))
        post = np.broadcast_to(np.asarray(self.suffix, dtype=np.int32), (rows, len(self.suffix)))
        ones = (np.ones((rows, len(self.prefix)), np.int8), np.ones((rows, len(self.suffix)), np.int8))
        block_ids = np.hstack([pre, ids, post]).ravel()
        block_special = np.hstack([ones[0], special, ones[1]]).ravel()
        self.counts["blocks"] += rows
        self.counts["special_tokens"] += int(block_special.sum())
        lengths = np.full(rows, block_ids.size // rows, dtype=np.int64)
        return pa.table(
            {
                "input_ids": _list_array(lengths, block_ids),
                "attention_mask": _list_array(lengths, np.ones(block_ids.size, dtype=np.int8)),
                "special_tokens_mask": _list_array(lengths, block_special),
            }
        )


def group_blocks(
    texts, spec: str, packer: BlockPacker, keep_remainder: bool, path: Path, batch_size: int, desc: str
):
    """Tokenize a split's one text column batch by batch and pack it into blocks in an Arrow file at `path`.

    One streaming pass (read -> encode on the tokenizer's threads -> cut -> write): memory holds one
    batch and the carry, whatever the corpus size. Returns the Dataset of blocks.
    """
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    from hfllm.output import progress

    writer = ArrowWriter(features=block_features(), path=str(path))
    bar = progress(len(texts), desc)
    try:
        for table in texts.with_format("arrow").iter(batch_size=batch_size):
            column = tokenize_table(table, spec, table.column_names[0]).column("input_ids").combine_chunks()
            lengths = column.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
            values = column.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            out = packer.feed(lengths, values)
            if out is not None:
                writer.write_table(out)
            bar.update(len(table))
        last = packer.finish(keep_remainder)
        if last is not None:
            writer.write_table(last)
        writer.finalize()
    finally:
        writer.close()
        bar.close()
    return Dataset.from_file(str(path))
