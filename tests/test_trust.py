"""Issue 13 with real processes: the lock on a run dir and a data dir, honest reruns of finished runs, and
output dirs that belong to someone else. (The bad-input matrix, tests/fixtures/bad_inputs/cases_trust.py,
holds the one-shot refusals.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_pretrain import make_data_dir

TINY = REPO / "configs" / "pretrain" / "tiny.yaml"
CORPUS = REPO / "tests" / "fixtures" / "preprocess" / "corpus.txt"


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hfllm", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def pretrain_args(data: Path, out: Path, steps: int = 12, *extra: str) -> list:
    sets = {"data_dir": data, "training.max_steps": steps, "training.save_steps": 4, "training.eval_steps": 4}
    return [
        "pretrain",
        "--config",
        TINY,
        *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
        "--output-dir",
        out,
        *extra,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("trust") / "data", max_length=32)


def test_two_runs_started_in_the_same_second_one_trains_the_other_is_refused(data, tmp_path):
    out = tmp_path / "run"
    procs = [start(*pretrain_args(data, out)), start(*pretrain_args(data, out))]
    results = [(p.pid, p.returncode, *p.communicate(timeout=600)) for p in procs]
    results = [
        (pid, proc.returncode, stdout, stderr)
        for (pid, _, stdout, stderr), proc in zip(results, procs, strict=True)
    ]
    winners = [r for r in results if r[1] == 0]
    losers = [r for r in results if r[1] != 0]
    assert len(winners) == 1 and len(losers) == 1, [r[1:] for r in results]
    (winner_pid, _, stdout, _), (_, code, lost_out, lost_err) = winners[0], losers[0]
    assert json.loads(stdout)["status"] == "finished"
    assert code == 2 and lost_out == "" and "Traceback" not in lost_err
    assert f"in use by another `hfllm pretrain` (pid {winner_pid} on host {socket.gethostname()})" in lost_err
    assert not (out / ".hfllm.lock").exists()  # released and removed when the run ended


def test_a_lock_left_by_a_killed_run_is_taken_over(data, tmp_path):
    out = tmp_path / "run"
    proc = start(*pretrain_args(data, out, 40))
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    assert (out / ".hfllm.lock").read_text().startswith(f"pid {proc.pid} on host ")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = run_cli(*pretrain_args(data, out, 40))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"taking over the lock of {out}, left by pid {proc.pid}" in again.stderr
    assert again.json["resumed_from"] is not None and again.json["global_step"] == 40


def test_two_preprocess_runs_on_one_data_dir(tmp_path):
    sets = [f"data.files=[{CORPUS}]", "tokenizer.train.vocab_size=300", "num_proc=1"]
    args = ["preprocess", *[a for s in sets for a in ("--set", s)], "--output-dir", tmp_path / "data"]
    procs = [start(*args), start(*args)]
    outcomes = sorted((p.wait(timeout=600), p) for p in procs)
    (ok, first), (refused, second) = outcomes
    assert (ok, refused) == (0, 2), [p.communicate() for p in procs]
    assert "in use by another `hfllm preprocess`" in second.communicate()[1]


def test_a_finished_run_with_another_config_is_refused_not_reported(data, tmp_path):
    out = tmp_path / "run"
    first = run_cli(*pretrain_args(data, out, 2))
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    changed = run_cli(*pretrain_args(data, out, 2, "--set", "model.config.hidden_size=64"))
    assert changed.returncode == 2 and changed.stdout == ""
    assert "model.config.hidden_size: 32 -> 64" in changed.stderr and "--overwrite" in changed.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    same = run_cli(*pretrain_args(data, out, 2))
    assert same.returncode == 0 and same.json["status"] == "already_finished"
    assert same.json["metrics"] == first.json["metrics"]


def test_finetune_never_writes_into_a_pretrain_run_even_with_overwrite(data, tmp_path):
    pretrained = tmp_path / "pretrain"
    assert run_cli(*pretrain_args(data, pretrained, 2)).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in pretrained.rglob("*") if p.is_file()}
    config = tmp_path / "ft.yaml"
    config.write_text(
        f"kind: finetune\nmodel: {{name_or_path: {pretrained / 'model'}}}\n"
        f"data: {{files: [{REPO / 'tests/fixtures/finetune/classify.csv'}]}}\n"
    )
    for extra in ((), ("--overwrite",)):
        refused = run_cli("finetune", "--config", config, "--output-dir", pretrained, *extra)
        assert refused.returncode == 2 and "a run dir of `hfllm pretrain`" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in pretrained.rglob("*") if p.is_file()} == before


def test_the_lock_names_its_holder_from_the_moment_it_is_taken(tmp_path):
    """A second run that asks while the first is still deciding whether it has work is told who holds the
    dir (CI once saw 'unknown holder' there); a run with nothing to do leaves a dead holder's note as it was."""
    from hfllm.errors import ConfigError
    from hfllm.fsutil import LOCK_FILE, DirLock

    first, second = DirLock(tmp_path), DirLock(tmp_path)
    first.acquire("`hfllm pretrain`")  # not claimed yet
    with pytest.raises(ConfigError) as refused:
        second.acquire("`hfllm pretrain`")
    assert f"(pid {os.getpid()} on host {socket.gethostname()})" in str(refused.value)
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()  # it made the file and never started: no trace left

    (tmp_path / LOCK_FILE).write_text("pid 1 on host gone\n")
    idle = DirLock(tmp_path)
    idle.acquire("`hfllm pretrain`")
    idle.release()  # nothing to do: the note stays for the run that resumes
    assert (tmp_path / LOCK_FILE).read_text() == "pid 1 on host gone\n"


def test_the_lock_of_a_killed_run_is_taken_once_the_processes_it_forked_let_go(tmp_path):
    """A run killed with SIGKILL leaves its data loader workers (forked: they share its lock) alive for a
    few seconds; a rerun waits for them instead of calling the dir in use by a process that is gone."""
    from hfllm.fsutil import LOCK_FILE, DirLock

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    note = f"pid {dead.stdout.strip()} on host {socket.gethostname()}\n"
    (tmp_path / LOCK_FILE).write_text(note)
    worker = subprocess.Popen(  # stands in for a forked worker: holds the lock 1.5 s, then exits
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX);"
         "print('held', flush=True); time.sleep(1.5)", str(tmp_path / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert worker.stdout.readline() == "held\n"
    lock = DirLock(tmp_path)
    started = time.monotonic()
    lock.acquire("`hfllm pretrain`")
    waited = time.monotonic() - started
    assert worker.wait(timeout=5) == 0 and 0.5 < waited < 10, waited  # it waited for the worker to let go
    lock.claim()
    lock.release()
    worker.wait()
