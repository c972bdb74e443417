"""Options shared by the commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", metavar="FILE", help="YAML config file.", dir_okay=False)
]
OptionalConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", metavar="FILE", help="YAML config file.", dir_okay=False)
]


def set_option(example: str) -> Any:
    """Return the type of a `--set KEY=VALUE` option whose help shows `example` (a key of that command)."""
    return Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help=f"Override a config key (dotted path, YAML value; repeatable), e.g. --set {example}.",
        ),
    ]


SetOpt = set_option("training.learning_rate=3e-4")
OutputDirOpt = Annotated[
    Path | None,
    typer.Option("--output-dir", "-o", metavar="DIR", help="Where to write (overrides output_dir)."),
]
NumProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--num-processes", min=1, metavar="N", help="Data-parallel processes on this machine (torchrun)."
    ),
]
ResumeOpt = Annotated[
    str,
    typer.Option(
        "--resume",
        metavar="auto|never|PATH",
        help="auto: continue from the newest complete checkpoint (a finished run does nothing); "
        "never: refuse a non-empty run dir; or a checkpoint dir to resume from.",
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Remove this run's earlier outputs and start again.")
]
ResumeForceOpt = Annotated[
    bool,
    typer.Option(
        "--resume-force",
        help="Resume even though the tokenizer, model size, max_length, world size or a checked config key "
        "differs from the checkpoints' (a warning instead of a refusal).",
    ),
]
NumMachinesOpt = Annotated[
    int, typer.Option("--num-machines", metavar="N", help="Machines in a multi-node run.")
]
MachineRankOpt = Annotated[
    int, typer.Option("--machine-rank", metavar="RANK", help="This machine's rank (0 .. machines-1).")
]
MainIpOpt = Annotated[
    str | None, typer.Option("--main-process-ip", metavar="ADDRESS", help="Address of machine rank 0.")
]
MainPortOpt = Annotated[
    int | None,
    typer.Option("--main-process-port", metavar="PORT", help="Port on machine rank 0 (29500)."),
]


def training_command(name: str, help_text: str):
    """Return the Typer function of a training command (pretrain, finetune): one set of options,
    one code path (`hfllm.train.runner.run_command`), so the commands cannot drift apart."""

    def command(
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
        from hfllm.train.runner import run_command

        run_command(
            name,
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

    command.__name__ = command.__qualname__ = name
    command.__doc__ = help_text
    return command
