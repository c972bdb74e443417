"""Text cleaning: each step switchable, each counted (documents it changed or dropped)."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from typing import Any

# Bit per step in the `_changed` column, so counts come from one pass over a small int column.
STEPS = ("html", "unicode", "control", "urls", "emails", "lowercase", "whitespace", "decode_replaced")
# Reasons in the `_drop` column; 0 keeps the document. "duplicate" is decided later, across all documents.
DROP_REASONS = ("empty", "too_few_chars", "too_many_chars", "too_few_words", "too_many_words")

_SCRIPT_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
# A tag starts with a letter, `/` or `!` right after `<`, so "a < b" and "x<3" stay as they are.
_TAG = re.compile(r"<[A-Za-z/!][^<>]*>")
# C0/C1 controls except tab/newline/CR (whitespace, handled by the whitespace step), plus zero-width
# and bidirectional format characters that are invisible but split or glue words.
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
)
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"']+|\bwww\.[^\s<>\"']+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b")


def clean_text(text: str, clean) -> tuple[str, int]:
    """Return the cleaned text and a bit mask of the steps that changed it."""
    changed = 0
    steps = (
        ("html", clean.html, _strip_html),
        (
            "unicode",
            clean.unicode_normalization != "none",
            lambda t: _normalize(t, clean.unicode_normalization),
        ),
        ("control", clean.remove_control, lambda t: _CONTROL.sub("", t)),
        ("urls", clean.replace_urls is not None, lambda t: _URL.sub(clean.replace_urls or "", t)),
        ("emails", clean.replace_emails is not None, lambda t: _EMAIL.sub(clean.replace_emails or "", t)),
        ("lowercase", clean.lowercase, str.lower),
        ("whitespace", clean.collapse_whitespace, _collapse),
    )
    for bit, (_name, enabled, step) in enumerate(steps):
        if enabled:
            new = step(text)
            if new != text:
                changed |= 1 << bit
                text = new
    return text, changed


def _collapse(text: str) -> str:
    # str.split() with no argument splits on runs of any Unicode whitespace, in C: 5x a regex here.
    return " ".join(text.split())


def _strip_html(text: str) -> str:
    if "<" not in text and "&" not in text:
        return text
    text = _TAG.sub(" ", _SCRIPT_STYLE.sub(" ", text))
    return html.unescape(text)


def _normalize(text: str, form: str) -> str:
    return text if unicodedata.is_normalized(form, text) else unicodedata.normalize(form, text)


def drop_reason(text: str, clean) -> int:
    """Return 0 to keep the document, else 1 + the index of its reason in DROP_REASONS."""
    if not text.strip():
        return 1
    if len(text) < clean.min_chars:
        return 2
    if clean.max_chars is not None and len(text) > clean.max_chars:
        return 3
    if clean.min_words or clean.max_words is not None:
        words = len(text.split())
        if words < clean.min_words:
            return 4
        if clean.max_words is not None and words > clean.max_words:
            return 5
    return 0


def text_hash(*parts: str) -> int:
    """Return a signed 64-bit hash of the parts (exact de-duplication; collisions are ~n²/2⁶⁴)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def clean_batch(batch: dict[str, list], clean, text_column: str, pair_column: str | None) -> dict[str, Any]:
    """Return a batch with the text (and pair) cleaned plus `_changed`, `_drop` and `_hash` columns."""
    texts, pairs = [], []
    changed_bits, drops, hashes = [], [], []
    replaced_bit = 1 << STEPS.index("decode_replaced")
    for i, raw in enumerate(batch[text_column]):
        text, changed = clean_text(raw or "", clean)
        pair = None
        if pair_column is not None:
            pair, pair_changed = clean_text(batch[pair_column][i] or "", clean)
            changed |= pair_changed
        if batch["_replaced"][i]:
            changed |= replaced_bit
        texts.append(text)
        pairs.append(pair)
        changed_bits.append(changed)
        drops.append(drop_reason(text, clean))
        hashes.append(text_hash(text, pair) if pair is not None else text_hash(text))
    out = {text_column: texts, "_changed": changed_bits, "_drop": drops, "_hash": hashes}
    if pair_column is not None:
        out[pair_column] = pairs
    return out


