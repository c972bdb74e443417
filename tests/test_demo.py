"""`hfllm demo --quick`: the whole pipeline, every artifact present and loadable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from hfllm.demo import CONFIGS, majority_baseline
from hfllm.demo import summary as demo_summary

REPO = Path(__file__).resolve().parent.parent
STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (hfllm|transformers|datasets|warning): ")


def _demo_with_stderr_in_a_file(out: Path, log: Path) -> tuple[int, str, str]:
    """Run `hfllm demo --quick` as `make demo > log 2>&1` would: stderr is a file, not a terminal."""
    with open(log, "w", encoding="utf-8") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "hfllm", "demo", "--quick", "--output-dir", str(out)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=900,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc.returncode, proc.stdout, log.read_bytes().decode("utf-8")  # keeps any \r


def test_quick_demo_writes_every_artifact_and_they_load(tmp_path):
    out = tmp_path / "demo"
    code, stdout, stderr = _demo_with_stderr_in_a_file(out, tmp_path / "demo.log")
    assert code == 0, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["status"] == "ok"
    assert "majority-class baseline" in stderr and "from all-MiniLM-L6-v2" in stderr
    # A log file for people: no progress bar redraws, every log line stamped, progress as lines.
    assert "\r" not in stderr
    logs = stderr.split("\nhfllm demo finished")[0].splitlines()
    assert logs and all(STAMPED.match(line) for line in logs), [x for x in logs if not STAMPED.match(x)][:5]
    assert re.search(r"hfllm: step 1/20 \(5%\), [\d.]+ steps/s, [\d.]+ examples/s, ETA \d+:\d\d:\d\d", stderr)

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
    again = run_cli("demo", "--quick", "--output-dir", out)
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
        "preprocess-code.yaml",  # the generative demo's two stages
        "preprocess.yaml",
        "pretrain-code.yaml",
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


@pytest.mark.slow
def test_generative_quick_demo_completes_code(tmp_path):
    result = run_cli("demo", "--generative", "--quick", "--output-dir", tmp_path / "gen", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json
    assert [c["prompt"] for c in summary["completions"]][0] == "def fibonacci(n):"
    assert all(isinstance(c["completion"], str) for c in summary["completions"])
    assert summary["perplexity"] > 1 and summary["unigram_perplexity"] > 1
    manifest = json.loads((tmp_path / "gen" / "data" / "manifest.json").read_text())
    assert manifest["objective"] == "causal"
    assert (tmp_path / "gen" / "pretrain" / "model" / "model.safetensors").is_file()
    assert "completion of 'def fibonacci(n):'" in result.stderr
