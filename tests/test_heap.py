"""The C heap's free pages go back to the kernel before each evaluation batch of a CPU run."""

from __future__ import annotations

import ctypes

import pytest

from hfllm.analysis.devices import status_bytes
from hfllm.train import trainer as trainer_module

pytestmark = pytest.mark.skipif(trainer_module._malloc_trim() is None, reason="needs glibc (malloc_trim)")


def test_free_heap_pages_are_returned():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = 64 * 1024  # under glibc's mmap threshold: served from the heap, kept there after free()
    # 32 MiB of blocks; every other one is freed, so each freed block is a hole between two live ones
    # (no coalescing, nothing free at the heap's top for free() itself to give back).
    blocks = [libc.malloc(block) for _ in range(512)]
    for address in blocks:
        ctypes.memset(address, 1, block)  # make the pages resident
    for address in blocks[::2]:
        libc.free(address)
    held = status_bytes("RssAnon")
    trainer_module.release_free_heap()
    released = held - status_bytes("RssAnon")
    for address in blocks[1::2]:
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
