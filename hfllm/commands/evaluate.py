"""`hfllm evaluate`: score a saved model on a split of a data dir; write metrics, predictions, report, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfllm.commands.options import OutputDirOpt
from hfllm.commands.predict import Precision

ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", help="Model dir (a finetune or pretrain run's model/).")
]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Data dir written by `hfllm preprocess`.")]
SplitOpt = Annotated[str, typer.Option("--split", help="Split to evaluate.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Examples per forward pass.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace earlier results in the output dir.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Masked LM: seed of the evaluation masks.")]
EvalPrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="fp32 (default: the metrics are exact); auto/bf16 run faster where bf16 is native but a few "
        "predictions may change; int8: dynamic quantization on CPU.",
    ),
]


def evaluate(
    model: ModelOpt,
    data: DataOpt,
    split: SplitOpt = "test",
    output_dir: OutputDirOpt = None,
    batch_size: BatchOpt = 64,
    overwrite: OverwriteOpt = False,
    seed: SeedOpt = 42,
    precision: EvalPrecisionOpt = Precision.fp32,
) -> None:
    """Evaluate a saved model on a data dir split (default output: <run>/eval-<split> beside a run's model/)."""
    from hfllm.inference.evaluate import run_evaluate
    from hfllm.output import emit

    emit(
        run_evaluate(
            model,
            data,
            split,
            output_dir,
            batch_size=batch_size,
            overwrite=overwrite,
            seed=seed,
            precision=precision.value,
        )
    )
