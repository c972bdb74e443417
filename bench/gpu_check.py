"""One-GPU check: the speed levers of issue 15 on BERT-base at sequence length 512 in bf16; one JSON line per run.

Preprocesses the bundled sample corpus (configs/preprocess/demo.yaml with 512-token blocks) into a
temp dir, then trains a BERT-base-sized model (12 layers, 768 wide) for `--steps` steps, each run a
fresh process, no evaluation or checkpoint inside the timed window:

- `baseline`: the plain Trainer script of bench/pretrain.py with bf16=True (dense masked-LM head,
  dropout 0.1, the Trainer's defaults otherwise);
- `hfllm`: `hfllm pretrain` with configs/pretrain/bert-base.yaml and hfllm's from-scratch default of
  no dropout (sparse masked-LM head, bf16 chosen by hfllm.precision, SDPA attention);
- `hfllm_dropout`: the same with the config's dropout 0.1 (isolates the dropout lever);
- `fsdp`: configs/pretrain/bert-base-fsdp.yaml on one torchrun worker (FSDP needs a distributed
  launch even on one GPU; hfllm starts it).

Each run prints one JSON object (status ok / skipped with the reason / failed with the error), then
a summary with tokens/s, MFU and the ratio of every run to the baseline. tokens/s is tokens seen /
train_runtime (so it includes the first steps' warm-up). MFU = tokens/s x F / peak with
F = 6 (N_nonembedding + d V) + 12 L d T model FLOPs per token (as bench/pretrain.py, the dense
head's for every run) and the peak measured here with a bf16 matmul (the fp32 one is printed too),
plus the nominal peak when the GPU is known. Exit 0 when no run failed, 1 when one did, 2 when
there is no GPU or a package is missing. Run it through bench/gpu_check.sh (sets PYTHONPATH).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_S = 280  # the whole check stays under 5 minutes
SEQ = 512
DROPOUT_OFF = {"model.config.hidden_dropout_prob": 0.0, "model.config.attention_probs_dropout_prob": 0.0}
REQUIRED = ("hfllm", "torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors")
REQUIRED += ("typer", "yaml", "pydantic", "matplotlib")
# Dense bf16 tensor-core peaks from the vendors' data sheets, FLOP/s; the first matching name wins.
NOMINAL_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


def die(message: str, code: int = 2) -> None:
    print(f"gpu_check: {message}", file=sys.stderr)
    sys.exit(code)


def preflight():
    """Return torch once the packages are importable and a CUDA GPU is visible; exit 2 otherwise."""
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        where = f" (put {REPO} on PYTHONPATH for hfllm)" if "hfllm" in missing else ""
        die(f"{sys.executable} lacks the Python packages {', '.join(missing)}{where}")
    cli = subprocess.run([sys.executable, "-m", "hfllm", "--version"], capture_output=True, text=True)
    if cli.returncode != 0:
        die(f"`{sys.executable} -m hfllm --version` failed:\n{cli.stderr[-2000:]}")
    import torch

    if not torch.cuda.is_available():
        die(f"no CUDA GPU visible to {sys.executable} (torch {torch.__version__}); this check needs one GPU")
    return torch


def measured_peak(torch, dtype, n: int = 8192, repeats: int = 10) -> float:
    """Return the best FLOP/s of an n x n matmul in `dtype` on this GPU, now."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for i in range(repeats + 3):
        start.record()
        torch.matmul(a, b)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:  # the first calls pick kernels
            best = min(best, start.elapsed_time(end) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 / best


def nominal_peak(name: str) -> float | None:
    return next((flops for key, flops in NOMINAL_BF16 if key in name), None)


def flops_per_token(non_embedding: int, d: int, vocab: int, layers: int, seq: int) -> float:
    """Return F = 6 (N_nonembedding + d V) + 12 L d T: training FLOPs per token (as bench/pretrain.py)."""
    return 6 * (non_embedding + d * vocab) + 12 * layers * d * seq


def run(cmd: list[str], log: Path, timeout: float) -> int:
    """Return the exit code of `cmd` run in the repo with its stdout and stderr in `log`."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with log.open("w") as out:
        try:
            return subprocess.run(
                cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            return 124


def tail(log: Path, lines: int = 12) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def error_of(log: Path) -> str:
    """Return the failing process's own message: hfllm's `error:` lines, else the last exception line."""
    lines = log.read_text(errors="replace").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if "hfllm: error:" in lines[i] or "hfllm: unexpected error:" in lines[i]:
            return "\n".join(lines[i : i + 2]).strip()
    found = [line for line in lines if "Error" in line or "error" in line]
    return found[-1].strip() if found else "\n".join(lines[-3:])


def pretrain(name: str, config: str, launcher: list[str], ctx: dict, extra: dict | None = None) -> dict:
    """Return the JSON object of one `hfllm pretrain` run: throughput and MFU, or why it failed."""
    opts, work = ctx["opts"], ctx["work"]
    sets = {
        "data_dir": ctx["data"],
        "model.config.attn_implementation": "sdpa",
        "model.config.max_position_embeddings": SEQ,
        "training.max_steps": opts.steps,
        "training.per_device_train_batch_size": opts.batch,
        "training.gradient_accumulation_steps": 1,
        "training.eval_strategy": "no",
        "training.eval_on_start": False,
        "training.save_strategy": "no",
        "training.load_best_model_at_end": False,
        "training.logging_steps": 50,
        "training.disable_tqdm": True,
        "training.report_to": "none",
        **(extra or {}),
    }
    out, log = work / name, work / f"{name}.log"
    args = [a for key, value in sets.items() for a in ("--set", f"{key}={json.dumps(value)}")]
    cmd = [*launcher, "pretrain", "--config", config, *args, "--output-dir", str(out), "--resume", "never"]
    started = time.time()
    # One run may take at most 150 s, so that the other still fits in the check's budget.
    code = run(cmd, log, max(10.0, min(150.0, ctx["deadline"] - time.time())))
    result = {"run": name, "config": config, "attention": "sdpa", "sets": extra or {}}
    result.update(steps=opts.steps, batch_size=opts.batch, wall_s=round(time.time() - started, 1))
    ok = code == 0 and (out / "metrics.json").is_file()
    m = flat_metrics(json.loads((out / "metrics.json").read_text())) if ok else from_log(log, config)
    if not ok:
        print(tail(log, 40), file=sys.stderr)
        result.update(status="failed", exit_code=code, error=error_of(log))
    if "tokens_per_second" not in m:
        return result
    vocab = json.loads((Path(ctx["data"]) / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    f = flops_per_token(
        m["non_embedding_parameters"], m["hidden_size"], vocab, m["num_hidden_layers"], m["max_length"]
    )
    result.update(status=result.get("status", "ok"), precision=m.get("precision"))
    result.update(throughput(m["tokens_per_second"], f, ctx))
    result.update(
        {k: m.get(k) for k in ("max_length", "parameters", "non_embedding_parameters", "train_runtime_s")}
    )
    result.update({k: m.get(k) for k in ("train_loss", "world_size")})
    return result


def flat_metrics(metrics: dict) -> dict:
    """Return the figures this check reads from a run's metrics.json (train and model sections) as one dict."""
    train, model = metrics.get("train") or {}, metrics.get("model") or {}
    return {
        **{k: model.get(k) for k in ("max_length", "parameters", "non_embedding_parameters")},
        **{k: model.get(k) for k in ("hidden_size", "num_hidden_layers")},
        **({"tokens_per_second": train["tokens_per_second"]} if "tokens_per_second" in train else {}),
        "train_runtime_s": train.get("runtime_s"),
        "train_loss": train.get("loss_mean"),
        "world_size": metrics.get("world_size"),
        "precision": metrics.get("precision"),
    }


def non_embedding_parameters(model: dict, vocab: int) -> int:
    """Return the parameters outside embeddings of a BERT masked LM of this shape (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    from hfllm.models.builders import count_parameters

    config = AutoConfig.for_model("bert", vocab_size=vocab, max_position_embeddings=SEQ, **model)
    with torch.device("meta"):
        return count_parameters(AutoModelForMaskedLM.from_config(config))["non_embedding_parameters"]


def throughput(tps: float, f: float, ctx: dict) -> dict:
    """Return tokens/s and MFU against the measured bf16 peak (and the nominal one when known)."""
    nominal = ctx["nominal"]
    return {
        "tokens_per_second": round(tps),
        "flops_per_token": f,
        "mfu": float(f"{tps * f / ctx['peak']:.4g}"),
        "mfu_nominal": float(f"{tps * f / nominal:.4g}") if nominal else None,
    }


def baseline(ctx: dict) -> dict:
    """Return the JSON object of the plain Trainer script (bench/pretrain.py's) in bf16 on the GPU."""
    sys.path.insert(0, str(REPO / "bench"))
    from pretrain import BASELINE
    from pretrain import flops_per_token as f_per_token

    opts, work = ctx["opts"], ctx["work"]
    model = {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    }
    script, out, log = work / "baseline.py", work / "baseline", work / "baseline.log"
    script.write_text(BASELINE)
    options = {"use_cpu": False, "bf16": ctx["bf16"]}
    cmd = [sys.executable, str(script), ctx["data"], str(out), str(opts.steps), str(opts.batch)]
    cmd += [json.dumps(model), json.dumps(options)]
    started = time.time()
    code = run(cmd, log, max(10.0, min(150.0, ctx["deadline"] - time.time())))
    result = {"run": "baseline", "script": "bench/pretrain.py BASELINE", "options": options}
    result.update(steps=opts.steps, batch_size=opts.batch, wall_s=round(time.time() - started, 1))
    if code != 0:
        print(tail(log, 40), file=sys.stderr)
        return {**result, "status": "failed", "exit_code": code, "error": error_of(log)}
    end = json.loads(log.read_text().strip().splitlines()[-1])
    tps = opts.steps * opts.batch * SEQ / end["train_runtime"]
    vocab = json.loads((Path(ctx["data"]) / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    f = f_per_token(non_embedding_parameters(model, vocab), 768, vocab, 12, SEQ)
    return {
        **result,
        "status": "ok",
        "precision": "bf16" if ctx["bf16"] else "fp32",
        **throughput(tps, f, ctx),
    }


def from_log(log: Path, config: str) -> dict:
    """Return what a run that failed after training still tells: tokens/s from its last periodic log line
    (`num_input_tokens_seen N, train_runtime S`), sizes from the config (metrics.json is written last)."""
    facts: dict = {}
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(r"num_input_tokens_seen (\d+), train_runtime ([\d.]+)", line)
        if found and float(found[2]) > 0:
            facts["tokens_per_second"] = int(found[1]) / float(found[2])
            facts["train_runtime_s"] = float(found[2])
    if "tokens_per_second" not in facts:
        return {}
    import yaml

    model = yaml.safe_load((REPO / config).read_text())["model"]["config"]
    data = json.loads((log.parent / "data" / "manifest.json").read_text())
    shape = {
        k: model[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    }
    vocab = data["tokenizer"]["vocab_size"]
    return {
        **facts,
        **{k: model[k] for k in ("hidden_size", "num_hidden_layers")},
        "non_embedding_parameters": non_embedding_parameters(shape, vocab),
        "max_length": data["max_length"],
    }


def fsdp_unavailable(torch) -> str | None:
    """Return why FSDP2 cannot run here, or None."""
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        return f"torch {torch.__version__} has no torch.distributed with NCCL"
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no FSDP2 (torch.distributed.fsdp.fully_shard)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32, help="per-device batch (512-token blocks)")
    opts = parser.parse_args()
    began = time.time()
    deadline = began + BUDGET_S
    torch = preflight()
    gpu = torch.cuda.get_device_name(0)
    bf16 = torch.cuda.is_bf16_supported()
    peak = measured_peak(torch, torch.bfloat16 if bf16 else torch.float32)
    peak_fp32 = measured_peak(torch, torch.float32)
    nominal = nominal_peak(gpu) if bf16 else None
    results = []
    with tempfile.TemporaryDirectory(prefix="hfllm-gpu-check-") as tmp:
        work = Path(tmp)
        data = str(work / "data")
        py = [sys.executable, "-m", "hfllm"]
        prep = ["preprocess", "--config", "configs/preprocess/demo.yaml", "--output-dir", data]
        prep += ["--set", f"packing.max_length={SEQ}"]
        if run([*py, *prep], work / "preprocess.log", 120) != 0:
            print(tail(work / "preprocess.log", 40), file=sys.stderr)
            die("preprocess of the sample corpus failed (log above)", 1)
        ctx = dict(opts=opts, work=work, data=data, bf16=bf16, peak=peak, nominal=nominal, deadline=deadline)
        # FSDP needs a distributed launch even on one GPU: hfllm starts one torchrun worker itself.
        no_bf16 = None if bf16 else f"{gpu} has no bf16"
        runs = (
            ("baseline", None, None, None, no_bf16),
            ("hfllm", "configs/pretrain/bert-base.yaml", py, DROPOUT_OFF, no_bf16),
            ("hfllm_dropout", "configs/pretrain/bert-base.yaml", py, None, no_bf16),
            ("fsdp", "configs/pretrain/bert-base-fsdp.yaml", py, DROPOUT_OFF, fsdp_unavailable(torch)),
        )
        for name, config, launcher, extra, skip in runs:
            if skip is None and deadline - time.time() < 30:
                skip = f"the {BUDGET_S} s budget of the check is spent"
            if skip:
                result = {"run": name, "config": config, "status": "skipped", "reason": skip}
            elif config is None:
                result = baseline(ctx)
            else:
                result = pretrain(name, config, launcher, ctx, extra)
            results.append(result)
            print(json.dumps(result), flush=True)
    base_tps = next((r.get("tokens_per_second") for r in results if r["run"] == "baseline"), None)
    summary = {
        "summary": True,
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "accelerate": importlib.metadata.version("accelerate"),
        "sequence_length": SEQ,
        "peak_flops_measured": peak,
        "peak_flops_dtype": "bf16" if bf16 else "fp32",
        "peak_flops_measured_fp32": peak_fp32,
        "peak_flops_nominal_bf16": nominal,
        "status": {r["run"]: r["status"] for r in results},
        "tokens_per_second": {r["run"]: r.get("tokens_per_second") for r in results},
        "mfu": {r["run"]: r.get("mfu") for r in results},
        "ratio_to_baseline": {
            r["run"]: r["tokens_per_second"] / base_tps
            for r in results
            if base_tps and r.get("tokens_per_second")
        },
        "wall_s": round(time.time() - began, 1),
    }
    print(json.dumps(summary), flush=True)
    sys.exit(1 if any(r["status"] == "failed" for r in results) else 0)


if __name__ == "__main__":
    main()
