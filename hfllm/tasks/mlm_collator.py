"""The masked-LM collator: DataCollatorForLanguageModeling with masks that depend only on seed, epoch and text.

Why not the stock seeded collator: its generator state is neither saved in checkpoints nor shared
with dataloader workers, so a resumed run (or one with a different number of workers or processes)
masks different tokens than an uninterrupted one. Here each example's masks are drawn from a
generator seeded by hash(seed, epoch, token ids): a resumed run sees exactly the same masks, and the
masking itself is the library's own `torch_mask_tokens` (80/10/10, whole-word). A batch in which
nothing was masked gets one [MASK] token, so its loss is never 0/0 (NaN).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import numpy as np
from transformers import DataCollatorForLanguageModeling

from hfllm.tasks.names import IGNORE_INDEX

EVAL_EPOCH = -1  # evaluation masks never change, so eval losses are comparable across evaluations


def example_seed(seed: int, epoch: int, input_ids: Any) -> int:
    """Return a 63-bit seed derived from the masking seed, the epoch and one example's token ids."""
    digest = hashlib.blake2b(np.asarray(input_ids, dtype=np.int64).tobytes(), digest_size=8)
    digest.update(np.asarray([seed, epoch], dtype=np.int64).tobytes())
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def word_start_flags(tokenizer: Any) -> np.ndarray:
    """Return, per vocabulary id, whether that token starts a new word (for whole-word masking).

    The data dir has no offset mapping, so word boundaries come from the vocabulary's own marks:
    WordPiece continues words with "##"; byte-level BPE ("Ġ") and SentencePiece ("▁") mark word starts.
    """
    vocab = tokenizer.get_vocab()
    starts = np.ones(max(vocab.values()) + 1, dtype=bool)
    tokens = list(vocab)
    if any(t.startswith("##") for t in tokens):
        for token, idx in vocab.items():
            starts[idx] = not token.startswith("##")
    elif any(t.startswith(("Ġ", "▁")) for t in tokens):
        for token, idx in vocab.items():
            starts[idx] = token.startswith(("Ġ", "▁")) or idx in tokenizer.all_special_ids
    return starts


class MLMCollator(DataCollatorForLanguageModeling):
    """DataCollatorForLanguageModeling whose masks are a pure function of (seed, epoch, example)."""

    epoch: int = 0
    word_starts: np.ndarray | None = None

    @contextlib.contextmanager
    def for_evaluation(self):
        """Use the fixed evaluation masks inside the block (the Trainer hook calls this)."""
        saved, self.epoch = self.epoch, EVAL_EPOCH
        try:
            yield self
        finally:
            self.epoch = saved

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from transformers.data.data_collator import pad_without_fast_tokenizer_warning

        batch = pad_without_fast_tokenizer_warning(
            self.tokenizer, examples, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of
        )
        special = batch.pop("special_tokens_mask", None)
        if special is None:
            special = torch.tensor(
                [
                    self.tokenizer.get_special_tokens_mask(r, already_has_special_tokens=True)
                    for r in batch["input_ids"].tolist()
                ]
            )
        special = special | (batch["attention_mask"] == 0).long() if "attention_mask" in batch else special
        inputs, labels = [], []
        for row, row_special, example in zip(batch["input_ids"], special, examples, strict=True):
            self.generator = torch.Generator().manual_seed(
                example_seed(self.seed, self.epoch, example["input_ids"])
            )
            offsets = self._offsets(row) if self.whole_word_mask else None
            masked, label = self.torch_mask_tokens(row[None].clone(), row_special[None], offsets)
            inputs.append(masked)
            labels.append(label)
        inputs, labels = torch.cat(inputs), torch.cat(labels)
        if not (labels != IGNORE_INDEX).any():
            self._mask_one(batch["input_ids"], inputs, labels, special, examples)
        batch["input_ids"], batch["labels"] = inputs, labels
        return batch

    def _mask_one(self, original: Any, inputs: Any, labels: Any, special: Any, examples: Any) -> None:
        """Mask one token of a batch in which nothing was masked (its loss would be 0/0 = NaN).

        The token is drawn from the same (seed, epoch, example) hash, so resumed runs agree.
        """
        import torch

        candidates = (special == 0).nonzero()
        if len(candidates) == 0:
            return  # only special tokens and padding: nothing can be predicted
        first = np.concatenate([np.asarray(e["input_ids"]).ravel() for e in examples])
        generator = torch.Generator().manual_seed(example_seed(self.seed, self.epoch, first))
        row, col = candidates[torch.randint(len(candidates), (1,), generator=generator).item()].tolist()
        labels[row, col] = original[row, col]
        inputs[row, col] = self.tokenizer.mask_token_id

    def _offsets(self, row: Any) -> np.ndarray:
        """Synthetic character offsets where the pieces of a word touch and words are one apart."""
        ids = row.numpy()
        starts = self.word_starts[np.minimum(ids, len(self.word_starts) - 1)]
        begin = np.cumsum(starts.astype(np.int64)) + np.arange(len(ids))
        return np.stack([begin, begin + 1], axis=1)[None]


def make_mlm_collator(tokenizer: Any, masking: Any, seed: int, pad_to_multiple_of: int | None = None):
    """Return an `MLMCollator` for `tokenizer` with the settings of a `masking:` config section."""
    # Transformers turns random replacement off under whole-word masking (with a warning); say it once here.
    replace = (
        (1.0, 0.0) if masking.whole_word_mask else (masking.mask_replace_prob, masking.random_replace_prob)
    )
    collator = MLMCollator(
        tokenizer=tokenizer,
        mlm=True,
        mlm_probability=masking.mlm_probability,
        whole_word_mask=masking.whole_word_mask,
        mask_replace_prob=replace[0],
        random_replace_prob=replace[1],
        pad_to_multiple_of=pad_to_multiple_of,
        seed=seed,
    )
    if masking.whole_word_mask:
        collator.word_starts = word_start_flags(tokenizer)
    return collator
