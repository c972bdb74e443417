"""The sparse masked-LM head (hfllm.tasks.sparse_mlm) gives the dense head's loss, gradients and metrics."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hfllm.tasks.masked_lm import mlm_eval_outputs, mlm_loss  # noqa: E402
from hfllm.tasks.sparse_mlm import HEAD_INPUT, attach_sparse_head, unsupported_reason  # noqa: E402

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
EXTRA = {
    "distilbert": {"dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 2},
    "albert": {"embedding_size": 16},
}
EXTRA.update(electra={"embedding_size": 32}, convbert={"embedding_size": 32}, roformer={"embedding_size": 32})


def tiny_model(model_type: str, **overrides):
    from transformers import AutoConfig, AutoModelForMaskedLM

    torch.manual_seed(0)
    sizes = {**TINY, **EXTRA.get(model_type, {}), **overrides}
    config = AutoConfig.for_model(
        model_type, vocab_size=97, max_position_embeddings=64, pad_token_id=0, **sizes
    )
    return AutoModelForMaskedLM.from_config(config).eval()  # eval: no dropout, so both passes agree


def batch(seed: int = 0, rows: int = 4, length: int = 24):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 97, (rows, length), generator=generator)
    labels = torch.where(torch.rand(rows, length, generator=generator) < 0.15, input_ids, -100)
    labels[0, 3] = input_ids[0, 3]  # at least one masked token
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, -5:] = 0  # some padding, never masked
    labels[-1, -5:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask}, labels


def losses_and_grads(model, inputs, labels, sparse):
    model.zero_grad()
    head = attach_sparse_head(model) if sparse else None
    try:
        if head is None:
            outputs = model(**inputs)
        else:
            with head.only(labels != -100):
                outputs = model(**inputs)
    finally:
        if head is not None:
            head.remove()
    loss = mlm_loss(outputs, labels, num_items_in_batch=torch.tensor(37))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, outputs["logits"].detach()


@pytest.mark.parametrize("model_type", sorted(HEAD_INPUT))
def test_sparse_head_loss_and_gradients_equal_the_dense_head(model_type):
    model = tiny_model(model_type)
    assert unsupported_reason(model) is None
    inputs, labels = batch()
    dense_loss, dense_grads, dense_logits = losses_and_grads(model, inputs, labels, sparse=False)
    sparse_loss, sparse_grads, sparse_logits = losses_and_grads(model, inputs, labels, sparse=True)
    masked = labels != -100
    assert sparse_logits.shape == (int(masked.sum()), 97)
    assert abs(float(sparse_loss) - float(dense_loss)) < 1e-5
    assert dense_grads.keys() == sparse_grads.keys()
    for name, grad in dense_grads.items():
        assert torch.allclose(grad, sparse_grads[name], atol=1e-6, rtol=1e-4), name
    # Evaluation reads the same predicted ids, summed NLL and counts from either head.
    dense_eval = mlm_eval_outputs(dense_logits, labels)
    sparse_eval = mlm_eval_outputs(sparse_logits, labels)
    assert torch.equal(dense_eval[0][masked], sparse_eval[0][masked])
    assert torch.allclose(dense_eval[1], sparse_eval[1], atol=1e-5)
    assert torch.equal(dense_eval[2], sparse_eval[2])


def test_unsupported_types_keep_the_dense_head_and_say_why():
    model = tiny_model("bert")
    model.config.model_type = "modernbert"  # has its own sparse_prediction; not hooked here
    assert "not one of" in unsupported_reason(model)
    assert attach_sparse_head(model) is None


def test_the_hook_is_inert_outside_only_and_after_remove():
    model = tiny_model("bert")
    inputs, labels = batch()
    head = attach_sparse_head(model)
    assert model(**inputs).logits.shape == (4, 24, 97)
    with head.only(labels != -100):
        assert model(**inputs).logits.dim() == 2
    head.remove()
    with head.only(labels != -100):
        assert model(**inputs).logits.dim() == 3


def test_trainer_with_the_sparse_head_trains_like_the_dense_one(tmp_path):
    """A few Trainer steps (gradient accumulation, the step-wide masked-token count, evaluation)."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from hfllm.tasks.masked_lm import mlm_metrics
    from hfllm.tasks.sparse_mlm import enable_sparse_head
    from hfllm.train.trainer import HfllmTrainer

    rows = []
    for seed in range(12):
        inputs, labels = batch(seed, rows=1)
        rows.append({"input_ids": inputs["input_ids"][0], "attention_mask": inputs["attention_mask"][0]})
        rows[-1]["labels"] = labels[0]
    data = Dataset.from_list([{k: v.tolist() for k, v in r.items()} for r in rows])

    def run(sparse: bool):
        # No dropout: both runs must draw nothing at random.
        model = tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        args = TrainingArguments(
            output_dir=str(tmp_path / str(sparse)),
            max_steps=3,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            learning_rate=1e-2,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            seed=0,
        )
        trainer = HfllmTrainer(
            model=model,
            args=args,
            train_dataset=data,
            eval_dataset=data,
            compute_loss_func=mlm_loss,
            compute_metrics=mlm_metrics,
            preprocess_logits_for_metrics=mlm_eval_outputs,
        )
        if sparse:
            assert enable_sparse_head(trainer)
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        return losses, trainer.evaluate()

    dense_losses, dense_eval = run(False)
    entropy, calls = torch.nn.functional.cross_entropy, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            torch.nn.functional, "cross_entropy", lambda *a, **k: calls.append(1) or entropy(*a, **k)
        )
        sparse_losses, sparse_eval = run(True)
    # 3 steps x 2 accumulated batches, then evaluate()'s 2 batches (12 rows, 8 a batch): one
    # vocabulary-wide cross-entropy per batch, the evaluation loss and its metrics sharing it.
    assert len(calls) == 3 * 2 + 2
    assert sparse_losses == pytest.approx(dense_losses, abs=1e-5)
    for key in ("eval_token_loss", "eval_masked_accuracy", "eval_loss"):
        assert sparse_eval[key] == pytest.approx(dense_eval[key], abs=1e-5), key
