"""`hfllm recipes`: list the ready configs shipped with hfllm; `hfllm recipes copy NAME [DEST]` writes one out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="List the ready configs shipped with hfllm (one per line), or copy one to edit and run.",
    invoke_without_command=True,
)


def _names(incomplete: str) -> list[str]:
    from hfllm.config.shipped import recipes

    return [r.name for r in recipes() if r.name.startswith(incomplete)]


@app.callback()
def recipes(ctx: typer.Context) -> None:
    """List the ready configs shipped with hfllm: name and what it does, one per line."""
    if ctx.invoked_subcommand is not None:
        return
    from hfllm.config.shipped import recipes as shipped

    found = shipped()
    width = max(len(r.name) for r in found)
    for recipe in found:
        sys.stdout.write(f"{recipe.name:<{width}}  {recipe.summary}\n")


@app.command("copy")
def copy(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="A name from `hfllm recipes`, e.g. pretrain/tiny.", autocompletion=_names
        ),
    ],
    dest: Annotated[
        str | None,
        typer.Argument(
            metavar="[DEST]",
            help="File, or dir ending in /, to write (default: NAME with / as -, e.g. pretrain-tiny.yaml).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a shipped config to DEST, ready to run from here: its first line is the command."""
    from hfllm.config.shipped import copy as copy_recipe
    from hfllm.output import log

    written = copy_recipe(name, dest, force)
    for path in written:
        log.info("wrote %s", path)
    log.info("run it: %s", _first_line(written[0]))


def _first_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
