"""`hfllm demo`: preprocess, pretrain, fine-tune twice and evaluate on the bundled samples, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DemoDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="Where the demo writes its runs (runs/demo, runs/demo-generative).",
    ),
]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="A tiny version of the same pipeline (under a minute).")
]


GenerativeOpt = Annotated[
    bool,
    typer.Option(
        "--generative",
        help="The generative demo instead: a small GPT-2 pretrained on Python's standard library completes code.",
    ),
]


def demo(output_dir: DemoDirOpt = None, quick: QuickOpt = False, generative: GenerativeOpt = False) -> None:
    """Run the whole pipeline on bundled sample data, offline, and summarise what happened."""
    from hfllm.output import emit

    if generative:
        from hfllm.demo.generative import print_generative_summary, run_generative_demo

        result = run_generative_demo(output_dir or Path("runs/demo-generative"), quick=quick)
        print_generative_summary(result)
    else:
        from hfllm.demo import print_summary, run_demo

        result = run_demo(output_dir or Path("runs/demo"), quick=quick)
        print_summary(result)
    emit(result)
