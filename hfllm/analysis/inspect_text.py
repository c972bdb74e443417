"""The `hfllm inspect` report as text: what a person reads before launching a run."""

from __future__ import annotations

from typing import Any

from hfllm.analysis.plan import STRATEGIES

GIB = 2**30


def size(n: float | None) -> str:
    """Return bytes as MiB/GiB text."""
    if n is None:
        return "-"
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / 2**20:.1f} MiB"


def count(n: float) -> str:
    """Return a large number with a k/M/G/T suffix."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}"
    return f"{n:.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render_text(report: dict[str, Any]) -> str:
    """Return the whole report as lines of text."""
    lines: list[str] = []
    p, b = report["parameters"], report["batch"]
    lines.append(f"{report['source']}: {report['kind']}, {report['model_type']} ({report['objective']})")
    lines.append(
        f"parameters      {p['parameters']:,} ({p['embedding_parameters']:,} embedding, "
        f"{p['non_embedding_parameters']:,} non-embedding)"
    )
    f = report["flops_per_token"]
    lines.append(f"FLOPs/token     {count(f['forward'])} forward, {count(f['training'])} training")
    lines.append(
        f"batch           {b['per_device_train_batch_size']} x {b['max_length']} tokens per device, "
        f"accumulation {b['gradient_accumulation_steps']}, {b['num_processes']} process(es): global "
        f"{b['global_batch_size']}; eval batch {b['per_device_eval_batch_size'] or '-'}; {b['precision']}, "
        f"checkpointing {'on' if b['gradient_checkpointing'] else 'off'}, sharding {b['sharding']}"
    )
    lines += _memory_lines(report["memory"], b["num_processes"], b["sharding"])
    lines += _speed_lines(report["throughput"])
    lines += _fit_lines(report["fit"])
    lines.append("assumptions:")
    lines += [f"  - {note}" for note in report["assumptions"]]
    return "\n".join(lines) + "\n"


def _memory_lines(memory: dict[str, Any], processes: int, strategy: str) -> list[str]:
    c = memory["configured"]
    lines = [
        "memory per rank (configured): "
        f"weights {size(c['weights'])}, gradients {size(c['gradients'])}, optimizer {size(c['optimizer'])}, "
        f"activations {size(c['activations'])}",
        f"  peak {size(c['peak'])} (training step {size(c['train_step_peak'])}, evaluation {size(c['eval_peak'])}"
        + (f", + runtime {size(c['runtime'])}" if c.get("runtime") else "")
        + ")",
        "  precision  checkpointing  activations  train step   evaluation   peak",
    ]
    for v in memory["variants"]:
        lines.append(
            f"  {v['precision']:<9}  {'on' if v['gradient_checkpointing'] else 'off':<13}  "
            f"{size(v['activations']):>11}  {size(v['train_step_peak']):>10}  {size(v['eval_peak']):>11}  "
            f"{size(v['peak']):>10}"
        )
    per_rank = memory["per_rank"]
    shown = ", ".join(
        f"{name} {size(per_rank[name])}{' (configured)' if name == strategy else ''}" for name in STRATEGIES
    )
    lines.append(f"  per rank with {processes} process(es): {shown}")
    return lines


def _speed_lines(t: dict[str, Any]) -> list[str]:
    lines = [
        f"speed           {t['device_description']}: {count(t['peak_flops'])}FLOP/s {t['peak_kind']} peak, "
        f"efficiency {t['efficiency']:g} -> {t['seconds_per_step']:.3g} s/step, "
        f"{t['tokens_per_second']:,.0f} tokens/s training (MFU {t['mfu']:.1%})"
    ]
    if t.get("total_seconds") is not None:
        evals = (
            f"{duration(t['eval_seconds'])} for {t['evaluations']} evaluation(s)"
            if t["eval_seconds"] is not None
            else f"{t['evaluations']} evaluation(s) not timed (validation size unknown)"
        )
        lines.append(
            f"time            {t['steps']:,} steps: {duration(t['train_seconds'])} training + {evals} = "
            f"{duration(t['total_seconds'])} ({t['effective_tokens_per_second']:,.0f} tokens/s overall)"
        )
    else:
        lines.append("time            unknown: the run's length is set in epochs and the data dir is missing")
    return lines


def _fit_lines(fit: dict[str, Any]) -> list[str]:
    verdict = "fits" if fit["fits"] else "does NOT fit"
    lines = [
        f"fit             {verdict}: needs {size(fit['needed_bytes'])} of {size(fit['available_bytes'])} "
        f"({fit['checked_against']})"
    ]
    if not fit["fits"]:
        suggestion = fit["suggestion"]
        if suggestion:
            sets = " ".join(f"--set {s}" for s in suggestion["set"])
            lines.append(f"  smallest change that fits ({size(suggestion['needed_bytes'])}): {sets}")
        else:
            lines.append(
                "  nothing fits, not even batch 1 with checkpointing: use more devices with ZeRO-3/FSDP, "
                "a device with more memory, or a smaller model"
            )
    return lines
