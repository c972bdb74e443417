"""The inference levers one at a time, in one process on one thread; prints one JSON object.

Where bench/predict.py times whole commands (start-up included) against plain scripts, this loads a
fine-tuned classifier once and times `Predictor.predict` (tokenization, batching, forward, records)
on the first `--lines` sample texts in each variant, interleaved, `--repeats` rounds, CPU seconds
(`time.process_time`, which other jobs on a shared machine barely disturb) and wall seconds:

- fp32, batches in input order (no length sorting): what a plain loop does;
- fp32, length-sorted batches (hfllm's batching, order restored);
- bf16 weights, int8 dynamic quantization (each length-sorted).

Labels are compared with the fp32 sorted variant's, and accuracy with the CSV's gold labels.

    .venv/bin/python bench/predict_levers.py --model-dir DIR [--lines 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import BATCH, accuracy, machine, write_inputs  # noqa: E402

VARIANTS = {  # name -> (precision, length-sorted batches)
    "fp32_input_order": ("fp32", False),
    "fp32_sorted": ("fp32", True),
    "bf16_sorted": ("bf16", True),
    "int8_sorted": ("int8", True),
}


def in_order(lengths: list[int], batch_size: int):
    """Yield row indices in input order, `batch_size` at a time (the lever switched off)."""
    for start in range(0, len(lengths), batch_size):
        yield list(range(start, min(start + batch_size, len(lengths))))


def timed_predict(predictor, items, sorted_batches: bool) -> tuple[float, float, list[str]]:
    """Return (CPU seconds, wall seconds, labels) of one pass over `items`."""
    import hfllm.inference.predict as predict_module

    original = predict_module.length_batches
    predict_module.length_batches = original if sorted_batches else in_order
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        records = predictor.predict(items)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        predict_module.length_batches = original
    return cpu, wall, [r["label"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a fine-tuned classifier's model/")
    parser.add_argument("--lines", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import tempfile

    import torch

    from hfllm.inference.predict import Item, Predictor

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.txt"
        gold = write_inputs(path, opts.lines)
        texts = path.read_text(encoding="utf-8").splitlines()
    predictors = {
        name: Predictor(opts.model_dir, BATCH, False, 5, None, precision)
        for name, (precision, _) in VARIANTS.items()
    }
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    labels: dict[str, list[str]] = {}
    for _ in range(opts.repeats):
        for name, (_, sorted_batches) in VARIANTS.items():  # interleaved
            items = [Item(i + 1, t) for i, t in enumerate(texts)]
            for item in items:
                predictors[name].check(item)  # the model's training-time cleaning, as predict does
            c, w, predicted = timed_predict(predictors[name], items, sorted_batches)
            cpu[name].append(c)
            wall[name].append(w)
            labels[name] = predicted
    reference = labels["fp32_sorted"]
    base = statistics.median(cpu["fp32_input_order"])
    variants = {}
    for name in VARIANTS:
        median = statistics.median(cpu[name])
        variants[name] = {
            "precision_path": predictors[name].precision,
            "cpu_s": round(median, 3),
            "wall_s": round(statistics.median(wall[name]), 3),
            "lines_per_cpu_second": round(len(texts) / median, 1),
            "speedup_vs_fp32_input_order": round(base / median, 2),
            "same_label_as_fp32": sum(a == b for a, b in zip(labels[name], reference, strict=True)),
            "accuracy": round(accuracy(labels[name], gold), 4),
        }
    result = {"lines": len(texts), "batch_size": BATCH, "threads": 1, "repeats": opts.repeats}
    print(json.dumps({**result, "machine": machine(), "variants": variants}, indent=2))


if __name__ == "__main__":
    main()
