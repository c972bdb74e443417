"""`hfllm config`: show the resolved config, validate files, write a starter config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hfllm.commands.options import ConfigOpt, set_option
from hfllm.errors import ConfigError
from hfllm.fsutil import atomic_write_text

app = typer.Typer(help="Show, validate and create configs.", no_args_is_help=True)

STARTERS = Path(__file__).resolve().parent.parent / "config" / "starters"
STARTER_NAMES = "|".join(sorted(p.stem for p in STARTERS.glob("*.yaml")))  # finetune|finetune-instruct|...
KINDS = "finetune|preprocess|pretrain"  # the commands a config can be for (its `kind:`)
SetOpt = set_option("output_dir=runs/x")
KindOpt = Annotated[
    str | None,
    typer.Option("--kind", metavar=KINDS, help="The command the config is for, if it has no `kind:` key."),
]


@app.command("show")
def show(config: ConfigOpt, set_: SetOpt = None, kind: KindOpt = None) -> None:
    """Print the resolved config (defaults < file < --set) as YAML."""
    from hfllm.config import load_any, to_yaml

    sys.stdout.write(to_yaml(load_any(config, set_, kind)))


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Config files to check.")],
    kind: KindOpt = None,
) -> None:
    """Check config files; exit 2 at the first one that is wrong."""
    from hfllm.config import load_any
    from hfllm.output import log

    for path in files:
        load_any(path, kind=kind)
        log.info("%s: ok", path)


@app.command("init")
def init(
    kind: Annotated[
        str,
        typer.Argument(
            metavar=STARTER_NAMES,
            help=f"The starter config to write: {STARTER_NAMES.replace('|', ', ')}.",
            autocompletion=lambda: STARTER_NAMES.split("|"),
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here instead of stdout.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config for a command (from the package, no network)."""
    starter = STARTERS / f"{kind}.yaml"
    if not starter.exists():
        known = sorted(p.stem for p in STARTERS.glob("*.yaml"))
        raise ConfigError(f"no starter config for {kind!r}; there are: {', '.join(known)}")
    text = starter.read_text(encoding="utf-8")
    if output is None:
        sys.stdout.write(text)
        return
    if output.exists() and not force:
        raise ConfigError(f"{output} already exists; pass --force to overwrite it")
    from hfllm.output import log

    atomic_write_text(output, text)
    log.info("wrote %s", output)
