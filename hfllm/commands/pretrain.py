"""`hfllm pretrain`: masked-language-model pretraining from scratch or from a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from hfllm.commands.options import (
    ConfigOpt,
    MachineRankOpt,
    MainIpOpt,
    MainPortOpt,
    NumMachinesOpt,
    OutputDirOpt,
    SetOpt,
)

ResumeOpt = Annotated[
    str,
    typer.Option(
        "--resume",
        help="auto: continue from the newest complete checkpoint (a finished run does nothing); "
        "never: refuse a non-empty run dir; or a checkpoint dir to resume from.",
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Remove this run's earlier outputs and start again.")
]
NumProcessesOpt = Annotated[
    int | None,
    typer.Option("--num-processes", min=1, help="Data-parallel processes on this machine (torchrun)."),
]


def pretrain(
    config: ConfigOpt,
    set_: SetOpt = None,
    output_dir: OutputDirOpt = None,
    resume: ResumeOpt = "auto",
    overwrite: OverwriteOpt = False,
    num_processes: NumProcessesOpt = None,
    num_machines: NumMachinesOpt = 1,
    machine_rank: MachineRankOpt = 0,
    main_process_ip: MainIpOpt = None,
    main_process_port: MainPortOpt = None,
) -> None:
    """Pretrain a masked language model on a data dir written by `hfllm preprocess`."""
    from hfllm.config import load_config
    from hfllm.config.schemas.pretrain import PretrainConfig
    from hfllm.output import emit

    cfg = load_config(
        PretrainConfig, config, set_, flags={"output_dir": str(output_dir) if output_dir else None}
    )
    from hfllm.launch import launch_if_asked

    code = launch_if_asked(num_processes, num_machines, machine_rank, main_process_ip, main_process_port)
    if code is not None:
        raise typer.Exit(code)
    from hfllm.training.pretrain import run_pretrain

    result = run_pretrain(cfg, resume=resume, overwrite=overwrite)
    from hfllm.training.run import is_main_process

    if is_main_process():
        emit(result)
