"""Causal-LM building blocks: the collator for packed blocks and instruction rows, the loss per token of
the whole step, evaluation outputs and metrics, the unigram baseline, and the document-isolation probe.

Packed documents: a block holds several documents, each ending with EOS. The collator restarts
position_ids after every EOS and passes no attention_mask; Transformers' masking_utils then finds the
packed sequences from the position ids (find_packed_sequence_indices) and masks attention between
them, for SDPA and eager attention, in the model families that build their mask with
create_causal_mask(position_ids=...) (gpt2, llama, qwen2, mistral, gpt_neox, phi3, gemma...; not opt).
`documents_isolated(model)` checks a given model instead of trusting a list. Training must run with
use_cache off (the Trainer's default): with a cache, masking_utils does not look for packing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

IGNORE_INDEX = -100


def position_ids_for(input_ids: np.ndarray, eos_token_id: int) -> np.ndarray:
    """Return position ids that restart at 0 after every EOS token (one row of a packed block)."""
    ids = np.asarray(input_ids)
    starts = np.zeros(len(ids), dtype=bool)
    starts[0] = True
    starts[1:] = ids[:-1] == eos_token_id
    index = np.arange(len(ids))
    last_start = np.maximum.accumulate(np.where(starts, index, 0))
    return index - last_start


@dataclass
class CausalLMCollator:
    """Pad rows on the right into a batch of input_ids, labels (-100 on padding) and position_ids.

    Rows are packed pretraining blocks (labels = input_ids), instruction rows (their own `labels`),
    or packed instruction rows (their own `position_ids`). With `reset_at_eos`, positions restart
    after each EOS and the first token of each document gets no label: it would be predicted from
    the previous document, which it cannot see. Label 0 of every row is -100 too: nothing predicts
    it, so the Trainer's count of the step's tokens is the same whichever way it counts.
    No attention_mask: padding sits at the end, where causal attention never looks back from a real
    token, and a mask would stop Transformers from reading the packing from the position ids.
    """

    pad_token_id: int
    eos_token_id: int | None = None
    reset_at_eos: bool = True
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [np.asarray(e["input_ids"], dtype=np.int64) for e in examples]
        width = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        positions = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1))
        explicit = any("position_ids" in e for e in examples)
        resets = explicit or (self.reset_at_eos and self.eos_token_id is not None)
        for i, (row, example) in enumerate(zip(rows, examples, strict=True)):
            n = len(row)
            input_ids[i, :n] = row
            own = example.get("labels")
            labels[i, :n] = row if own is None else np.asarray(own, dtype=np.int64)
            if "position_ids" in example:
                positions[i, :n] = np.asarray(example["position_ids"], dtype=np.int64)
            elif resets and own is None and self.eos_token_id is not None:
                positions[i, :n] = position_ids_for(row, self.eos_token_id)
            if resets:
                labels[i, :n][positions[i, :n] == 0] = IGNORE_INDEX
        labels[:, 0] = IGNORE_INDEX
        batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels)}
        if resets:
            batch["position_ids"] = torch.from_numpy(positions)
        return batch


def causal_lm_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Return the next-token loss: summed over labelled tokens, divided by the labelled tokens of the whole
    optimizer step (all accumulation steps and processes) when the Trainer counts them.

    As mlm_loss does for masked LM, this makes N processes x batch B train like one process with
    batch N x B. The Trainer counts labels[..., 1:] for causal models; label 0 is always -100 here,
    so the count is the same either way.
    """
    import torch

    logits = outputs["logits"][:, :-1]
    targets = labels[:, 1:].to(logits.device)
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return total / torch.clamp(torch.as_tensor(count, device=total.device), min=1)


