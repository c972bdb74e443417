"""Benchmark `hfllm generate` against a plain loop calling `model.generate` one prompt at a time; prints JSON.

Same model (a GPT-2-type model with random weights from a fixed seed, a byte-level BPE vocabulary
trained on the bundled corpus), same prompts (the first words of corpus lines), same settings
(greedy, max_new_tokens). Both sides count the tokens they generate (a row ends early at EOS);
new tokens/s is measured around generation only (the model is loaded once per side), each side
runs `--repeats` times, interleaved because the CPU may be shared, and medians are reported.
`outputs_equal` says whether both sides produced the same completions.

    .venv/bin/python bench/generate.py [--prompts 32] [--max-new-tokens 32] [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "hfllm" / "samples" / "corpus.txt"
MODEL = {"n_embd": 256, "n_layer": 4, "n_head": 4}
CONTEXT = 256


def build_model(out: Path, vocab_size: int) -> Path:
    """Write a random-weight GPT-2-type model with a BPE tokenizer trained on the corpus; return its dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from hfllm.data.causal import ensure_pad_token
    from hfllm.models.causal import build_causal_model, finalize_for_generation

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS.read_text(encoding="utf-8").splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    ensure_pad_token(tokenizer)
    torch.manual_seed(0)
    model = build_causal_model("gpt2", MODEL, tokenizer, CONTEXT)
    finalize_for_generation(model, tokenizer)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def prompts(n: int) -> list[str]:
    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [" ".join(line.split()[:6]) for line in lines[:n]]


def run_hfllm(model_dir: Path, path: Path, max_new_tokens: int, batch_size: int) -> tuple[dict, list[str]]:
    from hfllm.inference.generate import Settings, run_generate

    out = io.StringIO()
    stats = run_generate(
        model_dir, str(path), Settings(max_new_tokens=max_new_tokens), batch_size=batch_size, out=out
    )
    completions = [json.loads(line)["completion"] for line in out.getvalue().splitlines()]
    return {"new_tokens": stats.new_tokens, "seconds": stats.seconds}, completions


def run_plain(model, tokenizer, texts: list[str], max_new_tokens: int) -> tuple[dict, list[str]]:
    """What a user writes by hand: one model.generate call per prompt."""
    import torch

    completions, new_tokens = [], 0
    start = time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")
            out = model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            new = out[0, ids["input_ids"].shape[1] :]
            if (new == tokenizer.eos_token_id).any():
                new = new[: int((new == tokenizer.eos_token_id).nonzero()[0]) + 1]
            new_tokens += len(new)
            completions.append(tokenizer.decode(new, skip_special_tokens=True))
    return {"new_tokens": new_tokens, "seconds": time.perf_counter() - start}, completions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=4000)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfllm.output import setup_logging

    setup_logging(quiet=True)
    with tempfile.TemporaryDirectory(prefix="hfllm-bench-generate-") as tmp:
        model_dir = build_model(Path(tmp) / "model", args.vocab_size)
        texts = prompts(args.prompts)
        path = Path(tmp) / "prompts.txt"
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        runs: dict[str, list[dict]] = {"hfllm": [], "plain": []}
        outputs: dict[str, list[str]] = {}
        for _ in range(args.repeats):
            for side in ("plain", "hfllm"):
                if side == "hfllm":
                    result, outputs[side] = run_hfllm(model_dir, path, args.max_new_tokens, args.batch_size)
                else:
                    result, outputs[side] = run_plain(model, tokenizer, texts, args.max_new_tokens)
                result["tokens_per_second"] = result["new_tokens"] / max(result["seconds"], 1e-9)
                runs[side].append(result)
    summary = {
        side: {
            "new_tokens": rs[0]["new_tokens"],
            "seconds_median": statistics.median(r["seconds"] for r in rs),
            "tokens_per_second_median": statistics.median(r["tokens_per_second"] for r in rs),
            "tokens_per_second_runs": [round(r["tokens_per_second"], 1) for r in rs],
        }
        for side, rs in runs.items()
    }
    speedup = summary["hfllm"]["tokens_per_second_median"] / summary["plain"]["tokens_per_second_median"]
    report = {
        "benchmark": "generate",
        "model": {
            "type": "gpt2",
            **MODEL,
            "context": CONTEXT,
            "vocab_size": len(tokenizer),
            "weights": "random, seed 0",
        },
        "prompts": len(texts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "decoding": "greedy",
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        **summary,
        "outputs_equal": outputs["hfllm"] == outputs["plain"],
        "speedup_vs_plain": round(speedup, 2),
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
