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
NumProcessesOpt = Annotated[
    int,
    typer.Option(
        "--num-processes", help="Data-parallel processes per machine (torchrun; gloo on CPU, NCCL on GPU)."
    ),
]
NumMachinesOpt = Annotated[int, typer.Option("--num-machines", help="Machines in a multi-node run.")]
MachineRankOpt = Annotated[int, typer.Option("--machine-rank", help="This machine's rank (0 .. machines-1).")]
MainIpOpt = Annotated[str | None, typer.Option("--main-process-ip", help="Address of machine rank 0.")]
MainPortOpt = Annotated[
    int | None, typer.Option("--main-process-port", help="Port on machine rank 0 (29500).")
]
