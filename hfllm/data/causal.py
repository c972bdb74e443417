"""What a causal (GPT-style) language model needs of a tokenizer: an end-of-text token, a pad token, and
one rule for the ids that open a text, shared by preprocess (documents) and generate (prompts)."""

from __future__ import annotations

from typing import Any

from hfllm.errors import InputError
from hfllm.output import log


def check_causal_tokenizer(tokenizer: Any, where: str) -> None:
    """Raise InputError when `tokenizer` has no end-of-text (EOS) token to end documents with."""
    if tokenizer.eos_token_id is None:
        raise InputError(
            f"{where}: the tokenizer has no end-of-text token (eos_token), which causal language models "
            "need between documents and to stop generating",
            "use a GPT-2/Llama-style tokenizer, or train one (tokenizer.train.type: bpe)",
        )


def ensure_pad_token(tokenizer: Any) -> None:
    """Give `tokenizer` a pad token for batching: its EOS when it has none (GPT-2 and Llama ship none).

    Padding never reaches the loss (labels are -100 there), so reusing EOS costs nothing, and it adds
    no token: the vocabulary, and the data's tokenizer fingerprint, stay those of the source.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
        log.info("the tokenizer has no pad token: padding with its EOS token %r", tokenizer.eos_token)


def text_prefix(tokenizer: Any) -> list[int]:
    """Return the ids the tokenizer puts before a text of its own accord (Llama: [BOS]; GPT-2: none).

    A causal document starts with them and a generation prompt too, so the model sees at inference
    what it saw in training. Found by encoding a probe with and without special tokens.
    """
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            prefix = full[:start]
            return [] if prefix == [tokenizer.eos_token_id] else prefix
    return []


def encode_prompt(tokenizer: Any, text: str, prefix: list[int] | None = None) -> list[int]:
    """Return the ids of a plain-text prompt: the tokenizer's text prefix, then the text.

    Special-token strings typed in the text stay text (split_special_tokens), as in preprocess,
    which tokenizes documents the same way.
    """
    prefix = text_prefix(tokenizer) if prefix is None else prefix
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    return list(prefix) + list(ids)


def stop_token_ids(tokenizer: Any, extra: Any = None) -> list[int]:
    """Return the ids that end a generation: EOS, a chat template's end-of-turn token, and `extra`."""
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id, *_as_list(extra)]
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        if token in tokenizer.get_vocab() and (tokenizer.chat_template or "").find(token) >= 0:
            candidates.append(tokenizer.convert_tokens_to_ids(token))
    for token_id in candidates:
        if token_id is not None and int(token_id) not in ids:
            ids.append(int(token_id))
    return ids


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
