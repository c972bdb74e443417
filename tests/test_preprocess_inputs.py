"""Every input format reads the same documents; every bad input fails with exit 3, naming file and row."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest

from hfllm.data.pipeline import run_preprocess
from hfllm.errors import EXIT_INPUT, ConfigError, InputError
from tests.test_preprocess import make_config

DOCS = [
    "Nullmailer is a replacement MTA for hosts which relay to a fixed set of smart relays.",
    "Blur-effect is an offscreen image blurring utility, based on efficient Gaussian blur.",
    "JAM is a tool for producing audio masters from a mixed down multitrack source.",
    "The package provides a library for the Haskell programming language.",
    "Computes various confidence intervals for the Kaplan-Meier estimator.",
    "A simple relay-only mail transport agent designed to be simple to configure.",
]
LABELS = ["mail", "graphics", "sound", "devel", "science", "mail"]


def _write(path: Path, fmt: str) -> Path:
    if fmt in ("txt", "txt.gz", "txt.xz"):
        data = "".join(d + "\n" for d in DOCS).encode()
        opener = {"txt": open, "txt.gz": gzip.open, "txt.xz": lzma.open}[fmt]
        with opener(path, "wb") as handle:
            handle.write(data)
    elif fmt == "paragraph":
        path.write_text("".join(d[:40] + "\n" + d[40:] + "\n\n\n" for d in DOCS))
    elif fmt == "jsonl":
        path.write_text(
            "".join(
                json.dumps({"text": d, "label": lab, "id": i}) + "\n"
                for i, (d, lab) in enumerate(zip(DOCS, LABELS, strict=True))
            )
        )
    elif fmt == "json":
        path.write_text(json.dumps([{"text": d, "label": lab} for d, lab in zip(DOCS, LABELS, strict=True)]))
    elif fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        rows = [
            f'"{d}"{sep}{lab}' if fmt == "csv" else f"{d}{sep}{lab}"
            for d, lab in zip(DOCS, LABELS, strict=True)
        ]
        path.write_text(f"text{sep}label\n" + "\n".join(rows) + "\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": DOCS, "label": LABELS}), path)
    elif fmt == "arrow":
        from datasets import Dataset

        Dataset.from_dict({"text": DOCS, "label": LABELS}).save_to_disk(str(path))
    return path


def _config(tmp_path, files, **extra):
    sections = {"data": {"files": [str(f) for f in files]}, "split": {"validation": 0.0, "test": 0.0}}
    sections["tokenizer"] = {"train": {"vocab_size": 200, "min_frequency": 1}}
    return make_config(tmp_path / "out", **{**sections, **extra})


@pytest.mark.parametrize(
    ("fmt", "name", "extra"),
    [
        ("txt", "d.txt", {}),
        ("txt.gz", "d.txt.gz", {}),
        ("txt.xz", "d.txt.xz", {}),
        ("paragraph", "d.txt", {"txt_mode": "paragraph"}),
        ("jsonl", "d.jsonl", {}),
        ("json", "d.json", {}),
        ("csv", "d.csv", {}),
        ("tsv", "d.tsv", {}),
        ("parquet", "d.parquet", {}),
        ("arrow", "saved", {}),
    ],
)
def test_every_format_reads_the_same_documents(tmp_path, fmt, name, extra):
    path = _write(tmp_path / name, fmt)
    config = _config(tmp_path, [path], packing={"mode": "line", "max_length": 64})
    config.data.txt_mode = extra.get("txt_mode", "line")
    result = run_preprocess(config)
    assert result["documents_read"] == len(DOCS) and result["documents_kept"] == len(DOCS)


def test_directory_and_glob_inputs(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _write(folder / "a.txt", "txt")
    _write(folder / "b.jsonl", "jsonl")
    (folder / "notes.bin").write_bytes(b"\0\1")  # not an input format: skipped
    assert run_preprocess(_config(tmp_path, [folder]))["documents_read"] == 2 * len(DOCS)
    assert run_preprocess(_config(tmp_path, [str(folder / "*.txt")]), force=True)["documents_read"] == len(
        DOCS
    )


def _fails(config, *needles, force=False):
    with pytest.raises(InputError) as info:
        run_preprocess(config, force=force)
    message = str(info.value)
    assert info.value.exit_code == EXIT_INPUT
    for needle in needles:
        assert needle in message, message
    out = Path(config.output_dir)
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".hfllm-work*")) if out.exists() else True
    return message


def test_missing_file(tmp_path):
    _fails(_config(tmp_path, [tmp_path / "nope.txt"]), "not found", "nope.txt")


def test_empty_file(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    _fails(_config(tmp_path, [tmp_path / "e.txt"]), "e.txt", "empty")


def test_file_empty_after_cleaning(tmp_path):
    (tmp_path / "tags.txt").write_text("<p></p>\n   \n<br/>\n\u200b\n")
    _fails(
        _config(tmp_path, [tmp_path / "tags.txt"]), "tags.txt", "no documents left after cleaning", "empty 4"
    )


def test_unknown_column_lists_the_columns(tmp_path):
    path = _write(tmp_path / "d.jsonl", "jsonl")
    config = _config(tmp_path, [path])
    config.data.text_column = "body"
    _fails(config, "d.jsonl", "line 1", "'body'", "text, label, id")
    pq = _write(tmp_path / "d.parquet", "parquet")
    config = _config(tmp_path, [pq])
    config.data.text_column = "body"
    _fails(config, "d.parquet", "row 1", "text, label")


def test_missing_label_names_the_row(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text('text,label\n"first text",a\n"second text",\n"third",b\n')
    _fails(_config(tmp_path, [path], packing={"mode": "supervised"}), "l.csv", "line 3", "missing label")


def test_non_utf8_names_offset_or_is_replaced_and_counted(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\ncafé crème\nthird line\n".encode("latin-1"))
    _fails(_config(tmp_path, [path]), "latin1.txt", "line 2", "byte offset 14")
    config = _config(tmp_path, [path])
    config.data.encoding_errors = "replace"
    run_preprocess(config)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["decode_replaced"] == 1 and manifest["counts"]["documents_kept"] == 3


def test_binary_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_bytes(b"PK\x03\x04\x00\x00binary" * 20)
    _fails(_config(tmp_path, [path]), "model.txt", "binary")


def test_ragged_csv_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nfine row,a\nbad row,a,extra\n")
    _fails(
        _config(tmp_path, [path], packing={"mode": "supervised"}),
        "r.csv",
        "line 3",
        "3 fields",
        "header has 2",
    )


def test_output_dir_with_other_files_is_refused_even_with_force(tmp_path):
    path = _write(tmp_path / "d.txt", "txt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("mine")
    for force in (False, True):
        with pytest.raises(ConfigError, match="not made by hfllm"):
            run_preprocess(_config(tmp_path, [path]), force=force)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["thesis.tex"]


def test_vocab_smaller_than_specials_and_alphabet(tmp_path):
    path = _write(tmp_path / "d.txt", "txt")
    _fails(
        _config(tmp_path, [path], tokenizer={"train": {"vocab_size": 20}}),
        "vocab_size 20",
        "alphabet",
        "at least",
    )
    bpe = _config(tmp_path, [path], tokenizer={"train": {"type": "bpe", "vocab_size": 100}})
    _fails(bpe, "vocab_size 100", "byte alphabet", "at least 261")


def test_token_classification_length_mismatch(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text(
        json.dumps({"tokens": ["a", "b"], "tags": ["O", "O"]})
        + "\n"
        + json.dumps({"tokens": ["a"], "tags": []})
        + "\n"
    )
    config = _config(tmp_path, [path], task="token-classification", packing={"mode": "supervised"})
    _fails(config, "n.jsonl", "line 2", "1 tokens but 0 tags")


def test_given_split_emptied_by_cleaning(tmp_path):
    train = _write(tmp_path / "train.txt", "txt")
    test = tmp_path / "test.txt"
    test.write_text("<br>\n<p> </p>\n")
    config = _config(
        tmp_path, [], **{"data": {"files": [], "train_files": [str(train)], "test_files": [str(test)]}}
    )
    _fails(config, "test.txt", "no documents left after cleaning for the test split")


def test_output_dir_inside_an_input_directory_is_not_read_back(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    _write(folder / "a.txt", "txt")
    config = _config(tmp_path, [folder])
    config.output_dir = str(folder / "out")
    assert run_preprocess(config)["documents_read"] == len(DOCS)
    # Its manifest.json and tokenizer.json are not inputs on the rerun: still cached.
    assert run_preprocess(config)["status"] == "cached"


def test_conll_token_classification(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text(
        "-DOCSTART- O\n\nJohn B-PER\nlives O\nin O\nParis B-LOC\n\nMary B-PER\nsings O\n\nThe O\ncat O\n"
        "\nBob B-PER\nruns O\n\nRome B-LOC\nis O\nold O\n"
    )
    config = _config(tmp_path, [path], task="token-classification", packing={"mode": "supervised"})
    config.split.validation = 0.2
    result = run_preprocess(config)
    assert result["documents_read"] == 5 and result["label2id"] == {"O": 0, "B-LOC": 1, "B-PER": 2}
    bad = tmp_path / "bad.conll"
    bad.write_text("John B-PER\nlonely\n")
    bad_config = _config(tmp_path, [bad], task="token-classification", packing={"mode": "supervised"})
    bad_config.output_dir = str(tmp_path / "out-bad")  # "out" holds the finished run above
    _fails(bad_config, "bad.conll", "line 2")
