"""The C heap's free pages go back to the kernel before each evaluation batch of a CPU run."""

from __future__ import annotations

import ctypes
import sys

import pytest

from hfllm.train import trainer as trainer_module

pytestmark = pytest.mark.skipif(trainer_module._malloc_trim() is None, reason="needs glibc (malloc_trim)")


def rss_anon() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


def test_free_heap_pages_are_returned():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = 64 * 1024  # under glibc's mmap threshold: served from the heap, kept there after free()
    blocks, pins = [], []
    for _ in range(256):  # 16 MiB in blocks, each followed by a live 4 KiB block that keeps it a hole
        blocks.append(libc.malloc(block))
        pins.append(libc.malloc(4096))
    for address in blocks:
        ctypes.memset(address, 1, block)  # make the pages resident
    for address in blocks:
        libc.free(address)
    held = rss_anon()
    trainer_module.release_free_heap()
    released = held - rss_anon()
    for address in pins:
        libc.free(address)
    assert released >= 12 * 2**20, f"released only {released / 2**20:.1f} MiB of 16 MiB freed"


def test_every_evaluation_batch_of_a_cpu_run_releases_the_heap_first(monkeypatch, tmp_path):
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForMaskedLM, TrainingArguments

    calls = []
    monkeypatch.setattr(trainer_module, "release_free_heap", lambda: calls.append(1))
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    torch.manual_seed(0)
    ids = torch.randint(5, 50, (6, 8)).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids, "attention_mask": [[1] * 8] * 6})
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, use_cpu=True, report_to=[], disable_tqdm=True
    )
    trainer = trainer_module.HfllmTrainer(model=model, args=args, eval_dataset=data)
    trainer.evaluate()
    assert len(calls) == 3  # 6 rows in batches of 2
    assert sys.platform.startswith("linux")
