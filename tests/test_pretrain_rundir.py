"""The run dir: resume decisions, atomic checkpoints and their rotation (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfllm.errors import ConfigError, InputError
from hfllm.train.checkpoints import complete_checkpoints, rotate_checkpoints
from hfllm.train.rundir import prepare_run_dir

CONFIG = "kind: pretrain\ndata_dir: d\nmodel: {type: bert}\n"


def fake_checkpoint(checkpoints: Path, step: int, complete: bool = True) -> Path:
    path = checkpoints / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_fresh_run_writes_config(tmp_path):
    run = prepare_run_dir(tmp_path / "run", "auto", False, CONFIG)
    assert run.resume_from is None and not run.finished
    assert (tmp_path / "run" / "config.yaml").read_text() == CONFIG


def test_auto_resumes_from_newest_complete_and_drops_partials(tmp_path):
    ckpts = tmp_path / "checkpoints"
    fake_checkpoint(ckpts, 10)
    fake_checkpoint(ckpts, 20)
    fake_checkpoint(ckpts, 30, complete=False)  # no trainer_state.json: never resumed from
    (ckpts / ".tmp-checkpoint-40").mkdir()  # a save that was killed
    (tmp_path / "config.yaml").write_text(CONFIG)
    run = prepare_run_dir(tmp_path, "auto", False, CONFIG, must_match=("model",))
    assert run.resume_from == ckpts / "checkpoint-20"
    assert not (ckpts / ".tmp-checkpoint-40").exists()


def test_finished_run_is_reported_not_redone(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "config.yaml").write_text(CONFIG)
    assert prepare_run_dir(tmp_path, "auto", False, CONFIG).finished


def test_never_refuses_non_empty_unless_overwrite(tmp_path):
    fake_checkpoint(tmp_path / "checkpoints", 10)
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--overwrite"):
        prepare_run_dir(tmp_path, "never", False, CONFIG)
    run = prepare_run_dir(tmp_path, "never", True, CONFIG)
    assert run.resume_from is None and not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # never deletes what it did not create


def test_auto_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="not made by hfllm"):
        prepare_run_dir(tmp_path, "auto", False, CONFIG)


def test_resume_path_must_be_a_complete_checkpoint(tmp_path):
    partial = fake_checkpoint(tmp_path / "checkpoints", 5, complete=False)
    with pytest.raises(InputError, match="not a complete checkpoint"):
        prepare_run_dir(tmp_path / "other", str(partial), False, CONFIG)
    done = fake_checkpoint(tmp_path / "checkpoints", 6)
    assert prepare_run_dir(tmp_path / "other", str(done), False, CONFIG).resume_from == done


def test_changed_model_on_resume_is_refused(tmp_path):
    fake_checkpoint(tmp_path / "checkpoints", 10)
    (tmp_path / "config.yaml").write_text(CONFIG)
    changed = CONFIG.replace("bert", "roberta")
    with pytest.raises(ConfigError, match="changed model"):
        prepare_run_dir(tmp_path, "auto", False, changed, must_match=("model",))


def test_rotation_keeps_newest_and_best(tmp_path):
    for step in (10, 20, 30, 40, 50):
        fake_checkpoint(tmp_path, step)
    deleted = rotate_checkpoints(tmp_path, 2, keep=(tmp_path / "checkpoint-10",))
    assert sorted(p.name for p in deleted) == ["checkpoint-20", "checkpoint-30"]
    assert [p.name for p in complete_checkpoints(tmp_path)] == [
        "checkpoint-10",
        "checkpoint-40",
        "checkpoint-50",
    ]
    assert rotate_checkpoints(tmp_path, 1) and [p.name for p in complete_checkpoints(tmp_path)] == [
        "checkpoint-50"
    ]
