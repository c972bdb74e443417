"""`hfllm predict`: one JSON object per input line on stdout, in order, batched."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[
    Path,
    typer.Option("--model", "-m", metavar="DIR", help="Model dir (a finetune or pretrain run's model/)."),
]
InputOpt = Annotated[
    str,
    typer.Option(
        "--input",
        "-i",
        metavar="FILE|-",
        help="File of lines (text, or JSON with a `text` field); - for stdin.",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, metavar="N", help="Lines per forward pass.")]
AllScoresOpt = Annotated[
    bool, typer.Option("--all-scores", help="Classification: add the score of every label.")
]
TopKOpt = Annotated[
    int, typer.Option("--top-k", min=1, metavar="K", help="Masked LM: candidates per [MASK].")
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Stop at the first bad line (exit 3) instead of skipping it.")
]
MaxLengthOpt = Annotated[
    int | None,
    typer.Option("--max-length", min=8, metavar="N", help="Truncate inputs (default: the model's limit)."),
]


def predict(
    model: ModelOpt,
    input: InputOpt = "-",
    batch_size: BatchOpt = 64,
    all_scores: AllScoresOpt = False,
    top_k: TopKOpt = 5,
    strict: StrictOpt = False,
    max_length: MaxLengthOpt = None,
) -> None:
    """Predict for each input line: label + score, entity spans with offsets, or fill-mask candidates."""
    from hfllm.inference.predict import run_predict

    run_predict(
        model,
        input,
        batch_size=batch_size,
        all_scores=all_scores,
        top_k=top_k,
        strict=strict,
        max_length=max_length,
    )
