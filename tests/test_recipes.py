"""`hfllm recipes`: the shipped configs are package data, listed one per line, copied ready to run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hfllm.config import load_any
from hfllm.config.shipped import CONFIGS_DIR, copy, default_destination, find, recipes

REPO = Path(__file__).resolve().parent.parent
NAMES = [r.name for r in recipes()]


def test_the_repos_configs_dir_is_the_packages():
    assert (REPO / "configs").resolve() == CONFIGS_DIR == REPO / "hfllm" / "configs"
    assert {"demo/preprocess", "pretrain/tiny", "finetune/minilm-classify", "preprocess/large"} <= set(NAMES)


def test_package_data_ships_every_config_file():
    """pyproject's package-data globs must cover every file under hfllm/configs/, or a wheel lacks it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "hfllm"
    ]
    shipped = {p for pattern in globs for p in (REPO / "hfllm").glob(pattern)}
    files = {p for p in CONFIGS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert files and files <= shipped, sorted(str(p) for p in files - shipped)


def test_recipes_lists_one_line_each(cli):
    result = cli("recipes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for line, recipe in zip(lines, recipes(), strict=True):
        assert recipe.summary and line.endswith(recipe.summary) and len(recipe.summary) <= 100
    assert find("pretrain/tiny").summary.startswith("A 2-layer, 32-wide BERT")


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_copies_to_a_config_that_validates_elsewhere(name, tmp_path, monkeypatch):
    """Copied into another dir and validated from there: the paths it names must still resolve."""
    monkeypatch.chdir(tmp_path)
    written = copy(name, "mine/")
    dest = Path("mine") / default_destination(find(name))
    assert written[0] == dest
    text = dest.read_text()
    first = text.splitlines()[0]
    flag = "--space" if name.startswith("sweep/") else "--config"  # a search space runs beside a config
    assert first.startswith("# hfllm ") and f"{flag} {dest} " in first + " "
    config = load_any(dest)
    assert config.kind == yaml.safe_load(text).get("kind", name.split("/")[0])
    for path in getattr(getattr(config, "data", None), "files", []) or []:
        if "samples" in path:
            assert Path(path).is_file(), path  # the bundled samples, wherever hfllm is installed


def test_deepspeed_recipe_brings_its_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = copy("pretrain/bert-base-deepspeed", "run.yaml")
    assert written == [Path("run.yaml"), Path("zero2.json")]
    assert load_any(Path("run.yaml")).training["deepspeed"] == "zero2.json"
    assert Path("zero2.json").read_text() == (CONFIGS_DIR / "deepspeed" / "zero2.json").read_text()


def test_copy_refuses_to_overwrite_without_force(cli, tmp_path):
    dest = tmp_path / "tiny.yaml"
    first = cli("recipes", "copy", "pretrain/tiny", dest)
    assert first.returncode == 0, first.stderr
    assert f"hfllm pretrain --config {dest}" in first.stderr
    dest.write_text("# mine\n")
    again = cli("recipes", "copy", "pretrain/tiny", dest)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert dest.read_text() == "# mine\n"
    forced = cli("recipes", "copy", "pretrain/tiny", dest, "--force")
    assert forced.returncode == 0 and dest.read_text().startswith("# hfllm pretrain")


def test_copy_default_destination_and_unknown_name(cli, tmp_path):
    result = cli("recipes", "copy", "demo/preprocess.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo-preprocess.yaml").is_file()
    wrong = cli("recipes", "copy", "pretrain/tiyn", cwd=tmp_path)
    assert wrong.returncode == 2 and "did you mean `pretrain/tiny`?" in wrong.stderr
    assert "Traceback" not in wrong.stderr and wrong.stdout == ""
