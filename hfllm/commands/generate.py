"""`hfllm generate`: complete each prompt with a causal LM; one JSON object per input line on stdout, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", metavar="DIR", help="Model dir of a causal LM (a run's model/).")
]
InputOpt = Annotated[
    str | None,
    typer.Option(
        "--input",
        "-i",
        metavar="FILE|-",
        help="File of prompts (text, or JSON lines with `prompt` or `messages`); - for stdin.",
    ),
]
PromptOpt = Annotated[
    str | None, typer.Option("--prompt", "-p", metavar="TEXT", help="One prompt, instead of --input.")
]
MaxNewOpt = Annotated[
    int | None,
    typer.Option(
        "--max-new-tokens",
        metavar="N",
        min=1,
        help="Tokens to generate at most, per prompt (default 64, or half the context).",
    ),
]
SampleOpt = Annotated[
    bool, typer.Option("--sample", help="Sample (with the settings below) instead of greedy decoding.")
]
TempOpt = Annotated[
    float | None,
    typer.Option("--temperature", metavar="T", min=1e-4, help="Sampling temperature (default 1.0)."),
]
TopPOpt = Annotated[
    float | None,
    typer.Option(
        "--top-p", metavar="P", min=1e-4, max=1.0, help="Nucleus sampling: keep this probability mass."
    ),
]
TopKOpt = Annotated[
    int | None,
    typer.Option("--top-k", metavar="K", min=0, help="Sample among the k likeliest tokens (0: all)."),
]
RepOpt = Annotated[
    float,
    typer.Option(
        "--repetition-penalty", metavar="R", min=1e-4, help="Penalty on tokens already present (1.0: none)."
    ),
]
StopOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--stop", metavar="TEXT", help="Stop a completion at this string (repeatable); not included."
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", metavar="N", help="Sampling seed; a line's completion depends on seed and line number."
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", metavar="N", min=1, help="Prompts per batch.")]
ChatOpt = Annotated[
    str,
    typer.Option(
        "--chat",
        metavar="auto|always|never",
        help="auto: wrap plain prompts in the chat template when the model has one; always; never.",
    ),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first bad or too-long line (exit 3).")]
StreamOpt = Annotated[
    bool, typer.Option("--stream", help="Print one prompt's completion as it is generated (text, not JSON).")
]


def generate(
    model: ModelOpt,
    input: InputOpt = None,
    prompt: PromptOpt = None,
    max_new_tokens: MaxNewOpt = None,
    sample: SampleOpt = False,
    temperature: TempOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    repetition_penalty: RepOpt = 1.0,
    stop: StopOpt = None,
    seed: SeedOpt = 42,
    batch_size: BatchOpt = 16,
    chat: ChatOpt = "auto",
    strict: StrictOpt = False,
    stream: StreamOpt = False,
) -> None:
    """Generate a completion for each prompt: {"line", "completion", "new_tokens", "finish_reason"} per line."""
    from hfllm.errors import ConfigError
    from hfllm.inference.generate import Settings, run_generate

    if chat not in ("auto", "always", "never"):
        raise ConfigError(f"--chat {chat!r}: use auto, always or never")
    if prompt is not None and input is not None:
        raise ConfigError("give --prompt or --input, not both")
    given = [
        name
        for name, v in (("--temperature", temperature), ("--top-p", top_p), ("--top-k", top_k))
        if v is not None
    ]
    if given and not sample:
        raise ConfigError(
            f"{', '.join(given)} only applies to sampling", "add --sample (greedy decoding is the default)"
        )
    settings = Settings(
        max_new_tokens=max_new_tokens,
        sample=sample,
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        top_k=top_k or 0,
        repetition_penalty=repetition_penalty,
        stop=[s for s in stop or [] if s],
        seed=seed,
        chat=chat,
    )
    run_generate(
        model, input or "-", settings, batch_size=batch_size, strict=strict, prompt=prompt, stream=stream
    )
