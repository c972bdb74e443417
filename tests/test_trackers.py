"""training.report_to: a tracker whose package is missing is a config error naming the extra to install."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from hfllm.config import load_config
from hfllm.config.schemas.pretrain import PretrainConfig
from hfllm.config.trackers import PACKAGES, known_trackers
from hfllm.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "pretrain" / "tiny.yaml"
EXTRAS = ("wandb", "mlflow", "trackio")


def _hide(monkeypatch, *modules: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a)
    )


@pytest.mark.parametrize("tracker", EXTRAS)
def test_missing_tracker_names_the_extra(tracker, monkeypatch):
    _hide(monkeypatch, PACKAGES[tracker][0])
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, TINY, [f"training.report_to=[tensorboard, {tracker}]"])
    text = str(err.value)
    assert f"--set training.report_to=[tensorboard, {tracker}]" in text
    assert f"the {tracker} package is not installed" in text and f"pip install 'hfllm[{tracker}]'" in text


@pytest.mark.parametrize("tracker", EXTRAS)
def test_installed_tracker_validates(tracker, monkeypatch):
    real = importlib.util.find_spec
    present = PACKAGES[tracker][0]
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == present else real(name, *a)
    )
    config = load_config(PretrainConfig, TINY, [f"training.report_to={tracker}"])
    assert config.training["report_to"] == tracker


def test_every_extra_named_in_an_error_exists_in_pyproject():
    text = (REPO / "pyproject.toml").read_text()
    for tracker in EXTRAS:
        assert PACKAGES[tracker][1] == f"hfllm[{tracker}]"
        assert re.search(rf"^{tracker} = \[", text, re.M), f"no [{tracker}] extra in pyproject.toml"
    assert set(EXTRAS) <= set(known_trackers())


def test_typo_and_special_values(monkeypatch):
    with pytest.raises(ConfigError, match="did you mean `wandb`"):
        load_config(PretrainConfig, TINY, ["training.report_to=[wanbd]"])
    for value in ("none", "all", "[]", "tensorboard"):
        load_config(PretrainConfig, TINY, [f"training.report_to={value}"])


def test_cli_refuses_a_missing_tracker_before_any_work(cli, tmp_path):
    missing = next((t for t in EXTRAS if importlib.util.find_spec(PACKAGES[t][0]) is None), None)
    if missing is None:
        pytest.skip("every tracker is installed here")
    out = tmp_path / "run"
    result = cli("pretrain", "--config", TINY, "--set", f"training.report_to={missing}", "--output-dir", out)
    assert result.returncode == 2 and f"hfllm[{missing}]" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "" and not out.exists()
