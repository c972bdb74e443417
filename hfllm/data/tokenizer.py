"""Build the tokenizer: train WordPiece / byte-level BPE / Unigram with `tokenizers`, or load an existing one."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from hfllm.errors import InputError
from hfllm.output import progress_bars

# The special tokens each family's models expect, in the order they take the first ids.
SPECIALS = {
    "wordpiece": {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    },
    "bpe": {
        "bos_token": "<s>",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    },
    "unigram": {
        "bos_token": "<s>",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    },
}
BYTE_ALPHABET = 256
SPECIAL_NAMES = {name for family in SPECIALS.values() for name in family.values()}


def train_tokenizer(texts: Iterable[list[str]], length: int, train, max_length: int, causal: bool = False):
    """Return a fast tokenizer trained on `texts` (batches of strings) as `train` (TokenizerTrainSection) says.

    `causal`: the tokenizer adds no special tokens around a text (GPT-2 style); documents get their
    EOS from the packer, and a prompt at generation time must not end with one.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    kind = train.type
    specials = SPECIALS[kind]
    names = list(dict.fromkeys(specials.values()))
    lowercase = train.lowercase if train.lowercase is not None else kind == "wordpiece"
    _check_vocab_floor(kind, train.vocab_size, len(names))
    # Its bars only on a terminal: --quiet silences them, and a log file gets no carriage returns.
    common = {"vocab_size": train.vocab_size, "special_tokens": names, "show_progress": progress_bars()}
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=specials["unk_token"]))
        tok.normalizer = normalizers.BertNormalizer(
            lowercase=lowercase, strip_accents=None if lowercase else False
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(min_frequency=train.min_frequency, **common)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.normalizer = normalizers.Lowercase() if lowercase else None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            min_frequency=train.min_frequency, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common
        )
    else:
        tok = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(unk_token=specials["unk_token"], **common)
    try:
        with stdout_to_stderr():
            tok.train_from_iterator(texts, trainer=trainer, length=length)
    except Exception as exc:  # the Rust trainer raises plain Exceptions on impossible settings
        raise InputError(
            f"tokenizer training failed: {exc}", "check tokenizer.train.vocab_size and the data"
        ) from None
    _check_trained_size(tok, train.vocab_size)
    if kind == "unigram":
        tok = _canonical_unigram(tok, Tokenizer)
    _add_post_processor(tok, kind, specials, processors, causal)
    return _wrap(tok, kind, specials, max_length)


@contextmanager
def stdout_to_stderr():
    """Point file descriptor 1 at stderr for a while: the Rust trainer's progress must not reach stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _canonical_unigram(tok, tokenizer_cls):
    # The trainer sums scores in parallel (last-digit noise) and orders equal scores as a hash map
    # happens to; round and sort so the same data always gives the same tokenizer (specials first).
    spec = json.loads(tok.to_str())
    model = spec["model"]
    vocab = [[piece, round(score, 6)] for piece, score in model["vocab"]]
    # Characters the trainer appends last (to cover the alphabet) get made-up descending scores in
    # hash-map order: give the same scores to the same characters in sorted order.
    tail = len(vocab)
    while tail > 0 and len(vocab[tail - 1][0]) == 1 and vocab[tail - 1][0] not in SPECIAL_NAMES:
        tail -= 1
    scores = sorted((p[1] for p in vocab[tail:]), reverse=True)
    vocab[tail:] = [[c, sc] for c, sc in zip(sorted(p[0] for p in vocab[tail:]), scores, strict=True)]
    model["vocab"] = vocab
    specials = [p for p in model["vocab"] if p[0] in SPECIAL_NAMES]
    rest = sorted((p for p in model["vocab"] if p[0] not in SPECIAL_NAMES), key=lambda p: (-p[1], p[0]))
    model["vocab"] = specials + rest
    model["unk_id"] = [p[0] for p in model["vocab"]].index(SPECIALS["unigram"]["unk_token"])
    return tokenizer_cls.from_str(json.dumps(spec))


def _check_vocab_floor(kind: str, vocab_size: int, n_specials: int) -> None:
    floor = n_specials + (BYTE_ALPHABET if kind == "bpe" else 1)
    if vocab_size < floor:
        raise InputError(
            f"tokenizer.train.vocab_size {vocab_size} is smaller than the {n_specials} special tokens"
            + (f" + {BYTE_ALPHABET} byte alphabet" if kind == "bpe" else " + the alphabet"),
            f"use a vocab_size of at least {floor} (a few thousand for real text)",
        )


def _check_trained_size(tok, vocab_size: int) -> None:
    # WordPiece keeps every character it saw even past vocab_size; a vocabulary that overshoots means the
    # special tokens plus the alphabet did not fit, and the model would be built with the wrong size.
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise InputError(
            f"tokenizer.train.vocab_size {vocab_size} is smaller than the special tokens + alphabet of the "
            f"train split ({size} entries needed)",
            f"use a vocab_size of at least {size}",
        )


def _add_post_processor(tok, kind: str, specials: dict[str, str], processors, causal: bool = False) -> None:
    if causal:
        # Byte-level BPE keeps offsets on the raw text; no <s> ... </s> framing around a text.
        if kind == "bpe":
            tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return
    if kind == "wordpiece":
        cls, sep = specials["cls_token"], specials["sep_token"]
        single, pair = f"{cls} $A {sep}", f"{cls} $A {sep} $B:1 {sep}:1"
    else:
        cls, sep = specials["bos_token"], specials["eos_token"]
        single, pair = f"{cls} $A {sep}", f"{cls} $A {sep} {sep} $B {sep}"
    ids = [(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))]
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=ids)
    if kind == "bpe":
        # Byte-level BPE keeps offsets on the raw text (RoBERTa's trim_offsets), after the template.
        tok.post_processor = processors.Sequence(
            [processors.ByteLevel(trim_offsets=False), tok.post_processor]
        )


def _wrap(tok, kind: str, specials: dict[str, str], max_length: int):
    from transformers import PreTrainedTokenizerFast

    extra = {}
    if kind != "wordpiece":
        # RoBERTa / XLM-R naming: <s> is also the classifier token, </s> the separator.
        extra = {"cls_token": specials["bos_token"], "sep_token": specials["eos_token"]}
    inputs = (
        ["input_ids", "token_type_ids", "attention_mask"]
        if kind == "wordpiece"
        else ["input_ids", "attention_mask"]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=max_length, model_input_names=inputs, **specials, **extra
    )


def tokenizer_type(tokenizer) -> str:
    """Return the tokenizer model's family in lower case (wordpiece, bpe, unigram, wordlevel)."""
    return json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"].lower()


def source_files(name_or_path: str) -> list[Path]:
    """Return the files of a local tokenizer that decide what it does (for the cache key)."""
    from hfllm.models.loader import resolve

    source = resolve(name_or_path, "tokenizer.name_or_path")
    local = Path(source.location)
    if not source.local or not local.is_dir():
        return []
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "merges.txt")
    return [local / n for n in names if (local / n).exists()]
