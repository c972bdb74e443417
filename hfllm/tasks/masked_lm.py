"""Masked-LM metrics: masked-token accuracy without holding logits, perplexity, the unigram baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hfllm.tasks.names import IGNORE_INDEX

TOKEN_NLL = "token_nll"  # the model-output key under which mlm_loss leaves each masked token's NLL


def mlm_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Return the masked-LM loss: summed over masked tokens, divided by the masked tokens of the whole
    optimizer step (all accumulation steps and processes) when the Trainer counts them.

    The model's own loss is a mean over this process's tokens: under N processes the gradient is then
    a mean of means, not the gradient of one big batch, and with Transformers 5's
    average_tokens_across_devices it is even scaled by N. Passed as the Trainer's compute_loss_func,
    this makes N processes x batch B train like one process with batch N x B.

    2-D logits come from the sparse head (hfllm.tasks.sparse_mlm): one row per masked token, in the
    row-major order of `labels != IGNORE_INDEX`.
    """
    import torch

    logits = outputs["logits"]
    targets = labels[labels != IGNORE_INDEX] if logits.dim() == 2 else labels.reshape(-1)
    count = num_items_in_batch if num_items_in_batch is not None else (labels != IGNORE_INDEX).sum()
    if logits.dim() == 2 and not torch.is_grad_enabled():
        # Evaluation: keep each masked token's NLL for mlm_eval_outputs (the Trainer hands it the model
        # outputs after the loss), so the vocabulary-wide log-softmax runs once per batch, not twice.
        outputs[TOKEN_NLL] = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        total = outputs[TOKEN_NLL].sum()
    else:
        total = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            targets,
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
    return total / torch.clamp(torch.as_tensor(count, device=total.device), min=1)


def mlm_eval_outputs(logits: Any, labels: Any) -> tuple[Any, Any, Any]:
    """Return (predicted ids, summed NLL per row, masked tokens per row) of one evaluation batch.

    Evaluation keeps ids (8 bytes a token), not vocab-wide logits. The per-row sums make the
    evaluation loss a mean over every masked token of the split, whatever the batch size or the
    number of processes: the Trainer's own eval_loss averages batch means, and the batches (and
    the rows Accelerate repeats to even them out across processes) change with both.
    Sparse-head logits (2-D, one row per masked token) give the same three arrays; their predicted
    ids are 0 where nothing was masked (mlm_metrics reads masked positions only).
    """
    import torch

    nll = None
    if isinstance(logits, tuple):
        logits, nll = logits[0], logits[-1] if len(logits) > 1 and logits[-1].dim() == 1 else None
    if logits.dim() == 2:
        return _sparse_eval_outputs(logits, labels, nll)
    nll = torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return logits.argmax(dim=-1), nll.sum(dim=-1), (labels != IGNORE_INDEX).sum(dim=-1)


def _sparse_eval_outputs(logits: Any, labels: Any, nll: Any = None) -> tuple[Any, Any, Any]:
    import torch

    masked = labels != IGNORE_INDEX
    if nll is None:  # not computed by mlm_loss
        nll = torch.nn.functional.cross_entropy(logits.float(), labels[masked], reduction="none")
    predictions = torch.zeros_like(labels)
    predictions[masked] = logits.argmax(dim=-1)
    nll_rows = torch.zeros(labels.shape, dtype=nll.dtype, device=nll.device)
    nll_rows[masked] = nll
    return predictions, nll_rows.sum(dim=-1), masked.sum(dim=-1)


def mlm_metrics(eval_pred: Any) -> dict[str, float]:
    """Return masked_accuracy (share of masked tokens predicted exactly) and token_loss (mean NLL per
    masked token over the whole split)."""
    (predictions, nll_sums, counts), labels = eval_pred.predictions, eval_pred.label_ids
    masked = labels != IGNORE_INDEX
    total = int(masked.sum())
    correct = int((predictions[masked] == labels[masked]).sum()) if total else 0
    tokens = float(np.sum(counts))
    return {
        "masked_accuracy": correct / total if total else 0.0,
        "token_loss": float(np.sum(nll_sums)) / tokens if tokens else float("nan"),
    }


def eval_loss(entry: dict[str, Any]) -> float | None:
    """Return the evaluation loss of a Trainer metrics or log entry: the per-token one when present."""
    return entry.get("eval_token_loss", entry.get("eval_loss"))


def perplexity(loss: float | None) -> float | None:
    """Return exp(loss), capped so a diverged run reports inf instead of overflowing."""
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else float("inf")


def token_counts(dataset: Any, vocab_size: int, special_ids: list[int], batch_size: int = 4096) -> np.ndarray:
    """Return how often each token id occurs in `dataset` (special tokens not counted)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    column = dataset.data.table.column("input_ids")
    import pyarrow.compute as pc

    for chunk in column.chunks:
        ids = pc.list_flatten(chunk).to_numpy(zero_copy_only=False)
        counts += np.bincount(ids, minlength=vocab_size)[:vocab_size]
    counts[[i for i in special_ids if i < vocab_size]] = 0
    return counts


def unigram_log_probs(train: Any, vocab_size: int, special_ids: list[int]) -> np.ndarray:
    """Return add-one smoothed log frequencies of each token id in the train split."""
    counts = token_counts(train, vocab_size, special_ids)
    return np.log((counts + 1) / (counts.sum() + vocab_size))


def unigram_perplexity(train: Any, validation: Any, vocab_size: int, special_ids: list[int]) -> float:
    """Return the perplexity of predicting each validation token from train-split frequencies alone.

    The baseline a masked LM must beat: it knows which words are common, nothing about context.
    Add-one smoothing keeps tokens unseen in training finite.
    """
    log_probs = unigram_log_probs(train, vocab_size, special_ids)
    valid_counts = token_counts(validation, vocab_size, special_ids)
    total = valid_counts.sum()
    if total == 0:
        return float("nan")
    return float(math.exp(-(valid_counts * log_probs).sum() / total))
