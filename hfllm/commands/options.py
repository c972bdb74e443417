"""Options shared by the commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML config file.", dir_okay=False)]
OptionalConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", dir_okay=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key, e.g. --set training.learning_rate=3e-4 (repeatable)."),
]
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output-dir", "-o", help="Where to write (overrides output_dir).")
]
