"""Supervised examples: labels (ClassLabel, multi-hot, regression), sequence and token classification."""

from __future__ import annotations

import json
from typing import Any

from hfllm.errors import ConfigError, InputError
from hfllm.tasks.names import IGNORE_INDEX


def label_names(values: list[str], problem_type: str) -> list[str]:
    """Return the class names in id order: numbers numerically, names alphabetically (stable across runs)."""
    if problem_type == "multi_label_classification":
        names = {name for value in values for name in _as_list(value)}
    else:
        names = set(values)
    if all(_is_int(n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def tag_names(tag_lists: list[list[str]]) -> list[str]:
    """Return the tag names in id order: "O" first (as in CoNLL data), then alphabetically."""
    names = {tag for tags in tag_lists for tag in tags}
    return sorted(names, key=lambda n: (n != "O", n))


def _as_list(value: str) -> list[str]:
    parsed = json.loads(value) if value.startswith("[") else [value]
    return [str(v) for v in parsed]


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def encode_sequence_batch(
    batch: dict[str, list], tokenizer, cols, max_length: int, problem_type: str, label2id
):
    """Return input_ids, attention_mask (token_type_ids for pairs), labels and truncation counts."""
    texts = batch[cols.text]
    pairs = batch[cols.text_pair] if cols.text_pair else None
    kwargs = {"split_special_tokens": True, "return_token_type_ids": pairs is not None}
    enc = tokenizer(texts, pairs, truncation=False, **kwargs)
    lengths = [len(ids) for ids in enc["input_ids"]]
    over = [i for i, n in enumerate(lengths) if n > max_length]
    out = {key: list(value) for key, value in enc.items()}
    if over:
        cut = tokenizer(
            [texts[i] for i in over],
            [pairs[i] for i in over] if pairs is not None else None,
            truncation=True,
            max_length=max_length,
            **kwargs,
        )
        for j, i in enumerate(over):
            for key in out:
                out[key][i] = cut[key][j]
    out["labels"] = [_encode_label(v, problem_type, label2id) for v in batch[cols.label]]
    out["_length"] = lengths
    return out


def _encode_label(value: str, problem_type: str, label2id: dict[str, int] | None) -> Any:
    if problem_type == "regression":
        try:
            return float(value)
        except ValueError:
            raise InputError(f"label {value!r} is not a number, but problem_type is regression") from None
    if problem_type == "multi_label_classification":
        hot = [0.0] * len(label2id)
        for name in _as_list(value):
            hot[label2id[name]] = 1.0
        return hot
    return label2id[value]


def encode_tokens_batch(batch: dict[str, list], tokenizer, cols, max_length: int, tag2id, label_all: bool):
    """Return input_ids, attention_mask and labels aligned to words: a word's first sub-token carries its
    tag, the others -100; with `label_all`, every sub-token is labelled and the word stays one entity
    (B-X, I-X, I-X: hfllm.tasks.tagging.subtoken_tags)."""
    enc = tokenizer(batch[cols.tokens], is_split_into_words=True, truncation=True, max_length=max_length)
    labels, words_cut = [], []
    for i, tags in enumerate(batch[cols.tags]):
        word_ids = enc.word_ids(i)
        labels.append(_word_labels(word_ids, tags, tag2id, label_all))
        seen = max((w for w in word_ids if w is not None), default=-1) + 1
        words_cut.append(len(tags) - seen)
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": labels,
        "_words_cut": words_cut,
    }


def _word_labels(word_ids: list[int | None], tags: list[str], tag2id: dict[str, int], label_all: bool):
    from collections import Counter

    from hfllm.tasks.tagging import subtoken_tags

    pieces, known = Counter(w for w in word_ids if w is not None), set(tag2id)
    row, done = [], Counter()
    for word in word_ids:
        if word is None or (done[word] and not label_all):
            row.append(IGNORE_INDEX)
        else:
            tag = subtoken_tags(tags[word], pieces[word], known)[done[word]] if label_all else tags[word]
            row.append(IGNORE_INDEX if tag is None else tag2id[tag])
        if word is not None:
            done[word] += 1
    return row


def check_fast(tokenizer) -> None:
    """Raise ConfigError when token classification gets a tokenizer without word alignment."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "token classification needs a fast tokenizer (word_ids); give one with a tokenizer.json"
        )
