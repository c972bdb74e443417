"""The CLI shell: start-up cost, version, exit codes and the message contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hfllm import __version__
from hfllm.config import load_any

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "datasets", "accelerate")
# The shipped configs live in the package (hfllm/configs/); the repo's configs/ is a link to them.
CONFIGS = sorted((REPO / "hfllm" / "configs").glob("*/*.yaml"))
STARTERS = sorted((REPO / "hfllm" / "config" / "starters").glob("*.yaml"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["config", "--help"],
        ["config", "init", "--help"],
        ["config", "validate", "--help"],
        ["recipes"],
        ["recipes", "copy", "-h"],
    ],
)
def test_help_imports_no_heavy_library(argv):
    code = (
        "import sys\nfrom hfllm.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_config_validate_imports_no_heavy_library(tmp_path):
    if not STARTERS:
        pytest.skip("no starter config yet")
    code = (
        "import sys\nfrom hfllm.cli import main\n"
        f"try:\n    main(['config', 'validate', {str(STARTERS[0])!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hfllm {__version__}"


def test_python_dash_m_and_console_script_agree():
    script = Path(sys.executable).parent / "hfllm"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"hfllm {__version__}"


def test_unknown_command_is_usage_error(cli):
    result = cli("pretrian")
    assert result.returncode == 2 and "pretrian" in result.stderr


def test_missing_config_file_exit_2_no_traceback(cli, tmp_path):
    result = cli("config", "validate", tmp_path / "absent.yaml")
    assert result.returncode == 2
    assert "config file not found" in result.stderr and "absent.yaml" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_config_without_kind_says_how_to_fix(cli, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n")
    result = cli("config", "validate", path)
    assert (
        result.returncode == 2
        and "add `kind: <command>`" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_malformed_yaml_via_cli(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: x\nlist: [1, 2\n")
    result = cli("config", "validate", path)
    assert result.returncode == 2 and f"{path}:3:1: malformed YAML" in result.stderr


def test_debug_shows_traceback(cli, tmp_path):
    result = cli("config", "validate", tmp_path / "absent.yaml", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_init_unknown_kind(cli):
    result = cli("config", "init", "nonsense")
    assert result.returncode == 2 and "no starter config for 'nonsense'" in result.stderr


@pytest.mark.parametrize("starter", STARTERS, ids=lambda p: p.stem)
def test_init_writes_a_valid_starter_and_refuses_to_overwrite(cli, tmp_path, starter):
    out = tmp_path / "new.yaml"
    assert cli("config", "init", starter.stem, "-o", out).returncode == 0
    assert out.read_text() == starter.read_text() and out.read_text().startswith("#")
    assert cli("config", "validate", out).returncode == 0
    again = cli("config", "init", starter.stem, "-o", out)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "hfllm" / "configs")))
def test_every_shipped_config_validates(path):
    text = path.read_text()
    assert text.startswith("#") and "hfllm " in text.splitlines()[0], (
        "configs start with the command that runs them"
    )
    config = load_any(path)
    assert yaml.safe_load(text).get("kind", path.parent.name) == config.kind


def test_config_reference_is_up_to_date():
    from hfllm.config.reference import reference

    path = REPO / "docs" / "config-reference.md"
    assert path.exists() and path.read_text() == reference(), (
        "stale docs/config-reference.md: run `make docs`"
    )
