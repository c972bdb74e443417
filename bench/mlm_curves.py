"""Validation-loss curves of `hfllm pretrain` variants on the demo's data; prints one JSON object.

Each variant is the demo's pretrain config (configs/demo/pretrain.yaml: a 4-layer, 128-wide BERT,
batch 16 x 128 tokens) plus a few `--set` overrides, evaluated every `--eval-steps` on the same
fixed validation masks. The curves chose hfllm's from-scratch defaults (docs/speed.md); `--plot`
draws them against tokens seen, with the unigram baseline.

    .venv/bin/python bench/mlm_curves.py --data-dir runs/demo/data [--steps 200] [--only NAME,...] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "hfllm" / "demo" / "configs" / "pretrain.yaml"

# Named variants: --set overrides over the demo config. "before" is the demo as it was before
# issue 15 (dropout 0.1, zero output bias); the others change one thing from "defaults".
DROPOUT_ON = {"model.config.hidden_dropout_prob": 0.1, "model.config.attention_probs_dropout_prob": 0.1}
VARIANTS: dict[str, dict] = {
    "before": {**DROPOUT_ON, "model.output_bias_init": "zero", "training.learning_rate": 1e-3},
    "defaults": {},
    "dropout_0.1": DROPOUT_ON,
    "bias_zero": {"model.output_bias_init": "zero"},
    "lr_5e-4": {"training.learning_rate": 5e-4},
    "lr_1e-3": {"training.learning_rate": 1e-3},
    "lr_2e-3": {"training.learning_rate": 2e-3},
    "lr_4e-3": {"training.learning_rate": 4e-3},
    "warmup_0.02": {"training.warmup_steps": 0.02},
    "warmup_0.15": {"training.warmup_steps": 0.15},
    "beta2_0.98": {"training.adam_beta2": 0.98},
    "wd_0.1": {"training.weight_decay": 0.1},
    "wd_0": {"training.weight_decay": 0.0},
}


def run_variant(name: str, sets: dict, data: Path, out: Path, steps: int, eval_steps: int) -> dict:
    """Return one variant's eval history (tokens seen, loss, perplexity) and throughput."""
    settings = {
        "data_dir": str(data),
        "training.max_steps": steps,
        "training.eval_steps": eval_steps,
        "training.save_strategy": "no",
        "training.load_best_model_at_end": False,
        "training.report_to": "none",
        "training.disable_tqdm": True,
        **sets,
    }
    args = [a for k, v in settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-m", "hfllm", "pretrain", "--config", str(CONFIG), *args]
    cmd += ["--output-dir", str(out), "--overwrite", "--resume", "never", "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    tokens_per_step = metrics["global_batch_size"] * metrics["max_length"]
    return {
        "name": name,
        "sets": sets,
        "curve": [
            {"step": e["step"], "tokens": e["step"] * tokens_per_step, "eval_loss": e["eval_loss"]}
            for e in metrics["eval_history"]
        ],
        "final_perplexity": metrics["perplexity"],
        "unigram_perplexity": metrics["unigram_perplexity"],
        "tokens_per_second": metrics["tokens_per_second"],
        "train_runtime_s": metrics["train_runtime_s"],
    }


def plot(results: list[dict], path: Path) -> None:
    """Draw validation loss against tokens seen for every variant, with the unigram baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        points = [p for p in r["curve"] if p["step"] > 0]
        ax.plot([p["tokens"] for p in points], [p["eval_loss"] for p in points], marker=".", label=r["name"])
    ax.axhline(math.log(results[0]["unigram_perplexity"]), color="grey", linestyle="--", label="unigram")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("validation loss (per masked token)")
    ax.set_title("hfllm pretrain on the demo data: variants of the defaults")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-steps", type=int, default=25)
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--plot", type=Path)
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = opts.only.split(",") if opts.only else list(VARIANTS)
    results = []
    with tempfile.TemporaryDirectory(prefix="hfllm-curves-") as tmp:
        for name in names:
            result = run_variant(
                name, VARIANTS[name], opts.data_dir, Path(tmp) / name, opts.steps, opts.eval_steps
            )
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    if opts.plot:
        plot(results, opts.plot)
    print(json.dumps({"steps": opts.steps, "variants": results}, indent=1))


if __name__ == "__main__":
    main()
