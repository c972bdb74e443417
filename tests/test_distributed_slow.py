"""Several processes for real (gloo on 2 CPU processes): equal results, a dead rank, signals, launchers.

Also SIGINT and SIGTERM during an evaluation and during preprocess tokenization (issue 8, item 3).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_pretrain import TINY, preprocess, pretrain

pytestmark = pytest.mark.slow

HOOKS = REPO / "tests" / "fixtures" / "faults"  # test-only fault injection (sitecustomize)
SHORT = ("--set", "training.max_steps=10", "--set", "training.eval_steps=5", "--set", "training.save_steps=5")


def start(args: list[str], env: dict[str, str] | None = None, prefix: list[str] | None = None):
    """Start `hfllm ARGS` (or `PREFIX ARGS`) in the background with its output captured."""
    cmd = prefix if prefix is not None else [sys.executable, "-m", "hfllm"]
    return subprocess.Popen(
        [*cmd, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def wait_for(proc: subprocess.Popen, path: Path, timeout: float = 300) -> None:
    """Wait until `path` exists while `proc` runs."""
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"ended before {path} appeared:\n{proc.communicate()[1][-3000:]}"
        assert time.time() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.05)


def worker_pid(launcher: int, rank: int) -> int:
    """Return the pid of the worker with RANK=`rank` that `launcher` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in env:
            return int(entry.name)
    raise AssertionError(f"no worker with rank {rank} under pid {launcher}")


