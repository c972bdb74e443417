"""LoRA vs full fine-tuning of all-MiniLM-L6-v2 on the bundled 9-class Debian-section data (issue 18).

Runs the shipped recipes configs/finetune/minilm-classify.yaml (full fine-tune, lr 1e-4) and
configs/finetune/minilm-lora.yaml (LoRA r=16 on attention and MLP projections, head and pooler in full, lr 2e-3) at the same
epochs (3 by default, early stopping off so both train every epoch), on the same seeded split of the same CSV.
Then merges the adapter (`hfllm export --merge`) and compares the merged model's logits with the
adapter model's on the test split. Prints one JSON object: test macro-F1 of both, the gap, the
trainable share, the adapter's size, times (wall_s: the command; run_s: the run as metrics.json records
it, start-up to export, also right when a run dir already held the finished run; train_runtime_s: the
training loop), and the largest logit difference after merging (with each float32 model's distance from the adapter
computed in float64, the rounding floor that difference sits on).

    .venv/bin/python bench/lora.py [--epochs 3] [--max-length 128] [--output-dir runs/bench-lora]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def hfllm(*args: str) -> tuple[dict, float]:
    """Run an hfllm command; return its JSON result and its wall time (logs go to our stderr)."""
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "hfllm", *map(str, args)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hfllm {' '.join(map(str, args))} failed with exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), round(time.time() - started, 1)


def finetune(recipe: str, out: Path, epochs: float, max_length: int) -> tuple[dict, float]:
    """Train a shipped recipe into `out`; return its metrics.json and the command's wall time."""
    _, seconds = hfllm(
        "--quiet", "finetune", "--config", REPO / "configs" / "finetune" / f"{recipe}.yaml",
        "--output-dir", out, "--set", f"training.num_train_epochs={epochs}", "--set", f"data.max_length={max_length}",
        "--set", "early_stopping.patience=null", "--set", "training.report_to=[]",
    )  # fmt: skip
    return json.loads((out / "metrics.json").read_text(encoding="utf-8")), seconds


def test_logits(model_dir: Path, data_dir: Path, float64: bool = False) -> object:
    """Return the logits of a model (adapter dir or full model dir) on the test split; with `float64`,
    computed in double precision (the reference both float32 models are measured against)."""
    import numpy as np
    from datasets import load_from_disk

    from hfllm.inference.batching import forward_logits
    from hfllm.models.loader import load_for_inference

    model, tokenizer, _ = load_for_inference(model_dir, "cpu")
    if float64:
        model = model.double()
    rows = load_from_disk(str(data_dir))["test"]
    rows = rows.select_columns(
        [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in rows.column_names]
    )
    return np.stack(forward_logits(model, tokenizer, list(rows), 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-length", type=int, default=128, help="Truncate inputs (the recipes' 128).")
    parser.add_argument("--output-dir", type=Path, default=REPO / "runs" / "bench-lora")
    args = parser.parse_args()
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    full, full_s = finetune("minilm-classify", out / "full", args.epochs, args.max_length)
    lora, lora_s = finetune("minilm-lora", out / "lora", args.epochs, args.max_length)
    merged, merge_s = hfllm(
        "--quiet", "export", "--merge", out / "lora", "--output-dir", out / "merged", "--overwrite"
    )
    import numpy as np

    adapter_logits = test_logits(out / "lora" / "model", out / "lora" / "data")
    merged_logits = test_logits(out / "merged", out / "lora" / "data")
    exact_logits = test_logits(out / "lora" / "model", out / "lora" / "data", float64=True)
    from datasets import load_from_disk

    tests = [load_from_disk(str(out / run / "data"))["test"] for run in ("full", "lora")]
    same_split = tests[0]["text"] == tests[1]["text"]
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "max_length": args.max_length,
                "same_test_split": same_split,
                "test_examples": len(tests[1]),
                "full": {
                    "f1_macro": full["test"]["f1_macro"],
                    "accuracy": full["test"]["accuracy"],
                    "trainable_parameters": full["model"]["trainable_parameters"],
                    "wall_s": full_s,
                    "run_s": full["seconds"],
                    "train_runtime_s": full["train"]["runtime_s"],
                },
                "lora": {
                    "f1_macro": lora["test"]["f1_macro"],
                    "accuracy": lora["test"]["accuracy"],
                    "trainable_parameters": lora["model"]["trainable_parameters"],
                    "parameters": lora["model"]["parameters"],
                    "trainable_share": lora["model"]["trainable_share"],
                    "adapter_bytes": lora["model"]["adapter_bytes"],
                    "peft": lora["peft"],
                    "wall_s": lora_s,
                    "run_s": lora["seconds"],
                    "train_runtime_s": lora["train"]["runtime_s"],
                },
                "f1_macro_gap_points": round(100 * (full["test"]["f1_macro"] - lora["test"]["f1_macro"]), 2),
                "merge": {
                    "wall_s": merge_s,
                    "max_abs_logit_diff": float(np.abs(adapter_logits - merged_logits).max()),
                    "logits_over_1e-5": int((np.abs(adapter_logits - merged_logits) > 1e-5).sum()),
                    "logits": int(adapter_logits.size),
                    "max_abs_logit": float(np.abs(adapter_logits).max()),
                    "same_predictions": int((adapter_logits.argmax(-1) == merged_logits.argmax(-1)).sum()),
                    # float32 rounding: how far each float32 model is from the adapter computed in float64
                    "adapter_vs_float64_max_abs": float(np.abs(adapter_logits - exact_logits).max()),
                    "merged_vs_float64_max_abs": float(np.abs(merged_logits - exact_logits).max()),
                    "parameters": merged["parameters"],
                },
                "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            }
        )
    )


if __name__ == "__main__":
    main()
