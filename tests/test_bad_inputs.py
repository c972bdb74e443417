"""The bad-input matrix (issue 8 item 8): every command, every kind of broken input, one parametrised test.

Each case (tests/fixtures/bad_inputs/cases_*.py) asserts the documented exit code (2 config/usage,
3 data/model/tokenizer), an error on stderr that names the input (its path, and line/row/key where
it applies), no traceback, a stdout that is empty or JSON lines (answers to the lines before a bad
one), and that no file the case's inputs and outputs held before was changed or removed (sha256 and
mtime), nor any file added outside the case's output dir.

The CLI runs in-process through `hfllm.cli.main`, the console script's entry point (same error
printing, same exit codes), so that imports are paid once. The cases in SUBPROCESS also run as a
real `python -m hfllm` first and must give the same exit code and the same error text.
"""

from __future__ import annotations

import pytest
from conftest import run_cli

from tests.fixtures.bad_inputs import (
    cases_analysis,
    cases_causal,
    cases_config,
    cases_generate,
    cases_inference,
    cases_lora,
    cases_preprocess,
    cases_training,
    cases_trust,
)
from tests.fixtures.bad_inputs.harness import (
    Env,
    build_shared,
    check_files,
    check_result,
    error_text,
    run_in_process,
    snapshot,
)

TABLES = (
    cases_config.CASES,
    cases_preprocess.CASES,
    cases_training.CASES,
    cases_inference.CASES,
    cases_trust.CASES,
    cases_generate.CASES,
    cases_causal.CASES,
    cases_analysis.CASES,
    cases_lora.CASES,
)
CASES = {name: build for table in TABLES for name, build in table.items()}
# One case per exit path that matters: a config error, a data error while reading, predict's stdin.
SUBPROCESS = ("config-validate-unknown-key", "preprocess-corpus-latin1", "predict-stdin-empty")


def test_the_matrix_covers_every_command():
    assert len(CASES) == sum(len(t) for t in TABLES), "two cases share a name"
    # issue 8 gave 85 cases; issue 13 added 30 more, issue 14 (causal LMs, generate) 15 more.
    assert len(cases_trust.CASES) >= 30 and len(cases_generate.CASES) >= 15 and len(CASES) >= 130
    commands = ("config", "preprocess", "pretrain", "finetune", "evaluate", "predict", "generate")
    commands += ("inspect", "attention", "sweep", "export")
    assert {name.split("-")[0] for name in CASES} == set(commands)


@pytest.fixture(scope="session")
def shared(ft_build, ft_tiny, tmp_path_factory):
    return build_shared(ft_build, ft_tiny, tmp_path_factory.mktemp("bad-inputs-shared"))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, shared, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output dir would land here, and count as an added file
    env = Env(tmp_path / "case", shared)
    env.tmp.mkdir()
    spec = CASES[name](env)
    roots = [env.tmp, *shared.roots()]
    before = snapshot(roots)
    if name in SUBPROCESS:
        real = run_cli(*spec.argv, input=None if spec.stdin is None else spec.stdin.decode("utf-8"))
        check_result(real, spec)
        after = snapshot(roots)
        check_files(before, after, spec.output, real.stderr)
        before = after  # what the real run left in its output dir is the in-process run's start
    result = run_in_process(spec.argv, spec.stdin, capfd, monkeypatch)
    check_result(result, spec)
    check_files(before, snapshot(roots), spec.output, result.stderr)
    if name in SUBPROCESS:
        assert error_text(result.stderr) == error_text(real.stderr)
