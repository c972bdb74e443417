"""End-to-end tests of `hfllm pretrain` on a tiny BERT, and the data-dir helper other pretrain tests use."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import REPO, run_cli

TINY = REPO / "configs" / "pretrain" / "tiny.yaml"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def corpus_lines(n: int = 400) -> list[str]:
    """Return the first `n` non-empty lines of the bundled English corpus."""
    from hfllm.samples import corpus_path

    lines = [line.strip() for line in corpus_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:n]


def train_wordpiece(lines: list[str], vocab_size: int = 800):
    """Return a small uncased WordPiece BertTokenizerFast trained on `lines`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok, **{f"{n}_token": f"[{n.upper()}]" for n in ("pad", "unk", "cls", "sep", "mask")}
    )


def group_texts(tokenizer, lines: list[str], max_length: int) -> dict[str, list]:
    """Return blocks of `max_length` tokens (group mode): documents tokenized with specials, concatenated."""
    if not lines:
        return {"input_ids": [], "attention_mask": [], "special_tokens_mask": []}
    enc = tokenizer(lines, return_special_tokens_mask=True)
    ids = [i for row in enc["input_ids"] for i in row]
    special = [s for row in enc["special_tokens_mask"] for s in row]
    n = len(ids) // max_length * max_length  # drop the remainder, as run_mlm's group_texts does
    blocks = range(0, n, max_length)
    return {
        "input_ids": [ids[i : i + max_length] for i in blocks],
        "attention_mask": [[1] * max_length for _ in blocks],
        "special_tokens_mask": [special[i : i + max_length] for i in blocks],
    }


def make_data_dir(
    path: Path, lines: list[str] | None = None, max_length: int = 64, tokenizer=None, train_share: float = 0.8
) -> Path:
    """Return a data dir built to the `hfllm/data/datadir.py` contract (a stand-in for `hfllm preprocess`)."""
    from datasets import Dataset, DatasetDict

    from hfllm.data.datadir import MANIFEST, MANIFEST_FORMAT, TOKENIZER_DIR, tokenizer_fingerprint

    lines = lines if lines is not None else corpus_lines()
    tokenizer = tokenizer if tokenizer is not None else train_wordpiece(lines)
    cut, cut2 = int(len(lines) * train_share), int(len(lines) * (1 + train_share) / 2)
    parts = {"train": lines[:cut], "validation": lines[cut:cut2], "test": lines[cut2:]}
    splits = DatasetDict(
        {name: Dataset.from_dict(group_texts(tokenizer, part, max_length)) for name, part in parts.items()}
    )
    splits.save_to_disk(str(path))
    tokenizer.save_pretrained(str(path / TOKENIZER_DIR))
    manifest = {
        "format": MANIFEST_FORMAT,
        "mode": "group",
        "max_length": max_length,
        "tokenizer": {"fingerprint": tokenizer_fingerprint(tokenizer)},
        "counts": {"splits": {name: len(split) for name, split in splits.items()}},
    }
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return path


def preprocess(tmp: Path, lines: int = 500, **sets: str) -> Path:
    """Return a group-mode data dir that the real `hfllm preprocess` wrote from the sample corpus."""
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines(lines)) + "\n", encoding="utf-8")
    config = tmp / "preprocess.yaml"
    config.write_text(
        "kind: preprocess\n"
        f"data: {{files: [{corpus}]}}\n"
        "split: {validation: 0.1, test: 0.1}\n"
        "tokenizer: {train: {type: wordpiece, vocab_size: 800}}\n"
        "packing: {mode: group, max_length: 64}\n"
        "num_proc: 1\n",
        encoding="utf-8",
    )
    extra = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    result = run_cli("preprocess", "--config", config, "--output-dir", tmp / "data", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.json["mode"] == "group"
    return tmp / "data"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return preprocess(tmp_path_factory.mktemp("pretrain-data"))


def pretrain(data: Path, out: Path, *extra: str):
    return run_cli("pretrain", "--config", TINY, "--set", f"data_dir={data}", "--output-dir", out, *extra)


def test_pretrain_end_to_end(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = pretrain(tiny_data, out)
    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["status"] == "finished" and summary["global_step"] == 40
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_history"][0]["step"] == 0
    validation, train = metrics["validation"], metrics["train"]
    # The output bias starts at the unigram log frequencies (the default): step 0 is already at the
    # unigram baseline, far below a uniform guess over the vocabulary. This 2-layer, 32-wide model
    # learns little more in 40 steps (the demo's model does: docs/speed.md), but it must not lose it.
    start = metrics["eval_history"][0]["loss"]
    vocab_size = json.loads((out / "model" / "config.json").read_text())["vocab_size"]
    assert start == pytest.approx(math.log(validation["unigram_perplexity"]), abs=0.15)
    assert start < math.log(vocab_size) - 0.5 and validation["loss"] < start + 0.05
    assert validation["perplexity"] == pytest.approx(2.718281828 ** validation["loss"], rel=1e-6)
    assert 0.0 < validation["masked_accuracy"] <= 1.0 and validation["unigram_perplexity"] > 1.0
    assert metrics["test"]["examples"] > 0 and metrics["test"]["loss"] > 0
    assert train["tokens_seen"] == 40 * 16 * 64 and metrics["global_batch_size"] == 16
    assert train["tokens_per_second"] > 0 and metrics["seconds"] >= train["runtime_s"] > 0
    assert summary["metrics"]["validation"]["loss"] == validation["loss"]
    for name in (
        "config.yaml",
        "model/model.safetensors",
        "model/README.md",
        "model/tokenizer.json",
        "loss.png",
    ):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    # save_total_limit 2: the two newest, and the best on top of them when it is older.
    best = Path(summary["best_metric"]["checkpoint"]).name
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == sorted({"checkpoint-30", "checkpoint-40", best}), (kept, best)
    assert not list(out.rglob("*.bin")) or all("checkpoint-" in str(p) for p in out.rglob("*.bin"))

    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    fill = pipeline(
        "fill-mask",
        model=AutoModelForMaskedLM.from_pretrained(out / "model"),
        tokenizer=AutoTokenizer.from_pretrained(out / "model"),
        device="cpu",
    )
    predictions = fill("this package contains the [MASK] files.")
    assert len(predictions) == 5 and all(p["token_str"] for p in predictions)

    again = pretrain(tiny_data, out)  # a finished run does no work
    assert again.returncode == 0 and again.json["status"] == "already_finished"
    assert again.json["metrics"] == summary["metrics"]
