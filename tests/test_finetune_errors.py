"""`hfllm finetune` refuses data it cannot learn from, with exit 3 (and config mistakes with exit 2)."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import run_cli


def _config(tmp_path: Path, model_dir: Path, data: dict, **extra) -> Path:
    path = tmp_path / "ft.yaml"
    body = {
        "kind": "finetune",
        "model": {"name_or_path": str(model_dir)},
        "data": data,
        "output_dir": str(tmp_path / "run"),
    }
    path.write_text(yaml.safe_dump({**body, **extra}))
    return path


def test_finetune_refuses_a_data_dir_without_labels(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.unlabelled_data_dir(tmp_path / "data", tokenizer)
    result = run_cli("finetune", "--config", _config(tmp_path, model_dir, {"dir": str(data_dir)}))
    assert result.returncode == 3, result.stderr
    assert "no `labels` column" in result.stderr and str(data_dir) in result.stderr
    assert "packing.mode: supervised" in result.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_finetune_refuses_a_model_dir_without_tokenizer(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((model_dir / name).read_bytes())
    result = run_cli("finetune", "--config", _config(tmp_path, bare, {"dir": str(data_dir)}))
    assert result.returncode == 3 and "no tokenizer" in result.stderr


def test_finetune_config_needs_a_data_source(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    result = run_cli("finetune", "--config", _config(tmp_path, model_dir, {}))
    assert result.returncode == 2 and "data.dir" in result.stderr


def test_finetune_task_must_match_the_data(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    config = _config(tmp_path, model_dir, {"dir": str(data_dir)}, task="token-classification")
    result = run_cli("finetune", "--config", config)
    assert result.returncode == 3 and "set task: sequence-classification" in result.stderr
