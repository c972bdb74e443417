"""Benchmark `hfllm pretrain` against a plain hand-written Trainer script; prints one JSON object.

Both train the same BERT config on the same data dir for the same steps and batch size, with no
evaluation or checkpoint inside the timed window (what the seed's section 5.1 script does). Each
side runs `--repeats` times, interleaved, because the CPU may be shared; medians are reported.
MFU = tokens/s x F / peak, with F = 6 (N_nonembedding + d V) + 12 L d T FLOPs per token and the
peak measured here with a torch fp32 matmul.

    .venv/bin/python bench/pretrain.py [--data-dir DIR] [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512}
BASELINE = """
import json, sys, time
from datasets import load_from_disk
from transformers import (AutoConfig, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling,
                          Trainer, TrainingArguments, set_seed)
data_dir, out, steps, batch, model_json = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
set_seed(42)
tokenizer = AutoTokenizer.from_pretrained(data_dir + "/tokenizer")
train = load_from_disk(data_dir)["train"]
config = AutoConfig.for_model("bert", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                              max_position_embeddings=len(train[0]["input_ids"]), **json.loads(model_json))
model = AutoModelForMaskedLM.from_config(config)
collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=True, mlm_probability=0.15)
args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=5e-4,
                         save_strategy="no", report_to="none", use_cpu=True, logging_steps=10, disable_tqdm=True)
trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=train)
result = trainer.train()
print(json.dumps({"train_runtime": result.metrics["train_runtime"], "steps": trainer.state.global_step}))
"""


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """Return the best fp32 matmul FLOP/s measured with torch on this machine, now."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops_per_token(non_embedding: int, d: int, vocab: int, layers: int, seq: int) -> float:
    """Return F = 6 (N_nonembedding + d V) + 12 L d T: training FLOPs per token (PaLM appendix B style)."""
    return 6 * (non_embedding + d * vocab) + 12 * layers * d * seq


def build_data(work: Path) -> Path:
    """Return a data dir made by `hfllm preprocess` from the bundled corpus (8k WordPiece, 128-token blocks)."""
    from hfllm.samples import corpus_path

    config = work / "preprocess.yaml"
    config.write_text(
        f"kind: preprocess\ndata: {{files: [{corpus_path()}]}}\nsplit: {{validation: 0.02, test: 0.02}}\n"
        "tokenizer: {train: {type: wordpiece, vocab_size: 8000}}\npacking: {mode: group, max_length: 128}\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hfllm",
            "preprocess",
            "--config",
            str(config),
            "--output-dir",
            str(work / "data"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return work / "data"


def run_hfllm(data: Path, out: Path, steps: int, batch: int) -> dict:
    """Return hfllm's metrics.json for a run with no evaluation or checkpoint inside the timed window."""
    sets = {
        "data_dir": str(data),
        "model.type": "bert",
        "training.max_steps": steps,
        "training.per_device_train_batch_size": batch,
        "training.learning_rate": 5e-4,
        "training.eval_strategy": "no",
        "training.eval_on_start": False,
        "training.save_strategy": "no",
        "training.load_best_model_at_end": False,
        "training.use_cpu": True,
        "training.logging_steps": 10,
        "training.disable_tqdm": True,
        "training.warmup_steps": 0,
    }
    sets.update({f"model.config.{k}": v for k, v in MODEL.items()})
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hfllm",
            "pretrain",
            "--config",
            "/dev/null",
            *args,
            "--output-dir",
            str(out),
            "--overwrite",
            "--resume",
            "never",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads((out / "metrics.json").read_text())


def run_baseline(data: Path, out: Path, steps: int, batch: int) -> dict:
    """Return the plain Trainer script's train runtime and steps."""
    script = out.parent / "baseline.py"
    script.write_text(BASELINE)
    proc = subprocess.run(
        [sys.executable, str(script), str(data), str(out), str(steps), str(batch), json.dumps(MODEL)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="hfllm-bench-") as tmp:
        work = Path(tmp)
        data = opts.data_dir or build_data(work)
        seq = json.loads((data / "manifest.json").read_text())["max_length"]
        tokens = opts.steps * opts.batch * seq
        hfllm_tps, base_tps, metrics = [], [], {}
        for i in range(opts.repeats):
            metrics = run_hfllm(data, work / f"hfllm-{i}", opts.steps, opts.batch)
            hfllm_tps.append(metrics["tokens_per_second"])
            base = run_baseline(data, work / f"baseline-{i}", opts.steps, opts.batch)
            base_tps.append(tokens / base["train_runtime"])
        peak = matmul_peak()
    f = flops_per_token(
        metrics["non_embedding_parameters"],
        metrics["hidden_size"],
        _vocab(data),
        metrics["num_hidden_layers"],
        seq,
    )
    h, b = statistics.median(hfllm_tps), statistics.median(base_tps)
    print(
        json.dumps(
            {
                "model": {
                    **MODEL,
                    "parameters": metrics["parameters"],
                    "non_embedding_parameters": metrics["non_embedding_parameters"],
                    "max_length": seq,
                },
                "steps": opts.steps,
                "batch_size": opts.batch,
                "repeats": opts.repeats,
                "hfllm_tokens_per_second": h,
                "baseline_tokens_per_second": b,
                "ratio_hfllm_to_baseline": h / b,
                "hfllm_runs": hfllm_tps,
                "baseline_runs": base_tps,
                "flops_per_token": f,
                "matmul_peak_flops": peak,
                "hfllm_mfu": h * f / peak,
                "baseline_mfu": b * f / peak,
            },
            indent=2,
        )
    )


def _vocab(data: Path) -> int:
    return int(json.loads((data / "manifest.json").read_text())["tokenizer"]["vocab_size"])


if __name__ == "__main__":
    main()
