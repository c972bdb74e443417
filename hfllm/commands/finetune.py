"""`hfllm finetune`: supervised fine-tuning for sequence or token classification."""

from __future__ import annotations

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
from hfllm.commands.pretrain import NumProcessesOpt, OverwriteOpt, ResumeOpt


def finetune(
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
    """Fine-tune a local model for sequence classification (single/multi-label, regression) or token classification."""
    from hfllm.config import load_config
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.output import emit

    cfg = load_config(
        FinetuneConfig, config, set_, flags={"output_dir": str(output_dir) if output_dir else None}
    )
    from hfllm.launch import launch_if_asked

    code = launch_if_asked(num_processes, num_machines, machine_rank, main_process_ip, main_process_port)
    if code is not None:
        raise typer.Exit(code)
    from hfllm.finetuning.run import run_finetune
    from hfllm.training.run import is_main_process

    result = run_finetune(cfg, resume=resume, overwrite=overwrite)
    if is_main_process():
        emit(result)
