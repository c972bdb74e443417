"""`hfllm evaluate`: score a saved model on a data dir split or raw labelled files; write metrics,
predictions, report, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfllm.commands.options import OptionalConfigOpt, set_option
from hfllm.commands.predict import Precision

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="DIR",
        help="Model dir (a finetune or pretrain run's model/); overrides model.",
    ),
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        metavar="DIR|FILE",
        help="A data dir written by `hfllm preprocess`, or raw labelled files (csv, tsv, jsonl, conll; "
        "repeatable), read with the model's labels and cleaning; for a causal LM also text files "
        "(perplexity). Overrides data.files.",
    ),
]
SplitOpt = Annotated[
    str | None,
    typer.Option("--split", metavar="NAME", help="Data dir: the split to score (train, validation or test)."),
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
BatchOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, metavar="N", help="Examples per forward pass.")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace earlier results in the output dir.")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", metavar="N", help="Masked LM: seed of the evaluation masks.")
]
SetOpt = set_option("data.label_column=section")
StrideOpt = Annotated[
    int | None,
    typer.Option(
        "--stride",
        min=1,
        metavar="N",
        help="Causal LM on a text file: window step in tokens (default: half the context).",
    ),
]
EvalPrecisionOpt = Annotated[
    Precision | None,
    typer.Option(
        "--precision",
        metavar="auto|fp32|bf16|int8",
        help="fp32 (default: the metrics are exact); auto/bf16 run faster where bf16 is native but a few "
        "predictions may change; int8: dynamic quantization on CPU. Overrides precision.",
    ),
]


def evaluate(
    model: ModelOpt = None,
    data: DataOpt = None,
    config: OptionalConfigOpt = None,
    set_: SetOpt = None,
    split: SplitOpt = None,
    output_dir: OutputDirOpt = None,
    batch_size: BatchOpt = None,
    overwrite: OverwriteOpt = False,
    seed: SeedOpt = None,
    stride: StrideOpt = None,
    precision: EvalPrecisionOpt = None,
) -> None:
    """Evaluate a saved model on a data dir split or raw labelled files (default output: <run>/eval-<split>
    beside a run's model/). Defaults < --config FILE < --set < flags."""
    from hfllm.threads import sleep_while_waiting

    sleep_while_waiting()  # before torch loads OpenMP (hfllm/threads.py says why)
    from hfllm.config import load_config
    from hfllm.config.schemas.evaluate import EvaluateConfig
    from hfllm.errors import ConfigError
    from hfllm.inference.evaluate import run_evaluate
    from hfllm.output import emit

    if model is None and config is None and not any(x.startswith("model=") for x in set_ or []):
        raise ConfigError(
            "missing option --model DIR: the model to evaluate", "or set `model:` in --config FILE"
        )
    flags = {
        "model": model,
        "data.files": data or None,
        "split": split,
        "output_dir": str(output_dir) if output_dir else None,
        "batch_size": batch_size,
        "seed": seed,
        "stride": stride,
        "precision": precision.value if precision else None,
    }
    cfg = load_config(EvaluateConfig, config, set_, flags=flags)
    emit(
        run_evaluate(
            Path(cfg.model),
            [Path(p) for p in cfg.data.files],
            cfg.split,
            Path(cfg.output_dir) if cfg.output_dir else None,
            batch_size=cfg.batch_size,
            overwrite=overwrite,
            seed=cfg.seed,
            stride=cfg.stride,
            read=cfg.data,
            precision=cfg.precision,
        )
    )
