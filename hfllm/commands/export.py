"""`hfllm export --merge`: fold a LoRA adapter into its base model and write a full model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MergeOpt = Annotated[
    Path,
    typer.Option(
        "--merge",
        metavar="RUN_OR_MODEL_DIR",
        help="A LoRA run's dir or its model/ (adapter_config.json, adapter weights, tokenizer).",
    ),
]
OutputDirOpt = Annotated[
    Path,
    typer.Option(
        "--output-dir", "-o", metavar="DIR", help="Where to write the full model (new, empty, or an export)."
    ),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export in DIR.")]


def export(merge: MergeOpt, output_dir: OutputDirOpt, overwrite: OverwriteOpt = False) -> None:
    """Merge a LoRA adapter into its base model: a full model that stock AutoModelFor* loads."""
    from hfllm.models.merge import merge_adapter
    from hfllm.output import emit

    emit(merge_adapter(merge, output_dir, overwrite))
