"""`hfllm sweep`: search-space errors name file:line, a failing trial is recorded and the sweep goes on,
the best config reruns to the same metric, a killed sweep continues where it stopped, trials are
pruned from their evaluations, and pretrain configs sweep too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

TINY_FINETUNE = REPO / "configs" / "finetune" / "tiny-sequence.yaml"
SPACE = REPO / "configs" / "sweep" / "tiny-sequence.yaml"
# One epoch of the fixture's 168 training rows: 11 steps, one evaluation.
QUICK = ["--set", "training.num_train_epochs=1"]


def sweep_args(model_dir: Path, space: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        "sweep",
        "--config",
        str(TINY_FINETUNE),
        "--set",
        f"model.name_or_path={model_dir}",
        "--space",
        str(space),
        "--trials",
        str(trials),
        "--output-dir",
        str(out),
        *extra,
    ]


def read_trials(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("space", "line", "message"),
    [
        ("parameters:\n  training.learning_rate: {type: float, low: 1\n", 3, "malformed YAML"),
        (
            "parameters:\n  training.learning_rate: {type: float, low: 0.1, high: 1.0, lgo: true}\n",
            2,
            "unknown key `parameters.training.learning_rate.lgo`",
        ),
        ("parameters:\n  training.learning_rate: {type: float, low: 0.1, high: 0.01}\n", 2, "low < high"),
        (
            "kind: sweep\nparameters:\n  training.learnin_rate: {type: float, low: 0.1, high: 1.0}\n",
            3,
            "learnin_rate",
        ),
        ("parameters:\n  training.seed: {type: categorical, choices: []}\n", 2, "choices"),
        (
            "sampler: {type: tpe, options: {bogus: 1}}\nparameters:\n  training.seed: {type: int, low: 1, high: 3}\n",
            1,
            "sampler tpe",
        ),
        (
            "sampler: {type: grid}\nparameters:\n  training.learning_rate: {type: float, low: 0.1, high: 1.0}\n",
            1,
            "grid needs categorical or int",
        ),
        ("parameters: {}\n", 1, "parameters"),
    ],
)
def test_bad_space_files_name_file_and_line(tmp_path, space, line, message):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    result = run_cli(*sweep_args(tmp_path / "model", path, tmp_path / "sweep", 2))
    assert result.returncode == 2, result.stderr
    assert f"{path}:{line}:" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "sweep").exists()


def test_metric_value_reads_both_result_shapes_and_metrics_json(tmp_path):
    from hfllm.analysis.sweep_metric import intermediate_key, metric_value

    finetune = {"metrics": {"validation": {"loss": 1.25, "f1_macro": 0.5}, "test": {"loss": 2.0}}}
    assert metric_value(finetune, "validation.f1_macro") == 0.5
    assert metric_value(finetune, "validation.loss") == 1.25 and metric_value(finetune, "test.loss") == 2.0
    pretrain = {"eval_loss": 6.5, "perplexity": 665.1, "metrics": "runs/x/metrics.json"}
    assert metric_value(pretrain, "validation.loss") == 6.5 and metric_value(pretrain, "perplexity") == 665.1
    (tmp_path / "metrics.json").write_text(json.dumps({"validation": {"mcc": 0.25}, "masked_accuracy": 0.1}))
    assert metric_value({}, "validation.mcc", tmp_path) == 0.25
    assert metric_value({}, "masked_accuracy", tmp_path) == 0.1
    assert metric_value(finetune, "validation.nothing", tmp_path) is None
    assert metric_value({"metrics": {"validation": {"loss": float("nan")}}}, "validation.loss") is None
    assert intermediate_key("validation.f1_macro") == "eval_f1_macro"
    assert intermediate_key("eval_loss") == intermediate_key("validation.loss") == "eval_loss"


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    space = tmp_path / "space.yaml"
    space.write_text(
        "sampler: {type: grid}\npruner: {type: none}\n"
        f"parameters:\n  model.name_or_path: {{type: categorical, choices: [{tmp_path / 'absent'}, {model_dir}]}}\n"
    )
    out = tmp_path / "sweep"
    result = run_cli(*sweep_args(model_dir, space, out, 2, *QUICK))
    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["trials"] == {"complete": 1, "pruned": 0, "failed": 1, "running": 0}
    trials = {t["params"]["model.name_or_path"]: t for t in read_trials(out)}
    failed, done = trials[str(tmp_path / "absent")], trials[str(model_dir)]
    assert failed["state"] == "failed" and failed["exit_code"] == 3 and "absent" in failed["error"]
    assert done["state"] == "complete" and done["validation.loss"] == summary["best"]["value"]
    assert "failed trials:" in result.stderr and "sweep trials (* = best):" in result.stderr
    run_dir = Path(done["run_dir"])
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()
    for name in (
        "best.yaml",
        "trials.jsonl",
        "study.db",
        "metric-over-trials.png",
        "metric-vs-model.name_or_path.png",
    ):
        assert (out / name).is_file(), name


def test_num_processes_reaches_every_trials_training_command(tmp_path, monkeypatch):
    """`hfllm sweep --num-processes 2` trains each trial with `--num-processes 2` (the trial here fails fast:
    its model dir does not exist, so the real launch runs it single-process)."""
    from typer.testing import CliRunner

    import hfllm.analysis.sweep
    from hfllm.analysis import sweep_trial
    from hfllm.cli import app

    launched = []

    def launch(kind, run_dir, options=None):
        launched.append(options)
        return sweep_trial.launch(kind, run_dir)

    monkeypatch.setattr(hfllm.analysis.sweep, "launch", launch)
    space = tmp_path / "space.yaml"
    space.write_text("parameters:\n  training.seed: {type: categorical, choices: [1]}\n")
    args = sweep_args(tmp_path / "absent", space, tmp_path / "sweep", 1, "--num-processes", "2")
    result = CliRunner().invoke(app, args)
    assert launched == [["--num-processes", "2"]], (result.output, result.exception)
    assert read_trials(tmp_path / "sweep")[0]["state"] == "failed"

    recorded = []
    monkeypatch.setattr(sweep_trial.subprocess, "Popen", lambda argv, **kwargs: recorded.append(argv))
    sweep_trial.launch("finetune", tmp_path / "run", ["--num-processes", "2"])
    assert recorded[0][-4:] == ["--config", str(tmp_path / "run" / "config.yaml"), "--num-processes", "2"]


@pytest.mark.slow
def test_four_trials_give_a_best_config_that_reruns_to_the_same_metric(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    out = tmp_path / "sweep"
    result = run_cli(*sweep_args(model_dir, SPACE, out, 4))
    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 4
    trials = read_trials(out)
    assert len(trials) == 4 and len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 4
    best = summary["best"]
    rerun = run_cli("finetune", "--config", out / "best.yaml")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.json["run_dir"] == str(out / "best")
    assert rerun.json["metrics"]["validation"]["loss"] == pytest.approx(best["value"], rel=1e-6)
    plots = {p.name for p in out.glob("*.png")}
    assert {"metric-over-trials.png", "metric-vs-training.learning_rate.png"} <= plots


@pytest.mark.slow
def test_a_killed_sweep_continues_from_its_finished_trials(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    out = tmp_path / "sweep"
    args = sweep_args(model_dir, SPACE, out, 3, *QUICK)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "hfllm", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    started = out / "trials" / "trial-0001" / "config.yaml"
    deadline = time.time() + 900
    while not started.exists() and sweep.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert started.exists(), sweep.communicate()[1].decode()[-3000:]
    sweep.send_signal(signal.SIGKILL)  # no goodbye: its trial gets SIGTERM from the kernel (PDEATHSIG)
    sweep.communicate()
    first = out / "trials" / "trial-0000" / "metrics.json"
    finished_at = first.stat().st_mtime_ns

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["resumed_trials"] == [1]
    assert summary["trials"] == {"complete": 3, "pruned": 0, "failed": 0, "running": 0}
    assert first.stat().st_mtime_ns == finished_at  # trial 0 was not trained again
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial-0000", "trial-0001", "trial-0002"]
    assert [t["number"] for t in read_trials(out)] == [0, 1, 2]


@pytest.mark.slow
def test_pruning_stops_a_trial_after_its_first_evaluation(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    space = tmp_path / "space.yaml"
    # Any loss is above 0.0: the threshold pruner stops the trial at its first reported evaluation.
    space.write_text(
        "pruner: {type: threshold, options: {upper: 0.0}}\n"
        "parameters:\n  training.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n"
    )
    out = tmp_path / "sweep"
    # Long enough that the sweep sees an evaluation while the trial still trains (6 epochs take a second).
    result = run_cli(*sweep_args(model_dir, space, out, 1, "--set", "training.num_train_epochs=500"))
    assert result.returncode == 1 and "no trial of the sweep finished" in result.stderr
    (trial,) = read_trials(out)
    assert trial["state"] == "pruned" and trial["exit_code"] == 143 and trial["intermediate"]
    run_dir = Path(trial["run_dir"])
    assert not (run_dir / "model").exists()  # stopped before the end of its 6 epochs
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))


@pytest.mark.slow
def test_a_pretrain_config_sweeps_too(tmp_path):
    from test_pretrain import make_data_dir

    data = make_data_dir(tmp_path / "data")
    space = tmp_path / "space.yaml"
    space.write_text(
        "parameters:\n  training.learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
    )
    out = tmp_path / "sweep"
    result = run_cli(
        "sweep",
        "--config",
        REPO / "configs" / "pretrain" / "tiny.yaml",
        "--set",
        f"data_dir={data}",
        "--set",
        "training.max_steps=10",
        "--space",
        space,
        "--trials",
        "2",
        "--output-dir",
        out,
    )
    assert result.returncode == 0, result.stderr
    summary = result.json
    assert summary["metric"] == "validation.loss" and summary["direction"] == "minimize"
    assert summary["trials"]["complete"] == 2
    best_run = json.loads((Path(summary["best"]["run_dir"]) / "metrics.json").read_text())
    assert best_run["validation"]["loss"] == pytest.approx(summary["best"]["value"])
