"""hfllm's masked-LM collator: a fixed number of predictions per sequence (as the original BERT), drawn from
(seed, epoch, text) alone, with the 80/10/10 replacement and whole-word masking."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_pretrain import corpus_lines, group_texts, train_wordpiece

MASKING = SimpleNamespace(
    mlm_probability=0.15, whole_word_mask=False, mask_replace_prob=0.8, random_replace_prob=0.1
)
KEYS = ("input_ids", "attention_mask", "special_tokens_mask")


@pytest.fixture(scope="module")
def blocks():
    """A WordPiece tokenizer and 60 packed blocks of 64 tokens (documents separated by [SEP] [CLS])."""
    lines = corpus_lines(300)
    tokenizer = train_wordpiece(lines, vocab_size=400)
    data = group_texts(tokenizer, lines, 64)
    examples = [{k: data[k][i] for k in KEYS} for i in range(60)]
    return tokenizer, examples


def collate(tokenizer, examples, seed=0, **masking):
    from hfllm.tasks.mlm_collator import make_mlm_collator

    return make_mlm_collator(tokenizer, SimpleNamespace(**{**vars(MASKING), **masking}), seed=seed)(examples)


def test_every_sequence_gets_round_share_of_its_length_and_never_a_special_token(blocks):
    tokenizer, examples = blocks
    short = {k: v[:21] for k, v in examples[0].items()}  # padded to 64 in the batch: 21 tokens count
    batch = collate(tokenizer, [*examples[:16], short])
    labels, original = batch["labels"], np.array([e["input_ids"] for e in examples[:16]])
    counts = (labels != -100).sum(dim=1).tolist()
    assert counts == [round(0.15 * 64)] * 16 + [round(0.15 * 21)]  # 10 each, 3 in the short one
    special = np.array([e["special_tokens_mask"] for e in examples[:16]], dtype=bool)
    assert special.any(axis=1).sum() >= 4  # blocks where documents meet hold [CLS]/[SEP]...
    chosen = (labels[:16] != -100).numpy()
    assert not (chosen & special).any()  # ...and none is ever chosen
    assert (labels[:16].numpy()[chosen] == original[chosen]).all()  # the labels are the original ids
    assert (labels[16, 21:] == -100).all()  # nor is padding


def test_masks_depend_only_on_seed_epoch_and_text(blocks):
    import torch

    from hfllm.tasks.mlm_collator import make_mlm_collator

    tokenizer, examples = blocks
    first = collate(tokenizer, examples[:8])
    alone = collate(tokenizer, examples[3:4])  # one example, in another batch: the same masks
    assert torch.equal(first["labels"][3], alone["labels"][0])
    assert torch.equal(first["input_ids"][3], alone["input_ids"][0])
    assert not torch.equal(first["labels"], collate(tokenizer, examples[:8], seed=1)["labels"])
    collator = make_mlm_collator(tokenizer, MASKING, seed=0)
    collator.epoch = 1
    assert not torch.equal(first["labels"], collator(examples[:8])["labels"])
    with collator.for_evaluation():
        evaluation = collator(examples[:8])["labels"]
    collator.epoch = 7
    with collator.for_evaluation():
        assert torch.equal(evaluation, collator(examples[:8])["labels"])  # evaluation masks never change


def test_chosen_tokens_are_replaced_80_10_10(blocks):
    tokenizer, examples = blocks
    batch = collate(tokenizer, examples)
    chosen = batch["labels"] != -100
    inputs, labels = batch["input_ids"][chosen], batch["labels"][chosen]
    total = int(chosen.sum())
    masked = int((inputs == tokenizer.mask_token_id).sum()) / total
    kept = int((inputs == labels).sum()) / total
    assert total == 60 * 10
    assert 0.75 < masked < 0.85 and 0.05 < kept < 0.15  # 600 draws: 3 standard deviations either side
    nothing_random = collate(tokenizer, examples, mask_replace_prob=1.0, random_replace_prob=0.0)
    chosen = nothing_random["labels"] != -100
    assert (nothing_random["input_ids"][chosen] == tokenizer.mask_token_id).all()


def test_whole_word_masking_chooses_whole_words_up_to_the_count(blocks):
    from hfllm.tasks.mlm_collator import word_start_flags

    tokenizer, examples = blocks
    batch = collate(tokenizer, examples, whole_word_mask=True)
    starts = word_start_flags(tokenizer)
    pieces = 0
    for example, labels in zip(examples, batch["labels"], strict=True):
        ids = np.array(example["input_ids"])
        chosen = (labels != -100).numpy()
        assert 1 <= chosen.sum() <= round(0.15 * 64)
        # a word's continuation pieces are chosen exactly when the piece before them is
        continuation = ~starts[ids] & ~np.array(example["special_tokens_mask"], dtype=bool)
        continuation[0] = False
        assert (chosen[1:][continuation[1:]] == chosen[:-1][continuation[1:]]).all()
        pieces += int((chosen & continuation).sum())
    assert pieces > 0  # some multi-piece words were chosen whole, so the check above had work to do
    assert (batch["input_ids"][batch["labels"] != -100] == tokenizer.mask_token_id).all()  # no random ids


def test_a_tiny_share_still_predicts_one_token_per_sequence_and_the_loss_is_finite(blocks):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tokenizer, examples = blocks
    example = [{k: v[:6] for k, v in examples[0].items()}]
    batch = collate(tokenizer, example, mlm_probability=1e-9)
    masked = batch["labels"] != -100
    assert masked.sum() == 1
    assert batch["input_ids"][masked].item() == tokenizer.mask_token_id
    assert torch.equal(collate(tokenizer, example, mlm_probability=1e-9)["labels"], batch["labels"])
    model = BertForMaskedLM(
        BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    loss = model(**batch, num_items_in_batch=masked.sum()).loss
    assert torch.isfinite(loss)


def test_a_zero_share_is_refused_by_the_config():
    from pydantic import ValidationError

    from hfllm.config.schemas.pretrain import MaskingSection

    with pytest.raises(ValidationError, match="greater than 0"):
        MaskingSection(mlm_probability=0)
