"""`hfllm pretrain`: masked-language-model pretraining from scratch or from a checkpoint."""

from __future__ import annotations

from hfllm.commands.options import (
    ConfigOpt,
    MachineRankOpt,
    MainIpOpt,
    MainPortOpt,
    NumMachinesOpt,
    NumProcessesOpt,
    OutputDirOpt,
    OverwriteOpt,
    ResumeForceOpt,
    ResumeOpt,
    SetOpt,
    run_training_command,
)


def pretrain(
    config: ConfigOpt,
    set_: SetOpt = None,
    output_dir: OutputDirOpt = None,
    resume: ResumeOpt = "auto",
    overwrite: OverwriteOpt = False,
    resume_force: ResumeForceOpt = False,
    num_processes: NumProcessesOpt = None,
    num_machines: NumMachinesOpt = 1,
    machine_rank: MachineRankOpt = 0,
    main_process_ip: MainIpOpt = None,
    main_process_port: MainPortOpt = None,
) -> None:
    """Pretrain a masked language model on a data dir written by `hfllm preprocess`."""
    run_training_command(
        "hfllm.config.schemas.pretrain:PretrainConfig",
        "hfllm.training.pretrain:run_pretrain",
        config,
        set_,
        output_dir,
        resume,
        overwrite,
        resume_force,
        num_processes=num_processes,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
    )
