"""Reproducible runs (same config and seed: the same metrics.json apart from timings; another seed:
other metrics) and idempotent commands (rerunning a finished preprocess, pretrain or finetune does no
work, leaves every file as it was and exits 0)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

# The only metrics.json fields that may differ between two runs of one config and seed: timings. Each
# must be in metrics.json (asserted), so a renamed timing field cannot hide a real difference.
TIMING = {"runtime_s", "seconds", "samples_per_second"}
PRETRAIN_TIMING = TIMING | {"tokens_per_second"}
FINETUNE_TIMING = TIMING | {"runtime", "steps_per_second"}  # the Trainer's evaluation timings
# One result schema for every training command, fresh or already finished (README: Output contract).
RESULT_KEYS = {
    "status",
    "command",
    "recipe",
    "run_dir",
    "model_dir",
    "data_dir",
    "resumed_from",
    "global_step",
    "metrics",
    "best_metric",
    "seconds",
}


def check_result_schema(first: dict, again: dict, command: str) -> None:
    """Assert that a fresh and an already-finished result have the one schema and agree."""
    assert set(first) == set(again) == RESULT_KEYS
    assert (first["status"], again["status"]) == ("finished", "already_finished")
    assert first["command"] == again["command"] == command
    for key in ("recipe", "run_dir", "model_dir", "data_dir", "global_step", "metrics", "best_metric"):
        assert first[key] == again[key], key
    assert set(first["metrics"]) >= {"train", "validation"} and again["resumed_from"] is None


def leaves(value, path: tuple = ()) -> dict[tuple, object]:
    """Return {path: value} for every leaf of a JSON value."""
    if isinstance(value, dict):
        return {p: v for key, item in value.items() for p, v in leaves(item, (*path, key)).items()}
    if isinstance(value, list):
        return {p: v for i, item in enumerate(value) for p, v in leaves(item, (*path, i)).items()}
    return {path: value}


def differing(a: dict, b: dict) -> set[tuple]:
    """Return the leaf paths whose values differ (or exist in one only)."""
    left, right = leaves(a), leaves(b)
    return {path for path in left.keys() | right.keys() if left.get(path, "<absent>") != right.get(path)}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Return {relative path: (mtime_ns, size)} of every file under `root`."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_reproducible(run, out: Path, timing: set[str], seed_key: str = "training.seed") -> None:
    """Run three times in `out` (removed in between): twice alike, once with another seed."""
    run()
    metrics = [json.loads((out / "metrics.json").read_text())]
    for extra in ((), ("--set", f"{seed_key}=7")):
        shutil.rmtree(out)
        run(*extra)
        metrics.append(json.loads((out / "metrics.json").read_text()))
    same, other_seed = differing(metrics[0], metrics[1]), differing(metrics[0], metrics[2])
    assert {path[-1] for path in same} <= timing, sorted(same)
    assert timing <= {path[-1] for path in leaves(metrics[0])}  # each excluded field is really there
    assert {path[-1] for path in other_seed} - timing, "another seed gave the same metrics"


# --- reproducibility (slow: three trainings each) ---


@pytest.mark.slow
def test_pretrain_tiny_is_reproducible(tmp_path):
    from test_pretrain import make_data_dir, pretrain

    data, out = make_data_dir(tmp_path / "data"), tmp_path / "run"

    def run(*extra: str):
        result = pretrain(data, out, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.json

    assert_reproducible(run, out, PRETRAIN_TIMING)


@pytest.mark.slow
def test_finetune_tiny_sequence_is_reproducible(tmp_path, ft_tiny):
    """configs/finetune/tiny-sequence.yaml from raw CSV: the split and tokenization are redone each time."""
    model_dir, _ = ft_tiny
    out = tmp_path / "run"
    config = REPO / "configs" / "finetune" / "tiny-sequence.yaml"

    def run(*extra: str):
        sets = ("--set", f"model.name_or_path={model_dir}", "--output-dir", str(out))
        result = run_cli("finetune", "--config", config, *sets, *extra, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.json

    assert_reproducible(run, out, FINETUNE_TIMING)


# --- idempotent commands (fast: tiny runs) ---


def rerun_does_nothing(command: list, root: Path, status: str) -> dict:
    """Rerun a finished `command`; check it exits 0 with `status` and that no file under `root` changed."""
    before = snapshot(root)
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.json["status"] == status
    assert snapshot(root) == before  # no file written, touched or removed
    assert "'loss'" not in again.stderr  # no training step was logged
    return again.json


def test_rerunning_a_finished_preprocess_does_nothing(tmp_path):
    from test_pretrain import preprocess

    data = preprocess(tmp_path, lines=200)
    command = ["preprocess", "--config", tmp_path / "preprocess.yaml", "--output-dir", data]
    result = rerun_does_nothing(command, data, "cached")
    assert result["splits"]["train"] > 0


def test_rerunning_a_finished_pretrain_does_nothing(tmp_path):
    from test_pretrain import make_data_dir

    data, out = make_data_dir(tmp_path / "data", max_length=32), tmp_path / "run"
    sets = [
        "training.max_steps=2",
        "training.eval_steps=2",
        "training.save_steps=2",
        "training.logging_steps=1",
    ]
    command = ["pretrain", "--config", REPO / "configs" / "pretrain" / "tiny.yaml", "--output-dir", out]
    command += ["--set", f"data_dir={data}", *[a for s in sets for a in ("--set", s)]]
    first = run_cli(*command)
    assert first.returncode == 0 and first.json["status"] == "finished", first.stderr[-3000:]
    result = rerun_does_nothing(command, tmp_path, "already_finished")
    check_result_schema(first.json, result, "pretrain")
    assert result["global_step"] == 2 and result["metrics"]["validation"]["perplexity"] > 1


def test_rerunning_a_finished_finetune_does_nothing(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    config = {
        "kind": "finetune",
        "model": {"name_or_path": str(model_dir)},
        "data": {"dir": str(data)},
        "output_dir": str(tmp_path / "run"),
        "training": {"max_steps": 2, "per_device_train_batch_size": 8, "report_to": [], "logging_steps": 1},
    }
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    command = ["finetune", "--config", tmp_path / "ft.yaml"]
    first = run_cli(*command)
    assert first.returncode == 0 and first.json["status"] == "finished", first.stderr[-3000:]
    result = rerun_does_nothing(command, tmp_path, "already_finished")
    check_result_schema(first.json, result, "finetune")
    assert result["best_metric"]["name"] == "f1_macro" and "f1_macro" in result["metrics"]["validation"]
