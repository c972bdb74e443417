"""Unit tests of preprocess steps: each cleaning step and its count, splits, block packing counts."""

from __future__ import annotations

import numpy as np
import pytest

from hfllm.config.schemas.preprocess import CleanSection
from hfllm.data import cleaning
from hfllm.data.packing import BlockPacker
from hfllm.data.splits import assign_splits, keep_mask


def _clean(texts, **settings):
    batch = {"text": texts, "_replaced": [False] * len(texts)}
    out = cleaning.clean_batch(batch, CleanSection(**settings), "text", None)
    return out, cleaning.count_steps(out["_changed"]), cleaning.count_drops(out["_drop"])


@pytest.mark.parametrize(
    ("step", "settings", "raw", "cleaned"),
    [
        ("html", {}, "Fast <b>MTA</b> &amp; relay<script>x()</script>.", "Fast MTA & relay ."),
        ("unicode", {}, "ﬁle ＡＢＣ", "file ABC"),
        ("control", {}, "zero\u200bwidth\x07 bell", "zerowidth bell"),
        ("urls", {"replace_urls": "<url>"}, "see https://debian.org/x?y=1 now", "see <url> now"),
        ("emails", {"replace_emails": "<email>"}, "mail jane.doe@example.org today", "mail <email> today"),
        ("lowercase", {"lowercase": True}, "GNU Emacs", "gnu emacs"),
        ("whitespace", {}, "  a \t b\n\nc  ", "a b c"),
    ],
)
def test_each_cleaning_step_changes_and_is_counted(step, settings, raw, cleaned):
    out, changed, _ = _clean([raw, "plain text"], **settings)
    assert out["text"] == [cleaned, "plain text"]
    assert changed[step] == 1
    assert sum(changed.values()) >= 1


def test_cleaning_steps_switch_off():
    raw = "<b>ＡＢＣ</b>  zero\u200bwidth"
    off = {
        "html": False,
        "unicode_normalization": "none",
        "remove_control": False,
        "collapse_whitespace": False,
    }
    out, changed, _ = _clean([raw], **off)
    assert out["text"] == [raw]
    assert sum(changed.values()) == 0


def test_html_keeps_comparisons():
    out, changed, _ = _clean(["if a < b and c > d then x<3"])
    assert out["text"] == ["if a < b and c > d then x<3"]
    assert changed["html"] == 0


def test_length_filters_count_each_reason():
    texts = ["", "   ", "ab", "one two three four five six", "x" * 50, "just right here"]
    _, _, dropped = _clean(texts, min_chars=3, max_chars=40, max_words=5)
    assert dropped == {
        "empty": 2,
        "too_few_chars": 1,
        "too_many_chars": 1,
        "too_few_words": 0,
        "too_many_words": 1,
    }
    _, _, dropped = _clean(["a b", "a b c d"], min_chars=1, min_words=3)
    assert dropped["too_few_words"] == 1


def test_dedup_keeps_first_copy_after_cleaning():
    out, _, _ = _clean(["Hello  world", "hello world", "Hello world", "other"])
    drop = np.asarray(out["_drop"])
    keep, duplicates = keep_mask(drop, np.asarray(out["_hash"]), dedup=True)
    assert keep.tolist() == [True, True, False, True]  # case differs: not an exact duplicate
    assert duplicates == 1
    keep, duplicates = keep_mask(drop, np.asarray(out["_hash"]), dedup=False)
    assert keep.all() and duplicates == 0


def test_splits_are_deterministic_disjoint_and_sized():
    keep = np.ones(1000, dtype=bool)
    keep[::7] = False
    given = np.full(1000, -1, dtype=np.int8)
    a = assign_splits(keep, given, 0.1, 0.2, seed=1)
    b = assign_splits(keep, given, 0.1, 0.2, seed=1)
    c = assign_splits(keep, given, 0.1, 0.2, seed=2)
    for name in a:
        assert np.array_equal(a[name], b[name])
    assert not np.array_equal(a["test"], c["test"])
    rows = np.concatenate(list(a.values()))
    assert len(rows) == len(set(rows.tolist())) == keep.sum()
    assert not set(rows.tolist()) & set(np.flatnonzero(~keep).tolist())
    assert len(a["validation"]) == round(keep.sum() * 0.1) and len(a["test"]) == round(keep.sum() * 0.2)


