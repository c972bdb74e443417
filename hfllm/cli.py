"""The root `hfllm` command: a table of command names to their modules, and the error contract."""

from __future__ import annotations

import copy
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
    "generate": "hfllm.commands.generate:generate",
    "inspect": "hfllm.commands.inspect:inspect",
    "attention": "hfllm.commands.attention:attention",
    "sweep": "hfllm.commands.sweep:sweep",
    "export": "hfllm.commands.export:export",
    "demo": "hfllm.commands.demo:demo",
}
GROUPS: dict[str, str] = {
    "config": "hfllm.commands.config_cmd:app",
    "recipes": "hfllm.commands.recipes:app",
}
# Taken out of argv by main() wherever they stand, so every command accepts them; shown in every help.
GLOBAL_FLAGS = {
    "--debug": "Show tracebacks and debug logs (accepted anywhere).",
    "--quiet": "Silence logs and progress bars (accepted anywhere).",
}

app = typer.Typer(
    name="hfllm",
    help="From raw text to a trained, evaluated Transformer language model, driven by YAML.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
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
    debug: bool = typer.Option(False, "--debug", help=GLOBAL_FLAGS["--debug"]),
    quiet: bool = typer.Option(False, "--quiet", help=GLOBAL_FLAGS["--quiet"]),
) -> None:
    """From raw text to a trained, evaluated Transformer language model, driven by YAML."""


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


for _name, _target in COMMANDS.items():
    app.command(_name)(_load(_target))
for _name, _target in GROUPS.items():
    app.add_typer(_load(_target), name=_name)


def command():
    """Return the click command of the whole CLI, with the global flags listed in every command's help."""
    root = typer.main.get_command(app)
    flags = [copy.copy(p) for p in root.params if set(getattr(p, "opts", ())) & set(GLOBAL_FLAGS)]
    for flag in flags:
        flag.expose_value = False  # never parsed below the root: main() removes the flags from argv first
    _add_flags(root, flags)
    return root


def _add_flags(cmd, flags) -> None:
    for sub in getattr(cmd, "commands", {}).values():
        sub.params.extend(flags)
        _add_flags(sub, flags)


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
        command()(args=args, prog_name="hfllm")
    except (HfllmError, Interrupted) as exc:
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
