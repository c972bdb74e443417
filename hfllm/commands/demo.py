"""`hfllm demo`: preprocess, pretrain, fine-tune twice and evaluate on the bundled samples, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DemoDirOpt = Annotated[
    Path, typer.Option("--output-dir", "-o", metavar="DIR", help="Where the demo writes its runs.")
]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="A tiny version of the same pipeline (under a minute).")
]


def demo(output_dir: DemoDirOpt = Path("runs/demo"), quick: QuickOpt = False) -> None:
    """Run the whole pipeline on bundled sample data, offline, and summarise what happened."""
    from hfllm.demo import print_summary, run_demo
    from hfllm.output import emit

    result = run_demo(output_dir, quick=quick)
    print_summary(result)
    emit(result)