def test_given_splits_are_kept_and_missing_ones_carved_from_train():
    keep = np.ones(100, dtype=bool)
    given = np.array([0] * 80 + [2] * 20, dtype=np.int8)  # train and test files, no validation file
    out = assign_splits(keep, given, 0.1, 0.5, seed=0)
    assert out["test"].tolist() == list(range(80, 100))
    assert len(out["validation"]) == 8 and set(out["validation"]) < set(range(80))
    assert len(out["train"]) == 72


def test_tiny_split_ratio_still_gets_one_document():
    out = assign_splits(np.ones(10, dtype=bool), np.full(10, -1, dtype=np.int8), 0.05, 0.05, seed=0)
    assert (len(out["train"]), len(out["validation"]), len(out["test"])) == (8, 1, 1)


def _docs(rng, n):
    lengths = rng.integers(0, 40, size=n)
    return lengths, rng.integers(10, 100, size=int(lengths.sum())).astype(np.int32)


@pytest.mark.parametrize("keep_remainder", [True, False])
def test_block_packing_accounts_for_every_token(keep_remainder):
    rng = np.random.default_rng(0)
    lengths, values = _docs(rng, 500)
    packer = BlockPacker(32, [1], [2], [2], unk_id=10)
    tables = [
        packer.feed(lengths[i : i + 37], values[int(lengths[:i].sum()) : int(lengths[: i + 37].sum())])
        for i in range(0, 500, 37)
    ]
    tables.append(packer.finish(keep_remainder))
    rows = [r for t in tables if t is not None for r in t.column("input_ids").to_pylist()]
    masks = [r for t in tables if t is not None for r in t.column("special_tokens_mask").to_pylist()]
    c = packer.counts
    assert c["tokens"] == len(values) and c["documents"] == 500
    assert c["tokens_in_blocks"] + c["tokens_dropped"] == c["tokens"]
    assert c["unk_tokens"] == int((values == 10).sum())
    assert all(len(r) == 32 for r in rows[:-1]) and rows[0][0] == 1 and rows[0][-1] == 2
    assert sum(len(m) - sum(m) for m in masks) == c["tokens_in_blocks"]
    # Crossing batch boundaries loses nothing: the content equals one pass over all documents.
    one = BlockPacker(32, [1], [2], [2], unk_id=10)
    first = one.feed(lengths, values)
    assert first.column("input_ids").to_pylist() == rows[: len(first)]
    if keep_remainder:
        assert c["tokens_dropped"] == 0 and len(rows[-1]) <= 32
    else:
        assert all(len(r) == 32 for r in rows) and c["tokens_dropped"] + c["separators_dropped"] < 30


def test_parallel_clean_keeps_order_and_matches_one_process(tmp_path):
    from datasets import Dataset, Value

    from hfllm.data.parallel import map_arrow

    texts = [f"<b>Doc</b>   number {i}" if i % 3 else f"plain {i % 10}" for i in range(120)]
    source = Dataset.from_dict({"text": texts, "_replaced": [False] * 120})
    source.save_to_disk(str(tmp_path / "src"))
    path = next((tmp_path / "src").glob("*.arrow"))
    kwargs = {"clean": CleanSection(), "text_column": "text", "pair_column": None}
    features = source.features.copy()
    features.update({"_changed": Value("int32"), "_drop": Value("int8"), "_hash": Value("int64")})
    one = map_arrow(path, cleaning.clean_batch, kwargs, features, 1, tmp_path, "one", 10)
    two = map_arrow(path, cleaning.clean_batch, kwargs, features, 2, tmp_path, "two", 10)
    assert len(list(tmp_path.glob("two-*.arrow"))) == 8  # really sharded over processes
    assert one.to_dict() == two.to_dict()
    assert two["text"][1] == "Doc number 1" and two["text"][0] == "plain 0"
