"""`hfllm generate`: prompts in (one per line), one JSON line out per prompt, in input order, batched.

Input lines are plain text prompts, or JSON objects with `prompt` (text) or `messages` (a chat:
[{role, content}, ...]) and an optional `id` that is echoed. Output records:
`{"line", "id"?, "completion", "new_tokens", "finish_reason": "stop"|"length"|"eos"}`.

Batches are left-padded and decoded with the KV cache by Transformers' generate(). Sampling draws
each row's tokens from a generator seeded by (seed, line number): a line's completion depends on
the seed and the line, not on which other lines shared its batch (which timing decides when
reading a live stream). A bad line (empty, broken JSON, no prompt) is reported on stderr with its
number and skipped, or ends the run with exit 3 under --strict after everything before it was
written; a prompt longer than the context keeps its last tokens, with a warning.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, InputError
from hfllm.inference.decoding import completion_stops, sampling_processors, stop_aware_streamer
from hfllm.inference.stream import line_batches, line_text, open_input, read_first
from hfllm.output import log

FINISH_REASONS = ("stop", "length", "eos")
DEFAULT_NEW_TOKENS = 64


@dataclass
class Settings:
    """How to generate: length, greedy or sampling, stop strings, seed, chat template use."""

    max_new_tokens: int | None = None  # None: 64, or half the model's context when that is smaller
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 42
    chat: str = "auto"  # auto: the chat template when the tokenizer has one; always; never


@dataclass
class Prompt:
    """One good input line."""

    line: int
    text: str | None = None
    messages: list[dict[str, str]] | None = None
    id: Any = None


@dataclass
class Stats:
    lines: int = 0
    generated: int = 0
    new_tokens: int = 0
    truncated: int = 0
    seconds: float = 0.0
    bad: list[int] = field(default_factory=list)


def parse_line(raw: str, number: int) -> Prompt:
    """Return the Prompt of one input line; raise ValueError saying what is wrong with it."""
    from hfllm.data.chat import parse_messages

    text = line_text(raw)
    if not text.lstrip().startswith("{"):
        return Prompt(number, text=text)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    if "messages" in record:
        messages = parse_messages(record["messages"])
        if messages[-1]["role"] == "assistant":
            raise ValueError("the last message is the assistant's: end the chat with a user message")
        return Prompt(number, messages=messages, id=record.get("id"))
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('JSON line without a non-empty string "prompt" (or a "messages" list)')
    return Prompt(number, text=prompt, id=record.get("id"))


class Generator:
    """A loaded causal LM and the settings that turn Prompts into output records."""

    def __init__(self, model_dir: Path, settings: Settings, batch_size: int, strict: bool = False):
        from hfllm.data.causal import stop_token_ids, text_prefix
        from hfllm.data.cleaning import inference_cleaner
        from hfllm.models.causal import context_length, load_causal_lm
        from hfllm.models.loader import resolve

        self.model, self.tokenizer = load_causal_lm(Path(model_dir))
        # Plain prompts are cleaned as the pretraining text was (model/cleaning.json); chats never were.
        self.clean = inference_cleaner(resolve(str(model_dir), "--model").location)
        self.settings, self.batch_size, self.strict = settings, batch_size, strict
        self.device = next(self.model.parameters()).device
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.prefix = text_prefix(self.tokenizer)
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)
        if not self.stop_ids:
            log.warning("the model has no end-of-text token: every completion runs to max_new_tokens")
        self.context = context_length(self.model)
        if settings.max_new_tokens is None:
            settings.max_new_tokens = min(DEFAULT_NEW_TOKENS, (self.context or 2 * DEFAULT_NEW_TOKENS) // 2)
        if self.context is not None and settings.max_new_tokens >= self.context:
            raise ConfigError(
                f"--max-new-tokens {settings.max_new_tokens} does not fit the model's context of "
                f"{self.context} tokens (prompt included)",
                f"use --max-new-tokens below {self.context}",
            )
        self.use_chat = settings.chat == "always" or (
            settings.chat == "auto" and bool(self.tokenizer.chat_template)
        )
        if settings.chat == "always" and not self.tokenizer.chat_template:
            raise InputError(
                f"{model_dir}: --chat always, but the tokenizer has no chat template",
                "use --chat auto (plain prompts), or a model fine-tuned with task: causal-lm",
            )

    def prompt_ids(self, item: Prompt) -> list[int]:
        """Return the token ids of a prompt (chat template applied when it is a chat or chat mode is on)."""
        from hfllm.data.causal import encode_prompt
        from hfllm.data.chat import render_chat

        messages = item.messages
        if messages is None and self.use_chat:
            messages = [{"role": "user", "content": item.text}]
        if messages is None:
            return encode_prompt(self.tokenizer, self.clean(item.text), self.prefix)
        if not self.tokenizer.chat_template:
            raise ValueError("a `messages` chat needs a chat template, and this model's tokenizer has none")
        text = render_chat(self.tokenizer, messages, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def fit(self, ids: list[int], item: Prompt, name: str) -> tuple[list[int], bool]:
        """Return the ids cut to the context left for the prompt (its last tokens kept), and whether they were."""
        if self.context is None:
            return ids, False
        budget = self.context - self.settings.max_new_tokens
        if len(ids) <= budget:
            return ids, False
        message = (
            f"{name}:{item.line}: the prompt has {len(ids)} tokens; with --max-new-tokens "
            f"{self.settings.max_new_tokens} only {budget} fit the model's context of {self.context}"
        )
        if self.strict:
            raise InputError(
                message, "shorten the prompt or lower --max-new-tokens (or drop --strict to truncate)"
            )
        log.warning("%s: keeping its last %d tokens", message, budget)
        keep = self.prefix if ids[: len(self.prefix)] == self.prefix else []
        return keep + ids[len(ids) - budget + len(keep) :], True

    def generation_config(self):
        from transformers import GenerationConfig

        s = self.settings
        return GenerationConfig(
            max_new_tokens=s.max_new_tokens,
            do_sample=False,  # sampling is done by RowSampler below, greedy picks its choice
            num_beams=1,
            repetition_penalty=s.repetition_penalty,
            eos_token_id=self.stop_ids or None,
            pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
        )

    def generate(self, items: list[Prompt], rows: list[list[int]], streamer=None) -> list[dict[str, Any]]:
        """Return one output record per item, in order, generating all rows as one left-padded batch."""
        import torch

        padded = self.tokenizer.pad({"input_ids": rows}, return_tensors="pt", padding=True)
        width = padded["input_ids"].shape[1]
        kwargs: dict[str, Any] = {"generation_config": self.generation_config(), "streamer": streamer}
        if self.settings.stop:
            kwargs["stopping_criteria"] = completion_stops(self.tokenizer, self.settings.stop, width)
        if self.settings.sample:
            kwargs["logits_processor"] = sampling_processors(self.settings, [i.line for i in items])
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=padded["input_ids"].to(self.device),
                attention_mask=padded["attention_mask"].to(self.device),
                **kwargs,
            )
        new = out[:, width:].tolist()
        return [self.record(item, tokens) for item, tokens in zip(items, new, strict=True)]

    def record(self, item: Prompt, tokens: list[int]) -> dict[str, Any]:
        """Return the output record of one row: the completion cut at EOS or a stop string, and why it ended."""
        end = next(
            (i for i, t in enumerate(tokens) if t in self.stop_ids or t == self.tokenizer.pad_token_id), None
        )
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in self.settings.stop) if p >= 0), default=-1)
        if cut >= 0:
            reason, text = "stop", text[:cut]
            count = end if end is not None else len(tokens)
        elif end is not None and tokens[end] in self.stop_ids:
            reason, count = "eos", end + 1
        else:
            reason, count = "length", len(tokens) if end is None else end
        record: dict[str, Any] = {"line": item.line}
        if item.id is not None:
            record["id"] = item.id
        record.update(completion=text, new_tokens=count, finish_reason=reason)
        return record


def run_generate(
    model_dir: Path,
    source: str = "-",
    settings: Settings | None = None,
    batch_size: int = 16,
    strict: bool = False,
    prompt: str | None = None,
    stream: bool = False,
    out=None,
) -> Stats:
    """Write one JSON line per good prompt to `out` (stdout), batch by batch; return the counts.

    `prompt` gives one prompt instead of reading `source`; `stream` prints that one completion's
    text as it is generated instead of a JSON line.
    """
    settings = settings or Settings()
    out = out or sys.stdout
    name = "<stdin>" if source == "-" else source
    stats = Stats()
    hint = "give a file of prompts (one per line, or JSON lines with `prompt` or `messages`), or - for stdin"
    with open_input(source, hint) if prompt is None else _single(prompt) as lines:
        first = read_first(lines, name if prompt is None else "--prompt", "generate")
        generator = Generator(Path(model_dir), settings, batch_size, strict)
        if stream:
            return _stream_one(generator, itertools.chain([first], lines), name, out, stats)
        try:
            for batch in line_batches(itertools.chain([first], lines), batch_size):
                _run_batch(generator, batch, name, out, stats)
        except BrokenPipeError:  # e.g. `| head`: the reader has what it wanted; exit quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return stats
    if stats.generated == 0:
        raise InputError(f"{name}: none of the {stats.lines} line(s) could be used (see the messages above)")
    log.info(
        "generated %d completion(s), %d new tokens in %.1f s (%.1f new tokens/s), %d line(s) skipped",
        stats.generated,
        stats.new_tokens,
        stats.seconds,
        stats.new_tokens / max(stats.seconds, 1e-9),
        len(stats.bad),
    )
    return stats


def _single(prompt: str):
    import contextlib
    import io

    return contextlib.nullcontext(io.StringIO(json.dumps({"prompt": prompt}) + "\n"))


def _run_batch(generator: Generator, batch: list[tuple[int, str]], name: str, out, stats: Stats) -> None:
    """Generate and write one batch of raw lines; under --strict a bad line ends the run after the good
    lines before it were written."""
    items, rows, failure = [], [], None
    for number, raw in batch:
        stats.lines = number
        try:
            item = parse_line(raw, number)
            ids, cut = generator.fit(generator.prompt_ids(item), item, name)
        except ValueError as exc:
            if generator.strict:
                failure = InputError(
                    f"{name}:{number}: {exc}", "fix the line, or drop --strict to skip bad lines"
                )
                break
            stats.bad.append(number)
            sys.stderr.write(f"hfllm: {name}:{number}: skipped: {exc}\n")
            continue
        except InputError as exc:  # a prompt too long under --strict
            failure = exc
            break
        stats.truncated += cut
        items.append(item)
        rows.append(ids)
    if items:
        started = time.perf_counter()
        records = generator.generate(items, rows)
        stats.seconds += time.perf_counter() - started
        out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        out.flush()
        stats.generated += len(records)
        stats.new_tokens += sum(r["new_tokens"] for r in records)
    if failure is not None:
        raise failure


def _stream_one(generator: Generator, lines, name: str, out, stats: Stats) -> Stats:
    """Generate one prompt and print its text as it comes (--stream); more than one prompt is an error."""
    prompts = [(n, raw) for n, raw in enumerate(lines, start=1) if raw.strip()]
    if len(prompts) != 1:
        raise ConfigError(
            f"--stream takes exactly one prompt; {name} has {len(prompts)}",
            "drop --stream to generate for each line",
        )
    number, raw = prompts[0]
    try:
        item = parse_line(raw, number)
        ids, _ = generator.fit(generator.prompt_ids(item), item, name)
    except ValueError as exc:
        raise InputError(f"{name}:{number}: {exc}") from None
    streamer = stop_aware_streamer(generator.tokenizer, generator.settings.stop, out)
    started = time.perf_counter()
    record = generator.generate([item], [ids], streamer=streamer)[0]
    stats.seconds = time.perf_counter() - started
    stats.lines = stats.generated = 1
    stats.new_tokens = record["new_tokens"]
    log.info(
        "%d new tokens in %.1f s, finish_reason %s",
        record["new_tokens"],
        stats.seconds,
        record["finish_reason"],
    )
    return stats


def complete(model_dir: Path, prompts: list[str], settings: Settings | None = None) -> list[dict[str, Any]]:
    """Return the completion record of each prompt (the same records `hfllm generate` prints), in order."""
    generator = Generator(Path(model_dir), settings or Settings(), batch_size=max(len(prompts), 1))
    items = [Prompt(line=i + 1, text=text) for i, text in enumerate(prompts)]
    rows = [generator.fit(generator.prompt_ids(item), item, "prompts")[0] for item in items]
    return generator.generate(items, rows)