def pretrain_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--config", TINY, "--set", f"data_dir={data}", "--output-dir", out, *extra]


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_pretrain_on_two_processes_matches_one_with_the_same_global_batch(tmp_path):
    data = preprocess(tmp_path)
    # Dropout draws from each process's own random stream, so it cannot match across world sizes.
    same = (
        *SHORT,
        "--set",
        "model.config.hidden_dropout_prob=0",
        "--set",
        "model.config.attention_probs_dropout_prob=0",
    )
    one = pretrain(data, tmp_path / "one", *same, "--set", "training.per_device_train_batch_size=32")
    two = pretrain(data, tmp_path / "two", *same, "--num-processes", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    # Both ranks ran and logged; one JSON result and one set of outputs (rank 0's).
    assert "[rank 0] hfllm:" in two.stderr and "[rank 1] hfllm:" in two.stderr
    assert "global batch 32 = 16 per device x 2 processes x 1 accumulation step" in two.stderr
    m1, m2 = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert m1["global_batch_size"] == m2["global_batch_size"] == 32
    assert (m2["world_size"], m2["train"]["tokens_seen"]) == (2, 10 * 32 * 64)
    assert [p.name for p in (tmp_path / "two").glob("**/metrics.json")] == ["metrics.json"]
    assert len(list((tmp_path / "two").glob("**/model.safetensors"))) == 3  # model/ + 2 checkpoints
    # Same examples per step, the same per-example masks, a loss divided by the masked tokens of the
    # whole step, an evaluation loss per token of the whole split: only the reduction order differs.
    v1, v2 = m1["validation"]["loss"], m2["validation"]["loss"]
    assert abs(v1 - v2) < 1e-5, (v1, v2)
    assert m1["eval_history"][0]["loss"] == pytest.approx(m2["eval_history"][0]["loss"], abs=1e-9)
    assert m1["train"]["loss"] == pytest.approx(m2["train"]["loss"], abs=1e-5)


def test_finetune_on_two_processes_matches_one(tmp_path, ft_build, ft_tiny):
    from test_finetune_e2e import TRAINING, write_config

    tiny_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    # Dropout draws from each process's own random stream, so it cannot match across world sizes.
    model_dir = Path(shutil.copytree(tiny_dir, tmp_path / "model"))
    config = json.loads((model_dir / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model_dir / "config.json").write_text(json.dumps(config))
    # 180 train and 30 validation rows: batches that divide them evenly. Otherwise Accelerate repeats
    # rows to give every rank a full last batch, and that step (not the metrics) differs a little.
    training = {**TRAINING, "num_train_epochs": 2, "per_device_eval_batch_size": 5, "use_cpu": True}
    results = {}
    for procs, batch in ((1, 12), (2, 6)):
        out = tmp_path / f"run{procs}"
        config = write_config(
            tmp_path / f"ft{procs}.yaml",
            model_dir,
            out,
            {"dir": str(data_dir)},
            training={**training, "per_device_train_batch_size": batch},
        )
        tuned = run_cli("finetune", "--config", config, "--num-processes", str(procs))
        assert tuned.returncode == 0, tuned.stderr[-3000:]
        results[procs] = metrics(out)
    one, two = results[1], results[2]
    assert (two["world_size"], two["global_batch_size"]) == (2, one["global_batch_size"])
    for key in ("accuracy", "f1_macro", "mcc"):
        assert two["validation"][key] == pytest.approx(one["validation"][key], abs=1e-9), key
    assert two["validation"]["loss"] == pytest.approx(one["validation"]["loss"], abs=1e-5)


def test_a_killed_rank_stops_every_rank_and_the_rerun_resumes(tmp_path):
    data = preprocess(tmp_path)
    out = tmp_path / "run"
    args = pretrain_args(data, out, "--set", "training.max_steps=400", "--num-processes", "2")
    proc = start(args)
    wait_for(proc, out / "checkpoints" / "checkpoint-10")
    killed_at = time.time()
    os.kill(worker_pid(proc.pid, 1), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert time.time() - killed_at < 60
    assert proc.returncode == 1, stderr[-3000:]
    assert "rank 1 (local rank 1" in stderr and "killed by SIGKILL" in stderr, stderr[-3000:]
    assert stdout == ""
    assert not (out / "metrics.json").exists()
    newest = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    resumed = run_cli(*pretrain_args(data, out, "--set", "training.max_steps=20", "--num-processes", "2"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.json["resumed_from"].endswith(f"checkpoint-{newest}")
    assert resumed.json["global_step"] == 20


def test_sigterm_to_the_launcher_saves_one_checkpoint_on_every_rank_and_resumes(tmp_path):
    data = preprocess(tmp_path)
    out = tmp_path / "run"
    proc = start(pretrain_args(data, out, "--set", "training.max_steps=400", "--num-processes", "2"))
    wait_for(proc, out / "checkpoints" / "checkpoint-10")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert stdout == "" and "Traceback" not in stderr
    assert "interrupted by SIGTERM" in stderr and "rerun the same command" in stderr
    # Each rank reports the signal; they stop at the same step, so the save is complete.
    assert "[rank 0] hfllm: SIGTERM received" in stderr and "[rank 1] hfllm: SIGTERM received" in stderr
    saved = sorted((out / "checkpoints").iterdir())
    assert saved and not any(p.name.startswith(".tmp") for p in saved)
    stopped_at = max(int(p.name.split("-")[1]) for p in saved)
    assert stopped_at > 10 and stopped_at % 10 != 0  # a checkpoint made because of the signal
    resumed = run_cli(
        *pretrain_args(data, out, "--set", f"training.max_steps={stopped_at + 5}", "--num-processes", "2")
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.json["resumed_from"].endswith(f"checkpoint-{stopped_at}")


def test_torchrun_entry_runs_two_processes(tmp_path):
    data = preprocess(tmp_path)
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    proc = start(["hfllm", *pretrain_args(data, out, *SHORT)], prefix=torchrun)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert len([line for line in stdout.splitlines() if line.strip()]) == 1  # rank 0 prints the result
    assert metrics(out)["world_size"] == 2 and metrics(out)["global_batch_size"] == 32


def test_accelerate_launch_entry_runs_two_processes_and_a_silent_single_one_is_refused(tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is a dependency; its launcher should be installed"
    data = preprocess(tmp_path)
    out = tmp_path / "run"
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "-m"]
    proc = start(["hfllm", *pretrain_args(data, out, *SHORT)], prefix=launch)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert metrics(out)["world_size"] == 2 and metrics(out)["global_batch_size"] == 32
    # Without --multi_gpu, accelerate starts ONE process on a CPU machine: refused, nothing trained.
    single = [accelerate, "launch", "--num_processes", "2", "-m"]
    proc = start(["hfllm", *pretrain_args(data, tmp_path / "single", *SHORT)], prefix=single)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode != 0 and stdout == ""
    assert "asked for 2 processes but this run has world size 1" in stderr
    assert not (tmp_path / "single" / "checkpoints").exists()


SIGNALS = pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])


@SIGNALS
def test_a_signal_during_evaluation_abandons_it_saves_and_resumes(tmp_path, signum, code):
    """Evaluations are slowed down by a test hook; the signal arrives in the middle of the one at step 10."""
    data = preprocess(tmp_path)
    out, marker = tmp_path / "run", tmp_path / "evaluating"
    env = {
        "PYTHONPATH": f"{HOOKS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "HFLLM_TEST_SLOW_EVAL": str(marker),
    }
    proc = start(pretrain_args(data, out, "--set", "training.save_steps=30"), env=env)
    wait_for(proc, marker)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-3000:]
    assert stdout == "" and "Traceback" not in stderr
    assert "evaluation at step 10 abandoned" in stderr and "rerun the same command" in stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-10"]
    resumed = pretrain(data, out, "--set", "training.save_steps=30")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.json["resumed_from"].endswith("checkpoint-10") and resumed.json["global_step"] == 40


@SIGNALS
def test_a_signal_during_preprocess_tokenization_leaves_nothing_taken_as_done(tmp_path, signum, code):
    out = tmp_path / "data"
    config = tmp_path / "preprocess.yaml"
    corpus = REPO / "hfllm" / "samples" / "corpus.txt"
    config.write_text(
        "kind: preprocess\n"
        f"data: {{files: [{corpus}]}}\n"
        "split: {validation: 0.05, test: 0.05}\n"
        "tokenizer: {train: {type: wordpiece, vocab_size: 2000}}\n"
        "packing: {mode: group, max_length: 128}\n"
        "num_proc: 2\n",
        encoding="utf-8",
    )
    # Without a terminal progress is a log line every HFLLM_PROGRESS_SECONDS: 0 logs each batch.
    proc = start(["preprocess", "--config", config, "--output-dir", out], env={"HFLLM_PROGRESS_SECONDS": "0"})
    lines = []
    for line in proc.stderr:  # logs; wait for the tokenization of the train split
        lines.append(line)
        if "tokenize+pack train" in line:
            break
    proc.send_signal(signum)
    stdout, rest = proc.communicate(timeout=120)
    stderr = "".join(lines) + rest
    assert proc.returncode == code, stderr[-3000:]
    assert stdout == "" and "Traceback" not in stderr and f"interrupted by {signum.name}" in stderr
    assert not (out / "manifest.json").exists()
    rerun = run_cli("preprocess", "--config", config, "--output-dir", out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.json["status"] == "built"
