"""Instruction data (task causal-lm): chats read from prompt/response or `messages` rows, rendered with
the chat template, tokenized with labels on the assistant turns only, optionally packed several to a row.

Labels: IGNORE_INDEX (-100) on every system, user and template token; the token ids themselves on
each assistant turn, including what closes it (EOS, <|im_end|>), so the model learns to stop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hfllm.data.chat import assistant_spans, parse_messages
from hfllm.data.cleaning import STEPS, text_hash
from hfllm.errors import InputError

IGNORE_INDEX = -100
MESSAGES = "messages"  # the ingested column: the chat as JSON text


def record_messages(record: dict, data) -> list[dict[str, str]]:
    """Return the chat of one input record; raise ValueError saying what is missing or wrong.

    A record with `data.messages_column` is a chat; else `data.prompt_column` and
    `data.response_column` (and `data.system_column` when set) make a one-turn chat.
    """
    if data.messages_column in record:
        chat = parse_messages(record[data.messages_column])
    else:
        missing = [c for c in (data.prompt_column, data.response_column) if c not in record]
        if missing:
            raise ValueError(
                f"no column {missing[0]!r} (nor {data.messages_column!r}); the columns are: "
                f"{', '.join(map(str, record)) or '(none)'}"
            )
        chat = []
        if data.system_column and record.get(data.system_column) is not None:
            chat.append({"role": "system", "content": _text(record[data.system_column], data.system_column)})
        chat.append({"role": "user", "content": _text(record[data.prompt_column], data.prompt_column)})
        chat.append(
            {"role": "assistant", "content": _text(record[data.response_column], data.response_column)}
        )
    if not any(m["role"] == "assistant" and m["content"].strip() for m in chat):
        raise ValueError("no non-empty assistant response: nothing for the model to learn")
    return chat


def _text(value: Any, column: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"column {column!r} must be text, not {type(value).__name__}")


def check_messages_batch(batch: dict[str, list]) -> dict[str, Any]:
    """Return `_changed`, `_drop` and `_hash` for chats: text is kept as written (code, indentation)."""
    replaced_bit = 1 << STEPS.index("decode_replaced")
    return {
        "_changed": [replaced_bit if r else 0 for r in batch["_replaced"]],
        "_drop": [0] * len(batch[MESSAGES]),
        "_hash": [text_hash(m) for m in batch[MESSAGES]],
    }


def training_texts(batch_messages: list[str]) -> list[str]:
    """Return the message contents of a batch of chats (for training a tokenizer on instruction data)."""
    return [m["content"] for chat in batch_messages for m in json.loads(chat)]


def encode_chat(tokenizer: Any, chat: list[dict[str, str]], max_length: int) -> dict[str, Any]:
    """Return input_ids and labels of one chat (labels -100 outside assistant turns), cut to max_length.

    `_length` is the length before truncation; a chat whose responses all lie beyond max_length
    keeps no label and is dropped later (counted).
    """
    text, spans = assistant_spans(tokenizer, chat)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    starts = np.asarray([start for start, _ in offsets], dtype=np.int64)
    learn = np.zeros(len(ids), dtype=bool)
    for begin, end in spans:
        learn |= (starts >= begin) & (starts < end)
    labels = np.where(learn, np.asarray(ids, dtype=np.int64), IGNORE_INDEX)
    return {
        "input_ids": ids[:max_length],
        "labels": labels[:max_length].tolist(),
        "_length": len(ids),
    }


def encode_chat_batch(batch: dict[str, list], tokenizer: Any, max_length: int) -> dict[str, list]:
    """Return the encoded chats of a batch (input_ids, labels, _length, _labelled)."""
    out: dict[str, list] = {"input_ids": [], "labels": [], "_length": [], "_labelled": []}
    for raw in batch[MESSAGES]:
        row = encode_chat(tokenizer, json.loads(raw), max_length)
        for key in ("input_ids", "labels", "_length"):
            out[key].append(row[key])
        out["_labelled"].append(sum(1 for x in row["labels"] if x != IGNORE_INDEX))
    return out


def pack_rows(lengths: np.ndarray, max_length: int) -> list[list[int]]:
    """Return groups of consecutive row indices whose lengths sum to at most max_length (first fit, in order)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(lengths.tolist()):
        if current and used + n > max_length:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        groups.append(current)
    return groups


