"""`hfllm inspect`: size a run before training: parameters, FLOPs, memory, speed, and whether it fits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hfllm.commands.options import SetOpt

TargetArg = Annotated[
    Path,
    typer.Argument(
        metavar="CONFIG|MODEL_DIR", help="A pretrain/finetune config file, or a model dir (its config.json)."
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="cpu|h100|h200|a100|l4|...",
        help="cpu (this machine: a measured matmul peak, its free memory) or a GPU from the table: "
        "h200, h100, h100-pcie, a100, a100-40gb, l40s, l4, a10g, rtx4090, v100, t4, mi300x.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the report.")]
ProcessesOpt = Annotated[
    int, typer.Option("--num-processes", metavar="N", min=1, help="Data-parallel processes (ranks).")
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", metavar="N", min=1, help="Per-device train batch (overrides the config)."),
]
LengthOpt = Annotated[
    int | None,
    typer.Option("--max-length", metavar="N", min=1, help="Tokens per sequence (overrides the config/data)."),
]
EfficiencyOpt = Annotated[
    float | None,
    typer.Option(
        "--efficiency",
        metavar="SHARE",
        min=0.001,
        max=1.0,
        help="Share of the device's peak matmul rate and memory bandwidth the ops reach (cpu 0.5, GPUs 0.6).",
    ),
]
MemoryOpt = Annotated[
    float | None,
    typer.Option(
        "--memory-gib", metavar="GIB", min=0.001, help="Check the fit against this much memory instead."
    ),
]


def inspect(
    target: TargetArg,
    device: DeviceOpt = "cpu",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    num_processes: ProcessesOpt = 1,
    batch_size: BatchOpt = None,
    max_length: LengthOpt = None,
    efficiency: EfficiencyOpt = None,
    memory_gib: MemoryOpt = None,
) -> None:
    """Size a training run before launching it: parameters, FLOPs/token, memory, tokens/s, time, fit.

    Loads no weights: it reads the config, the data dir's manifest and the model's config.json.
    """
    from hfllm.analysis.inspect_report import render, run_inspect
    from hfllm.output import emit

    report = run_inspect(target, device, set_, num_processes, batch_size, max_length, efficiency, memory_gib)
    if as_json:
        emit(report)
    else:
        sys.stdout.write(render(report))
