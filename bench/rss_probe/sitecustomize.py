"""Bench-only probe, active when bench/inspect_accuracy.py puts this folder on PYTHONPATH.

HFLLM_BENCH_RSS_OUT=FILE: around `transformers.Trainer.train`, record the resident set size when
training starts (after the model, data and tokenizer are loaded) and its peak until training ends
(the kernel's VmHWM, reset at the start through /proc/self/clear_refs), and write both to FILE as JSON.
"""

import os

OUT = os.environ.get("HFLLM_BENCH_RSS_OUT")


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _install() -> None:
    import gc
    import json

    import transformers

    original = transformers.Trainer.train

    def train(self, *args, **kwargs):
        gc.collect()
        start = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
        try:
            return original(self, *args, **kwargs)
        finally:
            peak = _status_kib("VmHWM")
            with open(OUT, "w", encoding="utf-8") as handle:
                json.dump({"rss_at_train_start": start * 1024, "peak_rss": peak * 1024}, handle)

    transformers.Trainer.train = train


if OUT:
    _install()
