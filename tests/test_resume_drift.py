"""Resuming with another tokenizer, model size, max_length, label set or world size is refused, naming
what changed (old -> new), unless --resume-force (then a warning, and it resumes): run_facts.json."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, run_cli

from hfllm.errors import ConfigError
from hfllm.owners import MARKER
from hfllm.train.facts import check_resume_facts, check_world_size_before_launch, run_facts
from hfllm.train.rundir import FACTS, RUN_ENTRIES, prepare_run_dir

CONFIG = "kind: pretrain\ndata_dir: d\nmodel: {type: bert}\n"
MODEL = dict(
    model_type="bert",
    vocab_size=800,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
    num_labels=2,
)


def facts(tokenizer: str = "a" * 64, max_length: int = 64, global_batch: int = 16, **changes) -> dict:
    """Return run facts as a 1-process run records them, with `changes` applied (model.X=... for the model)."""
    model = {**MODEL, **{k.removeprefix("model_"): v for k, v in changes.items() if k.startswith("model_")}}
    extra = {k: v for k, v in changes.items() if not k.startswith("model_")}
    recorded = run_facts(tokenizer, max_length, SimpleNamespace(**model), global_batch)
    return {**recorded, **extra}


def resumable(path: Path, recorded: dict) -> Path:
    """Make `path` a run dir with a complete checkpoint-10 and `recorded` as its run facts."""
    checkpoint = path / "checkpoints" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    (path / "config.yaml").write_text(CONFIG)
    (path / FACTS).write_text(json.dumps(recorded))
    (path / MARKER).write_text(json.dumps({"command": "pretrain", "recipe": "masked-lm"}))
    return checkpoint


@pytest.fixture
def warnings():
    """Collect the warnings hfllm logs (its logger may not propagate to the root logger)."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("hfllm")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


