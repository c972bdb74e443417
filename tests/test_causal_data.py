"""Preprocess for causal LMs: EOS after every document, no block framing, the objective in the manifest,
GPT-2/Llama-style tokenizers, the objective check pretrain calls, and the standard-library code corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from hfllm.config.schemas.preprocess import PreprocessConfig
from hfllm.data.datadir import open_data_dir
from hfllm.data.objective import check_objective, objective_of
from hfllm.data.pipeline import run_preprocess
from hfllm.errors import InputError

CORPUS = Path(__file__).parent / "fixtures" / "preprocess" / "corpus.txt"


def make_config(out: Path, **top) -> PreprocessConfig:
    base = {
        "data": {"files": [str(CORPUS)]},
        "tokenizer": {"train": {"vocab_size": 500, "min_frequency": 1}},
        "packing": {"max_length": 32},
        "split": {"validation": 0.1, "test": 0.0},
        "objective": "causal",
        "num_proc": 1,
        "output_dir": str(out),
    }
    for key, value in top.items():
        replace = key == "tokenizer" or not isinstance(base.get(key), dict)
        base[key] = value if replace else {**base[key], **value}
    return PreprocessConfig.model_validate(base)


def documents(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("causal") / "data"
    run_preprocess(make_config(out))
    return out


def test_causal_blocks_are_documents_each_ending_with_eos_and_no_framing(causal_run):
    from transformers import AutoTokenizer

    data = open_data_dir(causal_run)
    tokenizer = AutoTokenizer.from_pretrained(str(causal_run / "tokenizer"))
    assert data.manifest["objective"] == "causal" and data.manifest["tokenizer"]["type"] == "bpe"
    assert data.manifest["causal"]["eos_token_id"] == tokenizer.eos_token_id
    assert (
        tokenizer.pad_token is not None
        and tokenizer("some text")["input_ids"]
        == tokenizer("some text", add_special_tokens=False)["input_ids"]
    )  # a prompt must not end with EOS
    splits = data.load_splits()
    stream = [t for row in splits["train"]["input_ids"] for t in row]
    assert stream[0] != tokenizer.bos_token_id  # no <s> framing: blocks are cut from one stream
    texts = tokenizer.decode(stream).split(tokenizer.eos_token)
    train_docs = data.manifest["counts"]["documents_by_split"]["train"]
    assert stream.count(tokenizer.eos_token_id) == train_docs
    decoded = [t for t in texts if t]
    assert len(decoded) == train_docs  # each document decodes whole (cleaning may have changed a few)
    assert sum(t in set(documents(CORPUS)) for t in decoded) >= 0.9 * train_docs
    counts = data.manifest["counts"]
    assert counts["tokens"] == counts["tokens_in_blocks"] + counts["tokens_dropped"]


def test_objective_check_names_both_objectives(causal_run, tmp_path):
    data = open_data_dir(causal_run)
    check_objective(data, "causal")
    with pytest.raises(InputError) as err:
        check_objective(data, "masked")
    assert "built for the causal objective, not masked" in str(err.value) and str(causal_run) in str(
        err.value
    )
    assert "objective: masked" in str(err.value)


def test_manifests_written_before_the_objective_read_as_masked_or_supervised():
    assert objective_of({"mode": "group"}) == "masked"
    assert objective_of({"mode": "line"}) == "masked"
    assert objective_of({"mode": "supervised", "task": "sequence-classification"}) == "supervised"
    assert objective_of({"mode": "group", "objective": "causal"}) == "causal"


def test_masked_data_dir_records_its_objective(tmp_path):
    out = tmp_path / "masked"
    run_preprocess(
        make_config(out, objective="masked", tokenizer={"train": {"type": "wordpiece", "vocab_size": 500}})
    )
    data = open_data_dir(out)
    assert data.manifest["objective"] == "masked"
    with pytest.raises(InputError, match="built for the masked objective, not causal"):
        check_objective(data, "causal")


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_an_existing_gpt2_or_llama_style_tokenizer_packs_its_documents(style, tmp_path, causal_build):
    from transformers import AutoTokenizer

    from hfllm.data.datadir import tokenizer_fingerprint

    source = causal_build.tokenizer_dir(tmp_path / "tok", style)
    out = tmp_path / "data"
    run_preprocess(make_config(out, tokenizer={"name_or_path": str(source)}, split={"validation": 0.0}))
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    original = AutoTokenizer.from_pretrained(str(source))
    assert original.pad_token is None and tokenizer.pad_token == tokenizer.eos_token  # padding with EOS
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(original)  # no token was added
    stream = [t for row in open_data_dir(out).load_splits()["train"]["input_ids"] for t in row]
    n_docs = len(documents(CORPUS))
    assert stream.count(tokenizer.eos_token_id) == n_docs
    if style == "llama":  # the tokenizer opens every text with <s>: so does every document
        assert stream.count(tokenizer.bos_token_id) == n_docs and stream[0] == tokenizer.bos_token_id
        eos_at = stream.index(tokenizer.eos_token_id)
        assert stream[eos_at + 1] == tokenizer.bos_token_id
    else:
        assert tokenizer.bos_token_id == tokenizer.eos_token_id


def test_a_tokenizer_without_eos_is_refused_for_causal_data(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny  # a BERT WordPiece tokenizer: [CLS]/[SEP], no end-of-text token
    with pytest.raises(InputError, match="no end-of-text token"):
        run_preprocess(make_config(tmp_path / "d", tokenizer={"name_or_path": str(model_dir)}))


def test_causal_objective_trains_bpe_by_default_and_refuses_wordpiece():
    config = PreprocessConfig.model_validate(
        {"objective": "causal", "tokenizer": {"train": {"vocab_size": 900}}}
    )
    assert config.tokenizer.train.type == "bpe"
    assert PreprocessConfig.model_validate({"objective": "causal"}).tokenizer.train.type == "bpe"
    with pytest.raises(ValidationError, match="wordpiece has no end-of-text token"):
        PreprocessConfig.model_validate(
            {"objective": "causal", "tokenizer": {"train": {"type": "wordpiece"}}}
        )
    assert PreprocessConfig.model_validate({}).tokenizer.train.type == "wordpiece"


def test_line_mode_causal_ends_each_example_with_eos(tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "line"
    run_preprocess(make_config(out, packing={"mode": "line", "max_length": 24}))
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    rows = open_data_dir(out).load_splits()["train"]["input_ids"]
    assert all(row[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in row[:-1] for row in rows)


def test_stdlib_corpus_is_deterministic_bounded_and_licensed(tmp_path, monkeypatch):
    from hfllm.data import code

    files = code.stdlib_files()
    assert files == sorted(files, key=lambda p: p.relative_to(code.stdlib_root()).as_posix())
    rel = [p.relative_to(code.stdlib_root()).parts for p in files]
    assert not any("test" in parts[:-1] or "tests" in parts[:-1] for parts in rel)
    assert sum(p.stat().st_size for p in files) <= code.MAX_BYTES
    monkeypatch.setattr(code, "MAX_BYTES", 200_000)  # a small slice: seconds, not minutes
    out = tmp_path / "code"
    config = make_config(
        out,
        data={"files": ["python:stdlib"]},
        clean={"collapse_whitespace": False, "html": False, "unicode_normalization": "none"},
        packing={"max_length": 64},
    )
    result = run_preprocess(config)
    manifest = json.loads((out / "manifest.json").read_text())
    source = manifest["inputs"][0]
    assert source["path"] == "python:stdlib" and source["licence"] == "PSF-2.0"
    assert source["python_version"].count(".") == 2 and source["files"] == source["documents"] > 3
    assert result["objective"] == "causal"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    text = tokenizer.decode(
        [t for row in open_data_dir(out).load_splits()["train"]["input_ids"] for t in row]
    )
    assert "\n    def " in text or "\n        " in text  # indentation survives cleaning
    assert run_preprocess(config)["status"] == "cached"


def test_unknown_builtin_corpus_is_named(tmp_path):
    with pytest.raises(InputError, match="python:stdlibx"):
        run_preprocess(make_config(tmp_path / "x", data={"files": ["python:stdlibx"]}))
