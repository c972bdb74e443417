"""`hfllm demo --quick`: the whole pipeline, every artifact present and loadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfllm.demo import CONFIGS, majority_baseline
from hfllm.demo import summary as demo_summary

REPO = Path(__file__).resolve().parent.parent


def test_quick_demo_writes_every_artifact_and_they_load(cli, tmp_path):
    out = tmp_path / "demo"
    result = cli("demo", "--quick", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json
    assert summary["status"] == "ok"
    assert "majority-class baseline" in result.stderr and "from all-MiniLM-L6-v2" in result.stderr

    from datasets import load_from_disk
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    data = out / "data"
    assert json.loads((data / "manifest.json").read_text())["splits"]["train"] > 0
    assert len(load_from_disk(str(data))["train"]) > 0
    pretrain = out / "pretrain"
    for name in ("config.yaml", "metrics.json", "loss.png", "model/model.safetensors", "model/README.md"):
        assert (pretrain / name).exists(), name
    AutoModelForMaskedLM.from_pretrained(str(pretrain / "model"))
    AutoTokenizer.from_pretrained(str(pretrain / "model"))
    for name in ("finetune-scratch", "finetune-minilm"):
        run = out / name
        model = AutoModelForSequenceClassification.from_pretrained(str(run / "model"))
        assert len(model.config.id2label) == 9
        for artifact in (
            "config.yaml",
            "metrics.json",
            "loss.png",
            "eval-test/metrics.json",
            "eval-test/confusion_matrix.png",
        ):
            assert (run / artifact).exists(), f"{name}/{artifact}"
        metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
        assert summary["classifiers"][name]["accuracy"] == pytest.approx(metrics["accuracy"])
    # Both classifiers are scored on the very same test rows.
    texts = [
        [
            json.loads(line)["text"]
            for line in (out / name / "eval-test" / "predictions.jsonl").read_text().splitlines()
        ]
        for name in ("finetune-scratch", "finetune-minilm")
    ]
    assert texts[0] == texts[1] and len(texts[0]) > 10
    # Running the demo again reuses every stage.
    again = cli("demo", "--quick", "--output-dir", out)
    assert again.returncode == 0 and again.json["classifiers"] == summary["classifiers"]


def test_majority_baseline(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"gold": g}) + "\n" for g in ["a", "a", "a", "b"]))
    base = majority_baseline(path)
    assert base["label"] == "a" and base["accuracy"] == 0.75 and base["classes"] == 2
    assert base["f1_macro"] == pytest.approx((2 * 0.75 / 1.75) / 2)


def test_demo_configs_are_the_repos_configs_demo():
    assert (REPO / "configs" / "demo").resolve() == CONFIGS == REPO / "hfllm" / "configs" / "demo"
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == [
        "finetune-minilm.yaml",
        "finetune-scratch.yaml",
        "preprocess.yaml",
        "pretrain.yaml",
    ]


def test_summary_mentions_numbers():
    result = {
        "output_dir": "runs/demo",
        "seconds": 200.0,
        "pretrain": {
            "perplexity_start": 8000.0,
            "perplexity": 90.0,
            "unigram_perplexity": 600.0,
            "masked_accuracy": 0.3,
        },
        "majority_baseline": {"label": "science", "accuracy": 0.24, "f1_macro": 0.04, "classes": 9},
        "classifiers": {
            "finetune-scratch": {
                "accuracy": 0.6,
                "f1_macro": 0.5,
                "model_dir": "m1",
                "data_dir": "d1",
                "eval_dir": "e1",
            },
            "finetune-minilm": {
                "accuracy": 0.85,
                "f1_macro": 0.8,
                "model_dir": "m2",
                "data_dir": "d2",
                "eval_dir": "e2",
            },
        },
    }
    text = demo_summary(result)
    assert "8,000.0 at step 0 -> 90.0" in text and "85.0%" in text and "24.0%" in text
