"""Benchmark `hfllm pretrain` against a plain hand-written Trainer script; prints one JSON object.

Both train the same BERT shape on the same data dir for the same steps and global batch, with no
evaluation or checkpoint inside the timed window (what the seed's section 5.1 script does). hfllm
runs with its own defaults (sparse masked-LM head, dropout off while pretraining, unigram output
bias, its learning-rate schedule, bf16 where native and wide enough); the plain script with the
Trainer's. Each side runs `--repeats` times, interleaved, because the CPU may be shared; medians
are reported, for training tokens/s (train_runtime, as the Trainer counts it) and for the whole
command (start-up, data loading and saving included).

Loss at equal tokens: after the last repeat both final models are scored by `hfllm evaluate
--precision fp32` on the validation split with the same fixed masks.

MFU = tokens/s x F / peak, with F = 6 (N_nonembedding + d V) + 12 L d T model FLOPs per token (the
dense head's, for both sides: the sparse head does less work for the same model) and the peaks
measured here with torch fp32 and bf16 matmuls. `machine` says which precision path each side took.

    .venv/bin/python bench/pretrain.py [--data-dir DIR] [--steps 100] [--repeats 3] [--threads N]
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
options = {"use_cpu": True, **json.loads(sys.argv[6] if len(sys.argv) > 6 else "{}")}  # e.g. GPU: bf16
set_seed(42)
tokenizer = AutoTokenizer.from_pretrained(data_dir + "/tokenizer")
train = load_from_disk(data_dir)["train"]
config = AutoConfig.for_model("bert", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                              max_position_embeddings=len(train[0]["input_ids"]), **json.loads(model_json))
model = AutoModelForMaskedLM.from_config(config)
collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=True, mlm_probability=0.15)
args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=5e-4,
                         save_strategy="no", report_to="none", logging_steps=10, disable_tqdm=True, **options)
trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=train)
result = trainer.train()
trainer.save_model(out + "/model")
tokenizer.save_pretrained(out + "/model")
print(json.dumps({"train_runtime": result.metrics["train_runtime"], "steps": trainer.state.global_step}))
"""


def matmul_peak(dtype: str = "float32", n: int = 1024, repeats: int = 20) -> float:
    """Return the best matmul FLOP/s in `dtype` measured with torch on this machine, now."""
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
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
        "training.eval_strategy": "no",
        "training.eval_on_start": False,
        "training.save_strategy": "no",
        "training.load_best_model_at_end": False,
        "training.use_cpu": True,
        "training.logging_steps": 10,
        "training.disable_tqdm": True,
        "training.report_to": "none",
    }
    sets.update({f"model.config.{k}": v for k, v in MODEL.items()})
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    started = time.perf_counter()
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
    return {**json.loads((out / "metrics.json").read_text()), "wall_s": time.perf_counter() - started}


def run_baseline(data: Path, out: Path, steps: int, batch: int) -> dict:
    """Return the plain Trainer script's train runtime, steps and whole-command wall time."""
    script = out.parent / "baseline.py"
    script.write_text(BASELINE)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script), str(data), str(out), str(steps), str(batch), json.dumps(MODEL)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - started}


def validation_loss(model: Path, data: Path, out: Path) -> dict:
    """Return `hfllm evaluate`'s masked-LM metrics of `model` on the validation split (fixed masks, fp32)."""
    cmd = [sys.executable, "-m", "hfllm", "evaluate", "--model", str(model), "--data", str(data)]
    cmd += ["--split", "validation", "--precision", "fp32", "--output-dir", str(out), "--quiet"]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    metrics = json.loads(proc.stdout)["metrics"]
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "examples"}


def machine() -> dict:
    """Return what decides the precision path here (hfllm.precision reads the same)."""
    import torch

    from hfllm.precision import native_cpu_bf16

    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_cpu_bf16": native_cpu_bf16(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS for both sides and the matmul peaks (default: torch's own choice); "
        "1 on a CPU shared with other jobs, where waiting OpenMP threads dominate (docs/speed.md)",
    )
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if opts.threads:
        os.environ["OMP_NUM_THREADS"] = str(opts.threads)  # before torch is imported here or in a side
    with tempfile.TemporaryDirectory(prefix="hfllm-bench-") as tmp:
        work = Path(tmp)
        data = opts.data_dir or build_data(work)
        seq = json.loads((data / "manifest.json").read_text())["max_length"]
        vocab = _vocab(data)  # read now: the data dir may be in the temporary dir
        tokens = opts.steps * opts.batch * seq
        runs: dict[str, list] = {"hfllm": [], "baseline": [], "hfllm_wall": [], "baseline_wall": []}
        metrics: dict = {}
        for i in range(opts.repeats):
            metrics = run_hfllm(data, work / f"hfllm-{i}", opts.steps, opts.batch)
            runs["hfllm"].append(metrics["train"]["tokens_per_second"])
            runs["hfllm_wall"].append(tokens / metrics["wall_s"])
            base = run_baseline(data, work / f"baseline-{i}", opts.steps, opts.batch)
            runs["baseline"].append(tokens / base["train_runtime"])
            runs["baseline_wall"].append(tokens / base["wall_s"])
        last = opts.repeats - 1
        losses = {
            "hfllm": validation_loss(work / f"hfllm-{last}" / "model", data, work / "eval-hfllm"),
            "baseline": validation_loss(work / f"baseline-{last}" / "model", data, work / "eval-baseline"),
        }
        peaks = {"fp32": matmul_peak("float32"), "bf16": matmul_peak("bfloat16")}
    sizes = metrics["model"]
    f = flops_per_token(
        sizes["non_embedding_parameters"], sizes["hidden_size"], vocab, sizes["num_hidden_layers"], seq
    )
    median = {name: statistics.median(values) for name, values in runs.items()}
    h, b = median["hfllm"], median["baseline"]
    print(
        json.dumps(
            {
                "model": {
                    **MODEL,
                    "parameters": sizes["parameters"],
                    "non_embedding_parameters": sizes["non_embedding_parameters"],
                    "max_length": seq,
                },
                "steps": opts.steps,
                "batch_size": opts.batch,
                "tokens": tokens,
                "repeats": opts.repeats,
                "machine": machine(),
                "precision": {"hfllm": metrics.get("precision"), "baseline": "fp32 (Trainer default)"},
                "hfllm_tokens_per_second": h,
                "baseline_tokens_per_second": b,
                "ratio_hfllm_to_baseline": h / b,
                "ratio_whole_command": median["hfllm_wall"] / median["baseline_wall"],
                "runs": runs,
                "validation_at_equal_tokens": losses,
                "hfllm_loss_no_worse": losses["hfllm"]["loss"] <= losses["baseline"]["loss"],
                "flops_per_token": f,
                "matmul_peak_flops": peaks,
                "mfu": {
                    side: {dtype: tps * f / peak for dtype, peak in peaks.items()}
                    for side, tps in (("hfllm", h), ("baseline", b))
                },
            },
            indent=2,
        )
    )


def _vocab(data: Path) -> int:
    return int(json.loads((data / "manifest.json").read_text())["tokenizer"]["vocab_size"])


if __name__ == "__main__":
    main()
