"""The root `hfllm` command: a table of command names to their modules, and the error contract."""

from __future__ import annotations

import importlib
import signal
import sys

import typer

from hfllm import __version__
from hfllm.errors import EXIT_SIGINT, EXIT_SIGTERM, EXIT_UNEXPECTED, HfllmError, Interrupted
from hfllm.output import rank_prefix, setup_logging

# name -> "module:function". Only commands that work are listed; the modules import nothing heavy.
COMMANDS: dict[str, str] = {
    "preprocess": "hfllm.commands.preprocess:preprocess",
    "pretrain": "hfllm.commands.pretrain:pretrain",
    "finetune": "hfllm.commands.finetune:finetune",
    "evaluate": "hfllm.commands.evaluate:evaluate",
    "predict": "hfllm.commands.predict:predict",
    "inspect": "hfllm.commands.inspect:inspect",
    "attention": "hfllm.commands.attention:attention",
    "sweep": "hfllm.commands.sweep:sweep",
    "demo": "hfllm.commands.demo:demo",
}
GROUPS: dict[str, str] = {
    "config": "hfllm.commands.config_cmd:app",
}
GLOBAL_FLAGS = ("--debug", "--quiet")

app = typer.Typer(
    name="hfllm",
    help="From raw text to a trained, evaluated Transformer language model, driven by YAML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hfllm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs (accepted anywhere)."),
    quiet: bool = typer.Option(False, "--quiet", help="Silence logs and progress bars (accepted anywhere)."),
) -> None:
    """From raw text to a trained, evaluated Transformer language model, driven by YAML."""


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


for _name, _target in COMMANDS.items():
    app.command(_name)(_load(_target))
for _name, _target in GROUPS.items():
    app.add_typer(_load(_target), name=_name)


def _raise_interrupted(signum: int, _frame) -> None:
    name, code = ("SIGTERM", EXIT_SIGTERM) if signum == signal.SIGTERM else ("SIGINT", EXIT_SIGINT)
    raise Interrupted(f"interrupted by {name}", code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn hfllm's errors into one-line messages and documented exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut]
    quiet = "--quiet" in args[:cut]
    args = [a for i, a in enumerate(args) if i >= cut or a not in GLOBAL_FLAGS]
    setup_logging(quiet=quiet, debug=debug)
    # click turns Ctrl-C into "Aborted!" with exit 1; the contract says 130 (143 for SIGTERM).
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        app(args=args, prog_name="hfllm")
    except HfllmError as exc:
        if debug:
            raise
        sys.stderr.write(f"{rank_prefix()}hfllm: error: {exc}\n")
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected: say what, hide the traceback unless --debug
        if debug:
            raise
        sys.stderr.write(
            f"{rank_prefix()}hfllm: unexpected error: {type(exc).__name__}: {exc}\n  rerun with --debug for the traceback\n"
        )
        sys.exit(EXIT_UNEXPECTED)
