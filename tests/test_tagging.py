"""Token classification: entities scored by seqeval in strict mode (IOB2 and IOBES), predict's spans read
the same way, and label_all_tokens keeping a split word one entity."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import run_cli

from hfllm.inference.predict import entity_spans
from hfllm.metrics import compute
from hfllm.tasks.tagging import entities, subtoken_tags, tag_scheme

seqeval_metrics = pytest.importorskip("seqeval.metrics")


def _random_tags(rng: random.Random, scheme: str, n: int) -> list[str]:
    prefixes = "BIES" if scheme == "IOBES" else "BI"
    return [rng.choice(["O", "O"] + [f"{p}-{k}" for p in prefixes for k in ("PER", "LOC")]) for _ in range(n)]


@pytest.mark.parametrize("scheme", ["IOB2", "IOBES"])
def test_entity_scores_equal_seqeval_strict_mode(scheme):
    from seqeval.scheme import IOB2, IOBES

    rng = random.Random(7)
    gold = [_random_tags(rng, scheme, rng.randint(1, 12)) for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else _random_tags(rng, scheme, 1)[0] for t in row] for row in gold]
    result = compute("entities", predictions=pred, references=gold)
    cls = IOBES if scheme == "IOBES" else IOB2
    kwargs = {"mode": "strict", "scheme": cls}
    assert result["scheme"] == scheme
    assert result["entity_f1"] == pytest.approx(seqeval_metrics.f1_score(gold, pred, **kwargs))
    assert result["entity_precision"] == pytest.approx(seqeval_metrics.precision_score(gold, pred, **kwargs))
    assert result["entity_recall"] == pytest.approx(seqeval_metrics.recall_score(gold, pred, **kwargs))
    assert 0.1 < result["entity_f1"] < 0.9  # a set where strict and lenient reading differ


def test_iobes_single_and_end_tags_are_entities_not_o():
    gold = [["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"]]
    result = compute("entities", predictions=gold, references=gold)
    assert result["entity_f1"] == 1.0 and result["per_type"]["PER"]["support"] == 1
    assert result["per_type"]["LOC"]["support"] == 1
    # Strict IOB2: an I- after O starts no entity (conlleval would count one).
    assert entities(["O", "I-PER", "I-PER", "B-LOC"], "IOB2") == [("LOC", 3, 4)]
    assert entities(["B-PER", "E-PER", "S-LOC", "B-ORG"], "IOBES") == [("PER", 0, 2), ("LOC", 2, 3)]


def test_tag_scheme_from_the_label_set():
    assert tag_scheme(["O", "B-PER", "I-PER"]) == "IOB2"
    assert tag_scheme(["O", "B-PER", "I-PER", "E-PER", "S-PER"]) == "IOBES"
    assert tag_scheme(["O", "I-PER"]) == "IOB1"
    with pytest.raises(ValueError, match="'PER'"):
        tag_scheme(["O", "PER"])


def test_predict_spans_read_iobes():
    text = "GNU Emacs Lisp mode"
    word_ids = [None, 0, 1, 1, 2, 3, None]
    offsets = [(0, 0), (0, 3), (4, 6), (6, 9), (10, 14), (15, 19), (0, 0)]
    id2label = {0: "O", 1: "S-ORG", 2: "B-LANG", 3: "E-LANG", 4: "I-LANG"}
    picks = [0, 1, 2, 0, 3, 0, 0]
    logits = np.full((7, 5), -5.0)
    logits[np.arange(7), picks] = 5.0
    spans = entity_spans(text, logits, word_ids, offsets, id2label)
    assert [(s["entity"], s["start"], s["end"], s["text"]) for s in spans] == [
        ("ORG", 0, 3, "GNU"),
        ("LANG", 4, 14, "Emacs Lisp"),
    ]


def test_subtoken_tags_keep_one_entity_per_word():
    known = {"O", "B-PER", "I-PER", "E-PER", "S-PER"}
    assert subtoken_tags("B-PER", 3, known) == ["B-PER", "I-PER", "I-PER"]
    assert subtoken_tags("S-PER", 3, known) == ["B-PER", "I-PER", "E-PER"]
    assert subtoken_tags("E-PER", 2, known) == ["I-PER", "E-PER"]
    assert subtoken_tags("O", 2, known) == ["O", "O"]
    assert subtoken_tags("B-LOC", 2, {"O", "B-LOC"}) == ["B-LOC", None]  # no I-LOC: left unlabelled


def test_label_all_tokens_through_preprocess_counts_each_entity_once(tmp_path, ft_tiny):
    model_dir, tokenizer = ft_tiny
    long_word = "Supercalifragilistic"
    assert len(tokenizer.tokenize(long_word)) >= 3
    rows = [
        {"tokens": [long_word, "works", "in", "Zurich"], "tags": ["B-PER", "O", "O", "S-LOC"]},
        {"tokens": ["Mary", "met", long_word], "tags": ["S-PER", "O", "S-PER"]},
        {"tokens": ["the", "New", "York", "office"], "tags": ["O", "B-LOC", "E-LOC", "O"]},
        {"tokens": ["Mary", "Ann", "Smith"], "tags": ["B-PER", "I-PER", "E-PER"]},
    ] * 4
    (tmp_path / "ner.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "kind": "preprocess",
        "task": "token-classification",
        "data": {"files": [str(tmp_path / "ner.jsonl")]},
        "clean": {"dedup": False},
        "split": {"validation": 0, "test": 0},
        "tokenizer": {"name_or_path": str(model_dir)},
        "packing": {"mode": "supervised", "max_length": 32, "label_all_tokens": True},
        "output_dir": str(tmp_path / "data"),
    }
    from datasets import load_from_disk

    from hfllm.config.loader import validate_config
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.pipeline import run_preprocess

    assert run_preprocess(validate_config(PreprocessConfig, config, {}, "test"))["status"] == "built"

    train = load_from_disk(str(tmp_path / "data"))["train"]
    id2label = {
        int(i): n
        for i, n in json.loads((tmp_path / "data" / "manifest.json").read_text())["id2label"].items()
    }
    first = [id2label[i] for i in train[0]["labels"] if i != -100]
    pieces = len(tokenizer.tokenize(long_word))
    assert first[:pieces] == ["B-PER"] + ["I-PER"] * (pieces - 1)
    second = [id2label[i] for i in train[1]["labels"] if i != -100]
    assert second[-pieces:] == ["B-PER"] + ["I-PER"] * (pieces - 2) + ["E-PER"]
    # Scored over every labelled sub-token (as finetune's metrics are), each word is one entity.
    gold = [[id2label[i] for i in row if i != -100] for row in train["labels"]]
    scored = compute("entities", predictions=gold, references=gold)
    words = [row["tags"] for row in rows]
    assert sum(v["support"] for v in scored["per_type"].values()) == sum(
        len(entities(tags, "IOBES")) for tags in words
    )


def test_preprocess_refuses_tags_that_are_not_iob(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    rows = [{"tokens": ["John", "lives"], "tags": ["PER", "O"]}] * 3
    (tmp_path / "ner.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_cli(
        "preprocess",
        "--set", "task=token-classification",
        "--set", f"data.files={tmp_path / 'ner.jsonl'}",
        "--set", f"tokenizer.name_or_path={model_dir}",
        "--set", "packing.mode=supervised",
        "--output-dir", tmp_path / "data",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "'PER'" in result.stderr and "ner.jsonl" in result.stderr and "Traceback" not in result.stderr
