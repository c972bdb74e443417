"""`hfllm attention`: a model's attention weights for a text (JSON, heat maps, a per-token table), or
the request's worked example of self-attention computed correctly (--explain)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hfllm.commands.options import OutputDirOpt

TextArg = Annotated[str | None, typer.Argument(metavar="TEXT", help="The text to look at (quote it).")]
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m", metavar="DIR", help="Model dir (a pretrain or finetune run's model/)."),
]
LayerOpt = Annotated[
    int, typer.Option("--layer", metavar="L", help="Layer of the heat maps and table (-1: the last).")
]
HeadOpt = Annotated[
    int | None,
    typer.Option("--head", metavar="H", help="Head to enlarge and tabulate (default: the mean over heads)."),
]
TopOpt = Annotated[int, typer.Option("--top", metavar="N", min=1, help="Tokens listed per token.")]
ExplainOpt = Annotated[
    bool,
    typer.Option(
        "--explain", help="Compute the request's section 4.3 example step by step (no model needed)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace earlier files in the output dir.")]


def attention(
    text: TextArg = None,
    model: ModelOpt = None,
    layer: LayerOpt = -1,
    head: HeadOpt = None,
    top: TopOpt = 3,
    output_dir: OutputDirOpt = None,
    explain: ExplainOpt = False,
    as_json: JsonOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Show what self-attention does: weights of every layer and head for a text, as JSON and heat maps.

    Writes attention.json (tokens, one matrix per layer and head) and PNG heat maps to --output-dir
    (default runs/attention); prints, for each token, the tokens it attends to most.
    """
    from hfllm.errors import ConfigError
    from hfllm.output import emit

    if explain:
        from hfllm.analysis.explain import explain as compute
        from hfllm.analysis.explain import render

        result = compute()
    else:
        if model is None or text is None:
            raise ConfigError('give --model DIR and the text: hfllm attention --model DIR "some text"')
        from hfllm.analysis.attention import render, run_attention

        result = run_attention(model, text, layer, head, output_dir, top, overwrite)
    if as_json:
        emit(result)
    else:
        sys.stdout.write(render(result))