def check_tokens_batch(batch: dict[str, list], tokens_column: str, tags_column: str) -> dict[str, Any]:
    """Return `_changed`, `_drop` and `_hash` for pre-split (tokens, tags) examples: only empty ones drop."""
    drops, hashes = [], []
    for tokens, tags in zip(batch[tokens_column], batch[tags_column], strict=True):
        drops.append(0 if tokens else 1)
        hashes.append(text_hash("\x1e".join(tokens), "\x1e".join(tags)))
    replaced_bit = 1 << STEPS.index("decode_replaced")
    changed = [replaced_bit if r else 0 for r in batch["_replaced"]]
    return {"_changed": changed, "_drop": drops, "_hash": hashes}


def count_steps(changed_column) -> dict[str, int]:
    """Return, per cleaning step, how many documents it changed (from the `_changed` bit masks)."""
    import numpy as np

    bits = np.asarray(changed_column, dtype=np.int64)
    return {name: int(((bits >> i) & 1).sum()) for i, name in enumerate(STEPS)}


def count_drops(drop_column) -> dict[str, int]:
    """Return how many documents each filter dropped."""
    import numpy as np

    codes = np.bincount(np.asarray(drop_column, dtype=np.int64), minlength=len(DROP_REASONS) + 1)
    return {name: int(codes[i + 1]) for i, name in enumerate(DROP_REASONS)}


# model/cleaning.json: the text cleaning of the data a model was trained on, for inference to repeat.
CLEANING_FILE = "cleaning.json"
# Stands in for a mask token while a masked-LM input is cleaned (lowercase would break `[MASK]`).
_KEEP = "\ue000"


def cleaning_record(data_dir, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Return the content of model/cleaning.json for a model trained on `data_dir`: the preprocess `clean:`
    settings its text went through, or `clean: null` when its text was not cleaned (pre-split words,
    chats); None when the data dir does not say (no config.yaml)."""
    from pathlib import Path

    import yaml

    path = Path(data_dir) / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    clean = config.get("clean") if isinstance(config, dict) else None
    cleaned = not manifest.get("tokens_column") and manifest.get("task") != "causal-lm"
    return {
        "clean": clean if cleaned and isinstance(clean, dict) else None,
        "data_dir": str(data_dir),
        "applies_to": "the text of predict, generate (plain prompts) and evaluate (raw files); "
        "the filters (min_chars, dedup, ...) are not applied",
    }


def recorded_cleaning(model_dir) -> Any:
    """Return the CleanSection recorded in `model_dir`/cleaning.json, or None (no record, or text that
    was not cleaned). A broken record is an InputError naming the file."""
    import json
    from pathlib import Path

    from pydantic import ValidationError

    from hfllm.config.schemas.preprocess import CleanSection
    from hfllm.errors import InputError

    path = Path(model_dir) / CLEANING_FILE
    if not path.is_file():
        return None
    try:
        clean = json.loads(path.read_text(encoding="utf-8")).get("clean")
        return None if clean is None else CleanSection.model_validate(clean)
    except (ValueError, AttributeError, UnicodeDecodeError, ValidationError) as exc:
        reason = str(exc).splitlines()[0]
        raise InputError(
            f"{path}: unreadable cleaning record ({reason})", "restore it from the run, or delete it"
        ) from None


def inference_cleaner(model_dir, keep: str | None = None):
    """Return a function that cleans one input text as the model's training text was cleaned (identity
    when the model records no cleaning). `keep`: a token left as written (a masked LM's [MASK])."""
    clean = recorded_cleaning(model_dir)
    if clean is None:
        return lambda text: text

    def cleaner(text: str) -> str:
        if keep:
            return clean_text(text.replace(keep, _KEEP), clean)[0].replace(_KEEP, keep)
        return clean_text(text, clean)[0]

    return cleaner