CHANGES = {
    "tokenizer": (facts(), facts(tokenizer="b" * 64), "tokenizer fingerprint aaaaaaaaaaaa -> bbbbbbbbbbbb"),
    "max_length": (facts(), facts(max_length=128), "max_length 64 -> 128"),
    "model size": (facts(), facts(model_hidden_size=64), "model.hidden_size 32 -> 64"),
    "vocabulary": (facts(), facts(model_vocab_size=900), "model.vocab_size 800 -> 900"),
    "labels": (facts(labels=["a", "b"]), facts(labels=["a", "c"]), "labels ['a', 'b'] -> ['a', 'c']"),
    # the recorded run had two processes; this one has one (WORLD_SIZE unset)
    "world size": (facts(world_size=2, global_batch=32), facts(), "world size 2 -> 1"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_fact_is_refused_then_forced(tmp_path, warnings, change):
    old, new, said = CHANGES[change]
    checkpoint = resumable(tmp_path, old)
    before = (tmp_path / FACTS).read_text()
    run = prepare_run_dir(tmp_path, "auto", False, CONFIG, start=False)
    assert run.resume_from == checkpoint
    with pytest.raises(ConfigError) as refused:
        check_resume_facts(run, new)
    message = str(refused.value)
    assert said in message and str(tmp_path / FACTS) in message, message
    assert "--resume-force" in refused.value.hint and "--overwrite" in refused.value.hint
    assert refused.value.exit_code == 2
    assert (tmp_path / FACTS).read_text() == before  # a refused run changes nothing

    check_resume_facts(run, new, force=True)
    assert any("--resume-force" in w and said in w for w in warnings), warnings
    run.start()
    assert json.loads((tmp_path / FACTS).read_text()) == new  # the next resume compares with these


def test_world_size_is_the_launchers(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert facts()["world_size"] == 4
    monkeypatch.delenv("WORLD_SIZE")
    assert facts()["world_size"] == 1


def test_unchanged_facts_resume_and_a_fresh_run_records_them(tmp_path):
    resumable(tmp_path / "old", facts())
    run = prepare_run_dir(tmp_path / "old", "auto", False, CONFIG, start=False)
    check_resume_facts(run, facts())  # nothing changed: no error
    fresh = prepare_run_dir(tmp_path / "new", "auto", False, CONFIG, start=False)
    check_resume_facts(fresh, facts())
    assert not (tmp_path / "new" / FACTS).exists()  # nothing is written before start()
    fresh.start()
    assert json.loads((tmp_path / "new" / FACTS).read_text()) == facts()


def test_resume_path_compares_with_the_facts_of_the_checkpoints_run(tmp_path):
    checkpoint = resumable(tmp_path / "old", facts(max_length=32))
    run = prepare_run_dir(tmp_path / "new", str(checkpoint), False, CONFIG, start=False)
    with pytest.raises(ConfigError, match="max_length 32 -> 64"):
        check_resume_facts(run, facts())


def test_a_run_dir_without_facts_resumes(tmp_path):
    resumable(tmp_path, facts())
    (tmp_path / FACTS).unlink()  # written before run facts existed
    run = prepare_run_dir(tmp_path, "auto", False, CONFIG, start=False)
    check_resume_facts(run, facts())
    run.start()
    assert (tmp_path / FACTS).is_file()


def test_overwrite_removes_the_facts(tmp_path):
    assert FACTS in RUN_ENTRIES
    resumable(tmp_path, facts(world_size=2))
    run = prepare_run_dir(tmp_path, "never", True, CONFIG, start=False)
    check_resume_facts(run, facts())  # a fresh start: nothing to compare
    run.start()
    assert json.loads((tmp_path / FACTS).read_text())["world_size"] == 1
    assert not (tmp_path / "checkpoints").exists()


def test_changed_config_key_is_a_warning_with_force(tmp_path, warnings):
    resumable(tmp_path, facts())
    changed = CONFIG.replace("bert", "roberta")
    with pytest.raises(ConfigError, match="changed model") as refused:
        prepare_run_dir(tmp_path, "auto", False, changed, must_match=("model",), start=False)
    assert "--resume-force" in refused.value.hint
    run = prepare_run_dir(tmp_path, "auto", False, changed, must_match=("model",), start=False, force=True)
    assert run.resume_from is not None and any("changed model" in w for w in warnings)


def test_world_size_is_checked_before_launching_workers(tmp_path):
    resumable(tmp_path, facts())
    with pytest.raises(ConfigError, match="world size 1 -> 2") as refused:
        check_world_size_before_launch(tmp_path, "auto", False, False, 2)
    assert "--num-processes 1 on one machine" in refused.value.hint
    check_world_size_before_launch(tmp_path, "auto", False, True, 2)  # --resume-force
    check_world_size_before_launch(tmp_path, "auto", True, False, 2)  # --overwrite
    check_world_size_before_launch(tmp_path, "auto", False, False, 1)
    check_world_size_before_launch(tmp_path / "fresh", "auto", False, False, 2)


def test_both_commands_offer_resume_force():
    for command in ("pretrain", "finetune"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "--resume-force" in result.stdout, result.stdout


def test_pretrain_refuses_a_resume_recorded_with_two_processes(tmp_path):
    """End to end, without launching two processes: the recorded run had world size 2."""
    from test_pretrain import make_data_dir, pretrain

    data = make_data_dir(tmp_path / "data", max_length=32)
    out = tmp_path / "run"
    recorded = {"format": 1, "world_size": 2, "global_batch_size": 32}  # facts not recorded are not compared
    resumable(out, recorded)
    (out / "config.yaml").unlink()  # compare only the facts
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    refused = pretrain(data, out)
    assert refused.returncode == 2, refused.stderr
    assert "world size 2 -> 1; global batch size 32 -> 16" in refused.stderr, refused.stderr
    assert "--resume-force" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert json.loads((out / FACTS).read_text()) == recorded


# --- slow: real trainings ---


def _pretrain_args(data: Path, out: Path, max_steps: int) -> list[str]:
    sets = {"max_steps": max_steps, "save_steps": 2, "eval_steps": 2, "logging_steps": 1}
    return [
        "pretrain",
        "--config",
        str(REPO / "configs" / "pretrain" / "tiny.yaml"),
        "--set",
        f"data_dir={data}",
        "--output-dir",
        str(out),
        *[a for key, value in sets.items() for a in ("--set", f"training.{key}={value}")],
    ]


def _interrupted_run(data: Path, out: Path) -> Path:
    """Train 4 steps, then make the run look interrupted after checkpoint-4; return that checkpoint."""
    first = run_cli(*_pretrain_args(data, out, 4))
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.rmtree(out / "model")
    (out / "metrics.json").unlink()
    return out / "checkpoints" / "checkpoint-4"


@pytest.mark.slow
def test_pretrain_on_a_re_preprocessed_data_dir_is_refused_then_forced(tmp_path):
    from test_pretrain import corpus_lines, make_data_dir

    data = make_data_dir(tmp_path / "data", corpus_lines(400), max_length=32)
    out = tmp_path / "run"
    checkpoint = _interrupted_run(data, out)
    old = json.loads((out / FACTS).read_text())
    shutil.rmtree(data)  # re-preprocessed at the same path: another vocabulary of the same size
    make_data_dir(data, corpus_lines(800)[400:], max_length=32)
    new_fingerprint = json.loads((data / "manifest.json").read_text())["tokenizer"]["fingerprint"]
    assert new_fingerprint != old["tokenizer"]

    refused = run_cli(*_pretrain_args(data, out, 6))
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"tokenizer fingerprint {old['tokenizer'][:12]} -> {new_fingerprint[:12]}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads((out / FACTS).read_text()) == old

    forced = run_cli(*_pretrain_args(data, out, 6), "--resume-force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "--resume-force" in forced.stderr and forced.json["resumed_from"] == str(checkpoint)
    assert forced.json["global_step"] == 6
    assert json.loads((out / FACTS).read_text())["tokenizer"] == new_fingerprint


@pytest.mark.slow
def test_resuming_a_one_process_run_on_two_processes(tmp_path):
    from test_pretrain import make_data_dir

    data = make_data_dir(tmp_path / "data", max_length=32)
    out = tmp_path / "run"
    checkpoint = _interrupted_run(data, out)
    assert json.loads((out / FACTS).read_text())["world_size"] == 1

    refused = run_cli(*_pretrain_args(data, out, 6), "--num-processes", "2")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "world size 1 -> 2" in refused.stderr and "--resume-force" in refused.stderr
    # torchrun started by hand skips hfllm's launcher: each worker refuses by itself
    workers = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hfllm"]
        + _pretrain_args(data, out, 6),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert workers.returncode != 0 and "world size 1 -> 2; global batch size 16 -> 32" in workers.stderr
    assert not (out / "model").exists()

    forced = run_cli(*_pretrain_args(data, out, 6), "--num-processes", "2", "--resume-force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "world size 1 -> 2" in forced.stderr
    assert forced.json["resumed_from"] == str(checkpoint) and forced.json["global_step"] == 6
    assert json.loads((out / FACTS).read_text())["world_size"] == 2


@pytest.mark.slow
def test_finetune_on_a_relabelled_data_dir_is_refused_and_max_length_forced(tmp_path, ft_build, ft_tiny):
    import yaml

    model_dir, tokenizer = ft_tiny
    data, out = ft_build.sequence_data_dir(tmp_path / "data", tokenizer), tmp_path / "run"
    steps = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 2, "save_steps": 2}
    training = {"max_steps": 4, **steps, "report_to": [], "logging_steps": 1}
    config = {"kind": "finetune", "model": {"name_or_path": str(model_dir)}, "data": {"dir": str(data)}}
    config_path = tmp_path / "ft.yaml"
    config_path.write_text(yaml.safe_dump({**config, "output_dir": str(out), "training": training}))
    first = run_cli("finetune", "--config", config_path)
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.rmtree(out / "model")
    (out / "metrics.json").unlink()
    old = json.loads((out / FACTS).read_text())
    assert old["labels"] == ["games", "mail", "science", "sound"] and old["max_length"] == 64

    shutil.rmtree(data)  # re-preprocessed at the same path with another label set
    ft_build.sequence_data_dir(data, tokenizer, "multi_label_classification")
    refused = run_cli("finetune", "--config", config_path, "--set", "training.max_steps=6")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "model.num_labels 4 -> 3" in refused.stderr and "labels ['games', 'mail'" in refused.stderr
    assert "Traceback" not in refused.stderr and json.loads((out / FACTS).read_text()) == old

    shutil.rmtree(data)  # the old labels, but the manifest now says max_length 48
    ft_build.sequence_data_dir(data, tokenizer)
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "max_length": 48}))
    refused = run_cli("finetune", "--config", config_path, "--set", "training.max_steps=6")
    assert refused.returncode == 2 and "max_length 64 -> 48" in refused.stderr, refused.stderr[-3000:]
    forced = run_cli("finetune", "--config", config_path, "--set", "training.max_steps=6", "--resume-force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "--resume-force" in forced.stderr and "max_length 64 -> 48" in forced.stderr
    assert forced.json["resumed_from"] == str(out / "checkpoints" / "checkpoint-4")
    assert json.loads((out / FACTS).read_text())["max_length"] == 48
