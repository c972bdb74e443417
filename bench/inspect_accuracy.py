"""How close `hfllm inspect` comes to real pretraining runs on this CPU: peak memory and tokens/s.

For each config (the tiny and the demo pretrain configs, on the demo's data dir), it asks
`hfllm inspect --json` for its prediction, runs the real `hfllm pretrain` with bench/rss_probe on
PYTHONPATH (which records the resident set when Trainer.train starts and its peak until it ends), asks
inspect again, and prints one JSON object with the figures and the ratios. Acceptance (issue 17):
memory within 25 %, tokens/s within 2x.

What is compared:
- memory: the predicted peak minus the weights (they are resident before training starts) against the
  measured peak RSS minus the RSS at the start of Trainer.train;
- speed: the predicted training tokens per second with the evaluations made inside Trainer.train against
  the run's `tokens_per_second` (tokens seen / train_runtime, whose clock includes those evaluations but
  not hfllm's final one, which inspect's time to the end of the run counts).

    python bench/inspect_accuracy.py [--data-dir runs/demo/data] [--max-steps N] [--only tiny|demo]
                                     [--set KEY=VALUE]...   # e.g. model.config.hidden_size=256

The data dir is built first when missing (`hfllm preprocess --config configs/demo/preprocess.yaml`).
Timings depend on the machine and on what else runs on it: both predictions are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {"tiny": "configs/pretrain/tiny.yaml", "demo": "configs/demo/pretrain.yaml"}


def hfllm(*args: str, env: dict[str, str] | None = None) -> dict:
    """Run `python -m hfllm ARGS` and return the JSON it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "hfllm", "--quiet", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"hfllm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predicted(config: str, sets: list[str]) -> dict:
    report = hfllm("inspect", config, "--json", *sets)
    memory = report["memory"]["configured"]
    speed = report["throughput"]
    return {
        "memory_bytes": memory["peak"] - memory["weights"],
        "train_step_bytes": memory["train_step_peak"] - memory["weights"],
        "eval_bytes": (memory["eval_peak"] or 0) - memory["weights"],
        "tokens_per_second": _rate_inside_train(speed),
        "tokens_per_second_whole_run": speed["effective_tokens_per_second"],
        "tokens_per_second_training_only": speed["tokens_per_second"],
        "mfu": speed["mfu"],
        "matmul_peak_flops": speed["peak_flops"],
    }


def _rate_inside_train(speed: dict) -> float:
    """Return the predicted tokens/s over Trainer.train's clock: training plus all evaluations but the last
    (hfllm's final evaluation runs after train() returns)."""
    evaluations = speed["evaluations"]
    inside = (speed["eval_seconds"] or 0.0) * (evaluations - 1) / evaluations if evaluations else 0.0
    return speed["steps"] * speed["tokens_per_step"] / (speed["train_seconds"] + inside)


def measured(config: str, sets: list[str], work: Path) -> dict:
    probe = work / "rss.json"
    result = hfllm(
        "pretrain",
        "--config",
        config,
        "--output-dir",
        str(work / "run"),
        *sets,
        env={"PYTHONPATH": str(REPO / "bench" / "rss_probe"), "HFLLM_BENCH_RSS_OUT": str(probe)},
    )
    rss = json.loads(probe.read_text(encoding="utf-8"))
    return {
        "memory_bytes": rss["peak_rss"] - rss["rss_at_train_start"],
        "rss_at_train_start": rss["rss_at_train_start"],
        "tokens_per_second": result["metrics"]["train"]["tokens_per_second"],
        "train_runtime_s": json.loads((work / "run" / "metrics.json").read_text())["train"]["runtime_s"],
        "global_step": result["global_step"],
    }


def compare(name: str, config: str, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hfllm-bench-inspect-{name}-") as tmp:
        before = predicted(config, sets)
        real = measured(config, sets, Path(tmp))
        after = predicted(config, sets)
    memory_error = before["memory_bytes"] / real["memory_bytes"] - 1
    speed_ratios = [p["tokens_per_second"] / real["tokens_per_second"] for p in (before, after)]
    return {
        "config": config,
        "set": sets,
        "predicted_before": before,
        "measured": real,
        "predicted_after": after,
        "memory_error": round(memory_error, 4),
        "memory_within_25pct": abs(memory_error) <= 0.25,
        "speed_ratio_before_after": [round(r, 3) for r in speed_ratios],
        "speed_within_2x": all(0.5 <= r <= 2.0 for r in speed_ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="runs/demo/data")
    parser.add_argument("--max-steps", type=int, default=None, help="shorten the runs (both configs)")
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (both configs)"
    )
    args = parser.parse_args()
    if not (REPO / args.data_dir / "manifest.json").is_file():
        hfllm("preprocess", "--config", "configs/demo/preprocess.yaml", "--output-dir", args.data_dir)
    sets = ["--set", f"data_dir={args.data_dir}"]
    if args.max_steps:
        sets += ["--set", f"training.max_steps={args.max_steps}"]
    for override in args.set:
        sets += ["--set", override]
    names = [args.only] if args.only else list(CONFIGS)
    out = {name: compare(name, CONFIGS[name], sets) for name in names}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
