"""`hfllm preprocess`: clean a corpus, build the vocabulary, tokenize, pack and split it into a data dir."""

from __future__ import annotations

from typing import Annotated

import typer

from hfllm.commands.options import OptionalConfigOpt, OutputDirOpt, set_option

SetOpt = set_option("packing.max_length=256")

ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force", help="Rebuild even when cached; write into an output dir that holds other files."
    ),
]


StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Refuse suspicious data (rare classes, empty splits) instead of warning."),
]


def preprocess(
    config: OptionalConfigOpt = None,
    set_: SetOpt = None,
    output_dir: OutputDirOpt = None,
    force: ForceOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Clean, split, build the tokenizer, tokenize and pack: raw text -> a data dir (prints one JSON line)."""
    from hfllm.config import load_config
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.pipeline import run_preprocess
    from hfllm.output import emit

    cfg = load_config(
        PreprocessConfig,
        config,
        set_,
        flags={"output_dir": str(output_dir) if output_dir else None, "strict": True if strict else None},
    )
    emit(run_preprocess(cfg, force=force))
