"""Shared test helpers: offline always, and a runner for the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests never touch the network: no model, tokenizer, dataset or metric from the Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        """The one JSON object the command printed on stdout."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, (
            f"expected one JSON line on stdout, got {len(lines)}:\n{self.stdout}\n{self.stderr}"
        )
        return json.loads(lines[0])


def run_cli(*args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 600) -> CliResult:
    """Run `python -m hfllm ARGS` as a user would and return its exit code and output."""
    proc = subprocess.run(
        [sys.executable, "-m", "hfllm", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


# --- fine-tuning, evaluate, predict (tests/fixtures/finetune/build.py) ---


def _finetune_builders():
    import importlib.util

    path = Path(__file__).resolve().parent / "fixtures" / "finetune" / "build.py"
    spec = importlib.util.spec_from_file_location("hfllm_finetune_fixture_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def ft_build():
    """The builders of tests/fixtures/finetune/build.py (tiny model, supervised data dirs)."""
    return _finetune_builders()


@pytest.fixture(scope="session")
def ft_tiny(ft_build, tmp_path_factory):
    """A tiny masked-LM model dir (2 layers, hidden 32) and its tokenizer, built once per session."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("ft-tiny")
    model_dir = ft_build.tiny_model_dir(root / "model")
    return model_dir, AutoTokenizer.from_pretrained(str(model_dir))


# --- causal LMs: preprocess, generate, evaluate (tests/fixtures/causal/build.py) ---


@pytest.fixture(scope="session")
def causal_build():
    """The builders of tests/fixtures/causal/build.py (BPE tokenizers, tiny causal models)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "fixtures" / "causal" / "build.py"
    spec = importlib.util.spec_from_file_location("hfllm_causal_fixture_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def causal_model(causal_build, tmp_path_factory):
    """A tiny GPT-2-type model dir (2 layers, hidden 32, context 64) with a GPT-2-style tokenizer."""
    return causal_build.causal_model_dir(tmp_path_factory.mktemp("causal") / "model")
