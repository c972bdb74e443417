"""`hfllm evaluate`: score a saved model on a split of a data dir; write metrics, predictions, report, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[
    Path,
    typer.Option("--model", "-m", metavar="DIR", help="Model dir (a finetune or pretrain run's model/)."),
]
DataOpt = Annotated[
    Path,
    typer.Option(
        "--data",
        "-d",
        metavar="DIR|FILE",
        help="Data dir written by `hfllm preprocess` (for a causal LM also a text file: perplexity).",
    ),
]
SplitOpt = Annotated[
    str, typer.Option("--split", metavar="NAME", help="Split to evaluate: train, validation or test.")
]
OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Where to write metrics.json, predictions.jsonl and the report (default: <run>/eval-<split> "
        "beside a run's model/, else ./eval-<model>-<split>).",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Examples per forward pass.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace earlier results in the output dir.")]
SeedOpt = Annotated[int, typer.Option("--seed", metavar="N", help="Masked LM: seed of the evaluation masks.")]
StrideOpt = Annotated[
    int | None,
    typer.Option(
        "--stride",
        min=1,
        metavar="N",
        help="Causal LM on a text file: window step in tokens (default: half the context).",
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
    stride: StrideOpt = None,
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
            stride=stride,
        )
    )
