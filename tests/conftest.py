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
