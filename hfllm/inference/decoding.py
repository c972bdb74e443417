"""Decoding pieces of `hfllm generate`: per-line seeded sampling, stop strings judged on the completion,
and a streamer that prints text as it comes without ever printing a stop string."""

from __future__ import annotations

import hashlib
from typing import Any


def row_seed(seed: int, line: int) -> int:
    """Return the 63-bit sampling seed of one input line."""
    digest = hashlib.blake2b(f"{seed}:{line}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def completion_stops(tokenizer: Any, stops: list[str], prompt_width: int):
    """Return stopping criteria that end a row once its completion's text holds a stop string.

    Transformers' own stop_strings also match across the end of the prompt (a prompt ending in
    "e" and a stop "ee" stop after one "e"); here only the generated text counts, as in the output.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class CompletionStops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_width:], skip_special_tokens=True)
            hits = [any(stop in text for stop in stops) for text in texts]
            return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([CompletionStops()])


class RowSampler:
    """A logits processor that samples each row's next token with that row's own generator.

    It runs last (after repetition penalty, temperature, top-k and top-p) and leaves only the drawn
    token, which greedy decoding then takes: sampling that depends on (seed, line) alone.
    """

    def __init__(self, seeds: list[int]):
        self.seeds = seeds
        self.generators: list[Any] | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.stack(
            [torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(self.generators)]
        )
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen[:, None], 0.0)
        return out


def sampling_processors(settings: Any, lines: list[int]):
    """Return the logits processors of sampling: temperature, top-k, top-p, then the per-row sampler."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    processors = LogitsProcessorList()
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k > 0:
        processors.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(settings.top_p))
    processors.append(RowSampler([row_seed(settings.seed, line) for line in lines]))
    return processors


def stop_aware_streamer(tokenizer: Any, stops: list[str], out):
    """Return a TextStreamer that writes to `out` as tokens come, holding back what may start a stop string."""
    from transformers import TextStreamer

    class _Streamer(TextStreamer):
        def __init__(self):
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.pending, self.stopped = "", False
            self.hold = max((len(s) for s in stops), default=1) - 1

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if self.stopped:
                return
            self.pending += text
            cut = min((p for p in (self.pending.find(s) for s in stops) if p >= 0), default=-1)
            if cut >= 0:
                self.pending, self.stopped = self.pending[:cut], True
            keep = 0 if stream_end or self.stopped or not self.hold else self.hold
            split = max(len(self.pending) - keep, 0)
            ready, self.pending = self.pending[:split], self.pending[split:]
            out.write(ready + ("\n" if stream_end or self.stopped else ""))
            out.flush()

    return _Streamer()
