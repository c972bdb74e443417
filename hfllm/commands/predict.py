"""`hfllm predict`: one JSON object per input line on stdout, in order, batched."""

from __future__ import annotations

from enum import Enum
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


class Precision(str, Enum):
    """The precision a model runs in (hfllm.precision.for_inference)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        metavar="auto|fp32|bf16|int8",
        help="auto: bf16 where the CPU (AMX / AVX512-BF16) or GPU runs it natively and the model is at "
        "least 256 wide, else fp32 (the log says which); int8: dynamic quantization, CPU only, may change "
        "some predictions.",
    ),
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
    precision: PrecisionOpt = Precision.auto,
) -> None:
    """Predict for each input line: label + score, entity spans with offsets, or fill-mask candidates."""
    from hfllm.threads import sleep_while_waiting

    sleep_while_waiting()  # before torch loads OpenMP (hfllm/threads.py says why)
    from hfllm.inference.predict import run_predict

    run_predict(
        model,
        input,
        batch_size=batch_size,
        all_scores=all_scores,
        top_k=top_k,
        strict=strict,
        max_length=max_length,
        precision=precision.value,
    )
