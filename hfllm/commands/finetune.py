"""`hfllm finetune`: supervised fine-tuning for sequence or token classification."""

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


def finetune(
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
    """Fine-tune a local model for sequence classification (single/multi-label, regression) or token classification."""
    run_training_command(
        "hfllm.config.schemas.finetune:FinetuneConfig",
        "hfllm.finetuning.run:run_finetune",
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
