"""The masked-LM collator: DataCollatorForLanguageModeling's padding, with masks that depend only on seed,
epoch and text, and a fixed number of them per sequence.

Why not the stock collator's masks:
- Its generator state is neither saved in checkpoints nor shared with dataloader workers, so a resumed
  run (or one with a different number of workers or processes) masks different tokens than an
  uninterrupted one. Here each example's masks are drawn from a generator seeded by
  hash(seed, epoch, token ids): a resumed run sees exactly the same masks.
- It chooses each token with probability mlm_probability, so the number of masked tokens changes from
  batch to batch. hfllm's sparse head (hfllm.tasks.sparse_mlm) computes the vocabulary-wide logits at
  the masked tokens only, so its largest tensors changed size every step; on a CPU the allocator could
  not reuse their memory and the resident set crept up over the run (the demo pretraining: 273-420 MiB
  above its start, against 208-251 MiB with a fixed count; bench/inspect_accuracy.py). Here, as in the
  original BERT (create_pretraining_data.py), each sequence gets exactly round(mlm_probability x its
  length) predictions, [CLS] and [SEP] counted in the length as BERT counts them, at least one and at
  most its non-special tokens: packed blocks then give every batch the same shapes.
Of the chosen tokens, mask_replace_prob become [MASK], random_replace_prob a random token, the rest stay
(80/10/10 by default). Whole-word masking chooses whole words until the count is reached, skipping a
word that would overshoot it (as BERT does).
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
        inputs, labels = batch["input_ids"].clone(), torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for row, example in enumerate(examples):
            generator = torch.Generator().manual_seed(
                example_seed(self.seed, self.epoch, example["input_ids"])
            )
            maskable = (special[row] == 0).nonzero().flatten()
            if len(maskable):
                count = min(len(maskable), max(1, round(self.mlm_probability * len(example["input_ids"]))))
                self._mask_row(inputs[row], labels[row], maskable, count, generator)
        batch["input_ids"], batch["labels"] = inputs, labels
        return batch

    def _mask_row(self, inputs: Any, labels: Any, maskable: Any, count: int, generator: Any) -> None:
        """Choose `count` of one sequence's tokens to predict (in place): their labels, then [MASK] / random / kept."""
        import torch

        chosen = self._choose(inputs, maskable, count, generator)
        labels[chosen] = inputs[chosen]
        draw = torch.rand(len(chosen), generator=generator)
        masked = chosen[draw < self.mask_replace_prob]
        random_share = self.mask_replace_prob + self.random_replace_prob
        replaced = chosen[(draw >= self.mask_replace_prob) & (draw < random_share)]
        inputs[replaced] = torch.randint(len(self.tokenizer), (len(replaced),), generator=generator)
        inputs[masked] = self.tokenizer.mask_token_id

    def _choose(self, ids: Any, maskable: Any, count: int, generator: Any) -> Any:
        """Return `count` random positions of `maskable`; under whole-word masking, whole words adding up to
        at most `count` tokens (at least one word)."""
        import torch

        if not self.whole_word_mask:
            return maskable[torch.randperm(len(maskable), generator=generator)[:count]]
        positions = maskable.numpy()
        starts = self.word_starts[np.minimum(ids[maskable].numpy(), len(self.word_starts) - 1)]
        starts[1:] |= np.diff(positions) != 1  # a special token or padding between two pieces ends a word
        starts[0] = True
        word = np.cumsum(starts) - 1  # the word of each maskable position
        sizes = np.bincount(word)
        taken, total = np.zeros(len(sizes), dtype=bool), 0
        for w in torch.randperm(len(sizes), generator=generator).tolist():
            if total + sizes[w] <= count or total == 0:
                taken[w], total = True, total + sizes[w]
            if total >= count:
                break
        return maskable[torch.from_numpy(taken[word])]


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
