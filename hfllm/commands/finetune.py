"""`hfllm finetune`: supervised fine-tuning for sequence or token classification."""

from __future__ import annotations

import typer

from hfllm.commands.options import ConfigOpt, OutputDirOpt, SetOpt
from hfllm.commands.pretrain import NumProcessesOpt, OverwriteOpt, ResumeOpt


def finetune(
    config: ConfigOpt,
    set_: SetOpt = None,
    output_dir: OutputDirOpt = None,
    resume: ResumeOpt = "auto",
    overwrite: OverwriteOpt = False,
    num_processes: NumProcessesOpt = None,
) -> None:
    """Fine-tune a local model for sequence classification (single/multi-label, regression) or token classification."""
    from hfllm.config import load_config
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.output import emit

    cfg = load_config(
        FinetuneConfig, config, set_, flags={"output_dir": str(output_dir) if output_dir else None}
    )
    if num_processes and num_processes > 1:
        from hfllm.training.launch import relaunch

        raise typer.Exit(relaunch(num_processes))
    from hfllm.finetuning.run import run_finetune
    from hfllm.training.run import is_main_process

    result = run_finetune(cfg, resume=resume, overwrite=overwrite)
    if is_main_process():
        emit(result)