def pack_examples(encoded, max_length: int, path: Path):
    """Return a Dataset of packed rows (input_ids, labels, position_ids restarting at each example)."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets.arrow_writer import ArrowWriter

    features = Features(
        {
            "input_ids": Sequence(Value("int32")),
            "labels": Sequence(Value("int32")),
            "position_ids": Sequence(Value("int32")),
        }
    )
    ids_col = encoded.data.column("input_ids").combine_chunks()
    lengths = ids_col.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    ids = ids_col.flatten().to_numpy(zero_copy_only=False)
    labels = encoded.data.column("labels").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    writer = ArrowWriter(features=features, path=str(path))
    try:
        rows: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
        for group in pack_rows(lengths, max_length):
            begin, end = offsets[group[0]], offsets[group[-1] + 1]
            rows["input_ids"].append(ids[begin:end].tolist())
            rows["labels"].append(labels[begin:end].tolist())
            rows["position_ids"].append([p for i in group for p in range(lengths[i])])
            if len(rows["input_ids"]) >= 1000:
                writer.write_batch(rows)
                rows = {key: [] for key in rows}
        if rows["input_ids"]:
            writer.write_batch(rows)
        writer.finalize()
    finally:
        writer.close()
    return Dataset.from_file(str(path))


def pack_chat(ds, tokenizer: Any, config, work: Path, name: str, tokenize_map):
    """Return the split's chats as labelled examples (packed when packing.pack_examples) and their counts."""
    max_length = config.packing.max_length
    kwargs = {"tokenizer": tokenizer, "max_length": max_length}
    try:
        encoded = tokenize_map(
            ds.select_columns([MESSAGES]),
            encode_chat_batch,
            config,
            work,
            f"chat-{name}",
            fn_kwargs=kwargs,
            remove_columns=[MESSAGES],
        )
    except ValueError as exc:  # a template that rewrites earlier turns
        raise InputError(f"chat_template: {exc}", "use chat_template: chatml or plain") from None
    before = encoded.data.column("_length").to_numpy().astype(np.int64)
    labelled = encoded.data.column("_labelled").to_numpy().astype(np.int64)
    kept = np.flatnonzero(labelled > 0)
    counts = {
        "documents": len(before),
        "tokens": int(before.sum()),
        "tokens_truncated": int(np.maximum(before - max_length, 0).sum()),
        "examples_truncated": int((before > max_length).sum()),
        "examples_dropped_no_response": int(len(before) - len(kept)),
        "label_tokens": int(labelled.sum()),
    }
    counts["tokens_in_examples"] = counts["tokens"] - counts["tokens_truncated"]
    counts["unk_tokens"] = 0 if tokenizer.unk_token_id is None else _count(encoded, tokenizer.unk_token_id)
    encoded = encoded.select(kept) if len(kept) < len(before) else encoded
    encoded = encoded.remove_columns(["_length", "_labelled"])
    if config.packing.pack_examples and len(encoded):
        encoded = pack_examples(encoded, max_length, work / f"packed-{name}.arrow")
    counts["examples"] = len(encoded)
    return encoded.with_format(None), counts


def _count(ds, token_id: int) -> int:
    import pyarrow.compute as pc

    if len(ds) == 0:
        return 0
    flat = pc.list_flatten(ds.data.column("input_ids"))
    return int(pc.sum(pc.equal(flat, token_id)).as_py() or 0)


def prompt_text(tokenizer: Any, chat: list[dict[str, str]]) -> str:
    """Return the text a model is prompted with for the chat up to its first assistant turn.

    The same text opens that chat's training example (see encode_chat), and `hfllm generate`
    prompts with it: both call render_chat on the template saved in the tokenizer.
    """
    from hfllm.data.chat import render_chat

    first = next((i for i, m in enumerate(chat) if m["role"] == "assistant"), len(chat))
    return render_chat(tokenizer, chat[:first], add_generation_prompt=True)


def check_instruction_tokenizer(model_tokenizer: Any, data: Any, model_source: str) -> None:
    """Raise InputError unless instruction data (a DataDir) was tokenized with the model's tokenizer.

    The data's own tokenizer may have grown by a chat template's tokens (chatml); what must match the
    model's is the tokenizer before that (manifest `chat.source_fingerprint`). Train with the data
    dir's tokenizer (it carries the template) and resize the model's embeddings to it
    (hfllm.models.causal.fit_embeddings).
    """
    from hfllm.data.datadir import tokenizer_fingerprint
    from hfllm.models.preflight import check_tokenizer_match

    chat = data.manifest.get("chat") or {}
    recorded = chat.get("source_fingerprint") or data.manifest.get("tokenizer", {}).get("fingerprint")
    check_tokenizer_match(tokenizer_fingerprint(model_tokenizer), recorded, model_source, str(data.path))
