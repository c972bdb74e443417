"""`hfllm evaluate`: refusals with exit 3 (label sets, tokenizers, labels), and the report helpers."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def seq_setup(ft_build, ft_tiny, tmp_path_factory):
    model_dir, tokenizer = ft_tiny
    root = tmp_path_factory.mktemp("evaluate")
    data_dir = ft_build.sequence_data_dir(root / "data", tokenizer)
    label2id = json.loads((data_dir / "manifest.json").read_text())["label2id"]
    return root, model_dir, data_dir, label2id


def test_evaluate_refuses_a_different_label_set(seq_setup, ft_build):
    root, model_dir, data_dir, label2id = seq_setup
    other = dict(label2id)
    other["hamradio"] = other.pop("mail")
    model = ft_build.classifier_dir(root / "other-labels", model_dir, other)
    result = run_cli("evaluate", "--model", model, "--data", data_dir, "--output-dir", root / "out1")
    assert result.returncode == 3, result.stderr
    assert "label set differs" in result.stderr and "hamradio" in result.stderr and "mail" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "out1" / "metrics.json").exists()


def test_evaluate_refuses_a_model_dir_without_tokenizer(seq_setup, ft_build):
    root, model_dir, data_dir, label2id = seq_setup
    model = ft_build.classifier_dir(root / "no-tokenizer", model_dir, label2id)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (model / name).unlink(missing_ok=True)
    result = run_cli("evaluate", "--model", model, "--data", data_dir)
    assert result.returncode == 3
    assert "no tokenizer" in result.stderr and str(model) in result.stderr
    predicted = run_cli("predict", "--model", model, input="some text\n")
    assert predicted.returncode == 3 and "no tokenizer" in predicted.stderr


def test_evaluate_writes_reports_and_refuses_to_overwrite(seq_setup, ft_build):
    root, model_dir, data_dir, label2id = seq_setup
    model = ft_build.classifier_dir(root / "same-labels", model_dir, label2id)
    out = root / "out3"
    first = run_cli(
        "--quiet",
        "evaluate",
        "--model",
        model,
        "--data",
        data_dir,
        "--split",
        "validation",
        "--output-dir",
        out,
    )
    assert first.returncode == 0, first.stderr
    assert first.json["metrics"]["split"] == "validation" and first.json["metrics"]["examples"] == 30
    report = (out / "per_class.txt").read_text()
    assert all(name in report for name in label2id) and "precision" in report
    again = run_cli(
        "evaluate", "--model", model, "--data", data_dir, "--split", "validation", "--output-dir", out
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr
    missing = run_cli(
        "evaluate", "--model", model, "--data", data_dir, "--split", "nope", "--output-dir", root / "o4"
    )
    assert missing.returncode == 3 and "no split 'nope'" in missing.stderr


def test_evaluate_refuses_data_from_another_tokenizer(seq_setup, ft_build, tmp_path):
    root, model_dir, data_dir, label2id = seq_setup
    model = ft_build.classifier_dir(tmp_path / "m", model_dir, label2id)
    tok = json.loads((model / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    last = max(vocab, key=vocab.get)  # the same size, one token renamed: another tokenizer
    vocab["zzzz-new-token"] = vocab.pop(last)
    (model / "tokenizer.json").write_text(json.dumps(tok))
    result = run_cli("evaluate", "--model", model, "--data", data_dir, "--output-dir", tmp_path / "o")
    assert result.returncode == 3 and "another tokenizer" in result.stderr


def test_confusion_matrix_plot_and_report(tmp_path):
    from hfllm.inference.report import per_class_report, plot_confusion_matrix

    path = plot_confusion_matrix([[3, 1], [0, 2]], ["neg", "pos"], tmp_path / "cm.png", "title")
    assert path.read_bytes()[:4] == b"\x89PNG"
    text = per_class_report({"neg": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4}}, "t")
    assert "neg" in text and "0.7500" in text
