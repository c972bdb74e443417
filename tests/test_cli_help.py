"""The command line for people: -h everywhere, placeholders that say what to type, global flags in every
help, help examples that work, and shell completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hfllm.cli import command
from hfllm.config import load_config
from hfllm.config.schemas import schema_for

REPO = Path(__file__).resolve().parent.parent
STARTERS = REPO / "hfllm" / "config" / "starters"


def _paths(cmd, path=()):
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _paths(sub, (*path, name))


PATHS = list(_paths(command()))


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], tuple[int, str]]:
    """Return {command path: (exit code, text)} of `hfllm PATH -h`, all from one process."""
    code = (
        "import contextlib, io, json, sys\nfrom hfllm.cli import main\nout = {}\n"
        f"for path in {PATHS!r}:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        try:\n            main([*path, '-h']); rc = 0\n"
        "        except SystemExit as e:\n            rc = e.code or 0\n"
        "    out[' '.join(path)] = [rc, buf.getvalue()]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {tuple(k.split()): tuple(v) for k, v in json.loads(proc.stdout.splitlines()[-1]).items()}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "hfllm")
def test_dash_h_and_global_flags_in_every_help(helps, path):
    code, text = helps[path]
    assert code == 0 and text.startswith("Usage: hfllm"), text
    assert "--debug" in text and "--quiet" in text and "-h, --help" in text
    # An option's placeholder names what to type (FILE, KEY=VALUE, auto|never|PATH), never a type like <str>.
    assert not re.search(r"^\s+(-\w, )?--[\w-]+ <", text, re.M), text


def test_placeholders_say_what_to_type(helps):
    assert "--set KEY=VALUE" in helps[("preprocess",)][1]
    assert "--resume auto|never|PATH" in helps[("pretrain",)][1]
    usage = "{evaluate|finetune|finetune-instruct|preprocess|preprocess-causal|pretrain|pretrain-causal}"
    assert usage in re.sub(r"-\n\s*", "-", helps[("config", "init")][1])  # the usage line wraps at hyphens
    assert "--config FILE" in helps[("finetune",)][1] and "--output-dir DIR" in helps[("finetune",)][1]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (("preprocess",), "preprocess"),
        (("pretrain",), "pretrain"),
        (("finetune",), "finetune"),
        (("config", "show"), "preprocess"),
        (("evaluate",), "evaluate"),
    ],
)
def test_the_set_example_in_each_help_works(helps, path, kind):
    text = " ".join(helps[path][1].split())
    example = re.search(r"e\.g\. --set (\S+?)\.?(?:\s|$)", text).group(1)
    config = load_config(schema_for(kind), STARTERS / f"{kind}.yaml", [example])
    key, value = example.split("=", 1)
    node = config
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    assert str(node) == value or node == float(value)


def test_evaluate_takes_config_and_set_like_the_other_commands(helps):
    text = " ".join(helps[("evaluate",)][1].split())
    assert "--config FILE" in text and "--set KEY=VALUE" in text and "--data DIR|FILE" in text


def _complete(words: str, env_extra=None) -> list[str]:
    env = {**os.environ, "_HFLLM_COMPLETE": "complete_bash", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    proc = subprocess.run(
        [sys.executable, "-m", "hfllm"], env={**env, **(env_extra or {})}, capture_output=True, text=True
    )
    return proc.stdout.split()


def test_completion_completes_commands_options_and_recipe_names():
    assert {"preprocess", "pretrain", "predict"} <= set(_complete("hfllm pre"))
    assert {"--resume", "--resume-force"} == set(_complete("hfllm pretrain --resu"))
    assert "pretrain/tiny" in _complete("hfllm recipes copy pretrain/ti")
    assert set(_complete("hfllm config init p")) == {
        "preprocess",
        "preprocess-causal",
        "pretrain",
        "pretrain-causal",
    }


def test_completion_installs_for_bash(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run(
        [sys.executable, "-m", "hfllm", "--show-completion", "bash"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "_HFLLM_COMPLETE=complete_bash" in shown.stdout
    installed = subprocess.run(
        [sys.executable, "-m", "hfllm", "--install-completion", "bash"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "hfllm.sh"
    assert "_HFLLM_COMPLETE" in script.read_text() and str(script) in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("finetune", {"files": "x.csv"}),
        ("preprocess", {"files": "corpus.txt"}),
        ("preprocess", {"train_files": "a.txt", "validation_files": "b.txt", "test_files": "c.txt"}),
    ],
)
def test_a_string_is_accepted_wherever_a_list_of_files_is(tmp_path, kind, data):
    import yaml

    extra = {"model": {"name_or_path": "m"}} if kind == "finetune" else {}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kind": kind, "data": data, **extra}))
    config = load_config(schema_for(kind), path)
    for key, value in data.items():
        assert getattr(config.data, key) == [value]
