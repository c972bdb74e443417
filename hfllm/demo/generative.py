"""`hfllm demo --generative`: a small GPT-2 pretrained on Python's own standard library, then asked to
complete code. Offline, on real code nobody here wrote; each stage is idempotent like the main demo."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hfllm.config import load_config
from hfllm.config.shipped import CONFIGS_DIR
from hfllm.output import log

CONFIGS = CONFIGS_DIR / "demo"
PROMPTS = [
    "def fibonacci(n):",
    "import os\n\n\ndef read_lines(path):",
    "class Stack:\n    def __init__(self):",
]
# --quick: the same stages on a sliver of the data and a few steps, for tests.
QUICK = {
    "preprocess": ["tokenizer.train.vocab_size=600", "packing.max_length=64"],
    "pretrain": [
        "training.max_steps=8",
        "training.eval_steps=4",
        "training.save_steps=4",
        "training.logging_steps=2",
    ],
}
QUICK_FILES = 40  # standard library files read by --quick
REPETITION_PENALTY = 1.2


def run_generative_demo(output_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Return the demo's JSON result after preprocessing the stdlib, pretraining and completing the prompts."""
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.config.schemas.pretrain import PretrainConfig
    from hfllm.data.pipeline import run_preprocess
    from hfllm.inference.generate import Settings, complete
    from hfllm.train.runner import run

    started, out = time.time(), Path(output_dir)
    timings: dict[str, float] = {}
    sets = {stage: QUICK[stage] if quick else [] for stage in QUICK}
    flags = {"output_dir": str(out / "data")}
    if quick:  # a few standard library files, each blank-line separated block a document
        flags.update({"data.files": [str(p) for p in _some_stdlib_files(QUICK_FILES)], "data.format": "txt"})
        flags["data.txt_mode"] = "paragraph"
    t0 = time.time()
    log.info("demo: preprocess the Python standard library")
    data = run_preprocess(
        load_config(PreprocessConfig, CONFIGS / "preprocess-code.yaml", sets["preprocess"], flags)
    )
    timings["preprocess"] = round(time.time() - t0, 1)
    t0 = time.time()
    log.info("demo: pretrain a small GPT-2 on it")
    flags = {"data_dir": str(out / "data"), "output_dir": str(out / "pretrain")}
    pretrain = run(load_config(PretrainConfig, CONFIGS / "pretrain-code.yaml", sets["pretrain"], flags))
    timings["pretrain"] = round(time.time() - t0, 1)
    t0 = time.time()
    # Greedy decoding of so small a model loops on one line; a mild penalty on repeated tokens reads as code.
    settings = Settings(
        max_new_tokens=16 if quick else 48, stop=["\n\n\n"], repetition_penalty=REPETITION_PENALTY
    )
    completions = complete(Path(pretrain["model_dir"]), PROMPTS, settings)
    timings["generate"] = round(time.time() - t0, 1)
    validation = pretrain["metrics"]["validation"]
    return {
        "status": "ok",
        "output_dir": str(out),
        "data_dir": data["output_dir"],
        "model_dir": pretrain["model_dir"],
        "perplexity": validation.get("perplexity"),
        "unigram_perplexity": validation.get("unigram_perplexity"),
        "completions": [
            {"prompt": p, "completion": c["completion"]} for p, c in zip(PROMPTS, completions, strict=True)
        ],
        "timings_s": timings,
        "seconds": round(time.time() - started, 1),
    }


def _some_stdlib_files(n: int) -> list[Path]:
    from hfllm.data.code import stdlib_files

    return stdlib_files()[:n]


def print_generative_summary(result: dict[str, Any]) -> None:
    """Write the few lines a person reads at the end of the generative demo (stderr)."""
    lines = [
        f"hfllm generative demo finished in {result['seconds']:.0f} s; everything is under {result['output_dir']}/",
        f"  a small GPT-2 pretrained on Python's standard library: validation perplexity "
        f"{result['perplexity']:,.1f} (unigram baseline {result['unigram_perplexity']:,.1f})",
    ]
    for item in result["completions"]:
        lines.append("  completion of " + repr(item["prompt"]) + ":")
        lines += ["    | " + line for line in (item["prompt"] + item["completion"]).splitlines()]
    lines.append(
        f"  next: hfllm generate --model {result['model_dir']} --prompt 'def quicksort(items):' "
        f"--repetition-penalty {REPETITION_PENALTY}"
    )
    sys.stderr.write("\n" + "\n".join(lines) + "\n")
