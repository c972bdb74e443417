"""`hfllm preprocess` end to end, as a user runs it: one JSON line on stdout, files on disk, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

FIX = Path(__file__).parent / "fixtures" / "preprocess"


def test_preprocess_end_to_end_then_cached(tmp_path):
    config = tmp_path / "pre.yaml"
    config.write_text(
        "kind: preprocess\n"
        f"data:\n  files: [{FIX / 'corpus.txt'}]\n"
        "tokenizer:\n  train: {type: wordpiece, vocab_size: 500, min_frequency: 1}\n"
        "packing: {mode: group, max_length: 32}\n"
        "num_proc: 1\n"
    )
    out = tmp_path / "data"
    first = run_cli("preprocess", "--config", config, "--output-dir", out)
    assert first.returncode == 0, first.stderr
    result = first.json
    assert result["status"] == "built" and result["output_dir"] == str(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert result["splits"] == manifest["splits"] and manifest["splits"]["train"] > 0
    assert (out / "tokenizer" / "tokenizer.json").exists() and (out / "dataset_dict.json").exists()
    assert "kind: preprocess" in (out / "config.yaml").read_text()
    assert "tokenize" in first.stderr  # progress and logs go to stderr

    second = run_cli("preprocess", "--config", config, "--output-dir", out)
    assert second.returncode == 0 and second.json["status"] == "cached"
    assert "up to date" in second.stderr
    assert second.json["splits"] == result["splits"]

    # The resolved config.yaml reproduces the run (same settings hash: still cached).
    again = run_cli("preprocess", "--config", out / "config.yaml", "--output-dir", out)
    assert again.returncode == 0 and again.json["status"] == "cached", again.stderr


def test_preprocess_reads_standard_input(tmp_path):
    text = (FIX / "corpus.txt").read_text()
    out = tmp_path / "data"
    sets = ["data.files=[-]", "tokenizer.train.vocab_size=400", "packing.mode=line", "num_proc=1"]
    proc = run_cli("preprocess", *[a for s in sets for a in ("--set", s)], "-o", out, input=text)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["path"] == "-" and manifest["counts"]["documents_read"] == len(
        text.splitlines()
    )


def test_preprocess_bad_input_exits_3_and_leaves_no_manifest(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("text,label\nfirst,a\nsecond\n")
    out = tmp_path / "data"
    proc = run_cli(
        "preprocess", "--set", f"data.files=[{bad}]", "--set", "packing.mode=supervised", "-o", out
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "labels.csv: line 3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "manifest.json").exists()
