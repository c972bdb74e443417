"""Acceptance on a real corpus of at least 5 MB (slow: about a minute on 2 cores)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_cli


def _corpus(path, size_bytes: int) -> None:
    """Write >= size_bytes of real English: the bundled sample, each repetition's words rotated (no exact repeats)."""
    from hfllm.samples import corpus_path

    lines = [line.split() for line in corpus_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    written, round_ = 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size_bytes:
            for words in lines:
                k = round_ % len(words)
                text = " ".join(words[k:] + words[:k]) + "\n"
                out.write(text)
                written += len(text.encode())
            round_ += 1


@pytest.mark.slow
def test_five_megabyte_corpus_counts_add_up_and_rerun_is_cached(tmp_path):
    corpus = tmp_path / "corpus.txt"
    _corpus(corpus, 5_000_000)
    out = tmp_path / "data"
    args = ["preprocess", "--set", f"data.files=[{corpus}]", "--set", "num_proc=2", "-o", out]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["documents_read"] == c["documents_kept"] + sum(c["dropped"].values())
    assert c["tokens"] == c["tokens_in_blocks"] + c["tokens_dropped"]
    assert manifest["tokenizer"]["type"] == "wordpiece" and manifest["unk_rate"] < 0.001
    assert run_cli(*args).json["status"] == "cached"
    stat = corpus.stat()
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert run_cli(*args).json["status"] == "cached"  # touched, same content: the same input
    first_line = corpus.read_text(encoding="utf-8").splitlines()[0]
    with corpus.open("a", encoding="utf-8") as f:  # one of its own lines again: the content changes
        f.write(first_line + "\n")
    changed = run_cli(*args)  # a finished data dir is never rebuilt behind the runs trained on it
    assert changed.returncode == 2 and f"input changed: {corpus}" in changed.stderr, changed.stderr[-2000:]
    assert run_cli(*args, "--force").json["status"] == "built"
