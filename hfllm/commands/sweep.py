"""`hfllm sweep`: search any config keys with Optuna, one ordinary run dir per trial, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfllm.commands.options import ConfigOpt, NumProcessesOpt, SetOpt

SpaceOpt = Annotated[
    Path,
    typer.Option(
        "--space",
        metavar="SPACE.yaml",
        help="Search-space YAML: parameters (dotted config keys), sampler, pruner.",
    ),
]
TrialsOpt = Annotated[
    int,
    typer.Option(
        "--trials", metavar="N", min=1, help="Trials the study should hold in all (a rerun continues to N)."
    ),
]
MetricOpt = Annotated[
    str | None,
    typer.Option(
        "--metric", metavar="KEY", help="Dotted key of the result to optimise (default validation.loss)."
    ),
]
DirectionOpt = Annotated[
    str | None,
    typer.Option(
        "--direction", metavar="min|max", help="min|max (default: min for losses and errors, else max)."
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URL",
        help="Optuna RDB URL to share the study between processes or machines "
        "(default sqlite:///SWEEP_DIR/study.db).",
    ),
]
SweepDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="The sweep dir (default: the config's output_dir + '-sweep').",
    ),
]
StudyOpt = Annotated[
    str | None,
    typer.Option("--study-name", metavar="NAME", help="Study name (default: the sweep dir's name)."),
]


def sweep(
    config: ConfigOpt,
    space: SpaceOpt,
    trials: TrialsOpt,
    set_: SetOpt = None,
    output_dir: SweepDirOpt = None,
    metric: MetricOpt = None,
    direction: DirectionOpt = None,
    storage: StorageOpt = None,
    study_name: StudyOpt = None,
    num_processes: NumProcessesOpt = None,
) -> None:
    """Tune a pretrain or finetune config with Optuna: each trial is an ordinary run dir under the sweep dir.

    The sweep dir (default: the config's output_dir + "-sweep") holds study.db, trials/trial-NNNN/,
    trials.jsonl, plots and best.yaml. Rerunning the same command continues the study.
    --num-processes N trains each trial on N data-parallel processes (e.g. the GPUs of this machine).
    """
    from hfllm.analysis.sweep import run_sweep
    from hfllm.errors import ConfigError
    from hfllm.output import emit

    if direction is not None and direction not in ("min", "max", "minimize", "maximize"):
        raise ConfigError(f"--direction {direction}: use min or max")
    emit(
        run_sweep(
            config, space, trials, set_, output_dir, metric, direction, storage, study_name, num_processes
        )
    )
