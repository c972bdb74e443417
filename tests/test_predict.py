"""`hfllm predict`: line parsing, entity spans, ordering, bad lines, empty input (exit 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from hfllm.inference.predict import entity_spans, parse_line


def test_parse_line_plain_json_and_bad():
    assert parse_line("hello world\n", 1).text == "hello world"
    item = parse_line('{"text": "a", "text_pair": "b", "id": 9}', 2)
    assert (item.text, item.text_pair, item.id, item.line) == ("a", "b", 9, 2)
    for bad, reason in [
        ("   \n", "empty"),
        ("{oops", "not valid JSON"),
        ('{"txt": "a"}', '"text"'),
        ("[1]", None),
    ]:
        if reason is None:
            assert parse_line(bad, 3).text == "[1]"  # a line of text that happens to look like a list
            continue
        with pytest.raises(ValueError, match=reason):
            parse_line(bad, 3)


def test_entity_spans_use_first_subtoken_and_character_offsets():
    text = "GNU Emacs Lisp mode"
    # tokens: [CLS] gnu em ##acs lisp mode [SEP]; words 0..3
    word_ids = [None, 0, 1, 1, 2, 3, None]
    offsets = [(0, 0), (0, 3), (4, 6), (6, 9), (10, 14), (15, 19), (0, 0)]
    id2label = {0: "O", 1: "B-ORG", 2: "B-LANG", 3: "I-LANG"}
    picks = [0, 1, 2, 0, 3, 0, 0]  # the second sub-token of "Emacs" says O: it must be ignored
    logits = np.full((7, 4), -5.0)
    logits[np.arange(7), picks] = 5.0
    spans = entity_spans(text, logits, word_ids, offsets, id2label)
    assert [(s["entity"], s["start"], s["end"], s["text"]) for s in spans] == [
        ("ORG", 0, 3, "GNU"),
        ("LANG", 4, 14, "Emacs Lisp"),
    ]
    assert 0.99 < spans[0]["score"] <= 1.0


@pytest.fixture(scope="module")
def classifier(ft_build, ft_tiny, tmp_path_factory):
    model_dir, _ = ft_tiny
    root = tmp_path_factory.mktemp("predict")
    return ft_build.classifier_dir(root / "cls", model_dir, {"games": 0, "mail": 1, "sound": 2})


def test_predict_empty_input_is_an_error(classifier, tmp_path):
    result = run_cli("predict", "--model", classifier, input="")
    assert result.returncode == 3 and "empty input" in result.stderr and result.stdout == ""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    from_file = run_cli("predict", "--model", classifier, "--input", empty)
    assert from_file.returncode == 3 and str(empty) in from_file.stderr
    missing = run_cli("predict", "--model", classifier, "--input", tmp_path / "nope.txt")
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_predict_keeps_order_skips_bad_lines_and_strict_stops(classifier, tmp_path):
    from hfllm.samples import corpus_path

    texts = corpus_path().read_text(encoding="utf-8").splitlines()[:40]
    texts = [t[: 20 + 37 * i % 400] for i, t in enumerate(texts)]  # lengths vary so batches get reordered
    lines = texts[:10] + ["{broken"] + texts[10:]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("predict", "--model", classifier, "--input", path, "--batch-size", "4", "--all-scores")
    assert result.returncode == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["line"] for o in outputs] == [n for n in range(1, 42) if n != 11]
    assert f"{path}:11: skipped: not valid JSON" in result.stderr
    assert all(
        o["label"] in {"games", "mail", "sound"} and abs(sum(o["scores"].values()) - 1) < 1e-3
        for o in outputs
    )
    strict = run_cli("predict", "--model", classifier, "--input", path, "--strict")
    assert strict.returncode == 3 and f"{path}:11:" in strict.stderr
    assert len(strict.stdout.splitlines()) <= 10