def causal_eval_outputs(logits: Any, labels: Any) -> tuple[Any, Any, Any]:
    """Return (summed NLL, labelled tokens, correct next-token guesses) per row of one evaluation batch.

    Per-row sums (not logits) cross the processes: the split's loss is then a mean over every
    labelled token, whatever the batch size or number of processes (see mlm_eval_outputs).
    """
    import torch

    if isinstance(logits, tuple):
        logits = logits[0]
    logits, targets = logits[:, :-1].float(), labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    labelled = targets != IGNORE_INDEX
    correct = (logits.argmax(dim=-1) == targets) & labelled
    return nll.sum(dim=-1), labelled.sum(dim=-1), correct.sum(dim=-1)


def causal_metrics(eval_pred: Any) -> dict[str, float]:
    """Return token_loss (mean NLL per labelled token over the split), perplexity and next_token_accuracy."""
    nll_sums, counts, correct = eval_pred.predictions
    tokens = float(np.sum(counts))
    loss = float(np.sum(nll_sums)) / tokens if tokens else float("nan")
    return {
        "token_loss": loss,
        "perplexity": perplexity(loss),
        "next_token_accuracy": float(np.sum(correct)) / tokens if tokens else 0.0,
        "tokens": tokens,
    }


def perplexity(loss: float | None) -> float | None:
    """Return exp(loss), inf for a diverged run instead of an overflow."""
    if loss is None or math.isnan(loss):
        return loss
    return math.exp(loss) if loss < 700 else float("inf")


def causal_unigram_perplexity(train: Any, validation: Any, vocab_size: int, skip_ids: list[int]) -> float:
    """Return the perplexity of predicting each validation token from train-split token frequencies.

    The baseline a causal LM must beat. EOS counts (the model predicts it); pad and BOS do not
    (`skip_ids`), nor anything the data has no tokens for. Add-one smoothing keeps unseen tokens finite.
    """
    from hfllm.tasks.masked_lm import token_counts

    counts = token_counts(train, vocab_size, skip_ids)
    log_probs = np.log((counts + 1) / (counts.sum() + vocab_size))
    seen = token_counts(validation, vocab_size, skip_ids)
    total = seen.sum()
    return float(math.exp(-(seen * log_probs).sum() / total)) if total else float("nan")


def unigram_skip_ids(tokenizer: Any) -> list[int]:
    """Return the ids the unigram baseline leaves out: every special token but EOS."""
    return [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]


def documents_isolated(model: Any, eos_token_id: int | None = None) -> bool | None:
    """Return whether `model` keeps packed documents apart when position ids restart at each EOS.

    Runs the model on two tiny blocks whose first documents differ and compares the logits of the
    second document. None when the probe cannot run (e.g. an attention kernel that needs a GPU).
    """
    import torch

    vocab = model.get_input_embeddings().num_embeddings
    eos = eos_token_id if eos_token_id is not None else (model.config.eos_token_id or 0)
    eos = eos[0] if isinstance(eos, list) else eos
    first = [[(3 + i) % vocab, (5 + i) % vocab, (7 + i) % vocab] for i in (0, 4)]
    second = [(11 + i) % vocab for i in range(4)]
    rows = torch.tensor([f + [eos] + second for f in first])
    device = next(model.parameters()).device
    positions = torch.tensor([list(range(4)) + list(range(4))] * 2)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(
                input_ids=rows.to(device), position_ids=positions.to(device), use_cache=False
            ).logits[:, 4:]
    except Exception:  # an attention kernel or device the probe cannot use here
        return None
    finally:
        model.train(was_training)
    return bool(torch.allclose(logits[0].float(), logits[1].float(), atol=1e-4, rtol=1e-4))


def causal_trainer_parts(tokenizer: Any, reset_at_eos: bool) -> dict[str, Any]:
    """Return the Trainer arguments of a causal-LM recipe: the collator, the loss per token of the whole
    step, and the evaluation outputs and metrics (loss per token over the split, next-token accuracy)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {
        "data_collator": CausalLMCollator(pad, tokenizer.eos_token_id, reset_at_eos=reset_at_eos),
        "compute_loss_func": causal_lm_loss,
        "compute_metrics": causal_metrics,
        "preprocess_logits_for_metrics": causal_eval_outputs,
    }
