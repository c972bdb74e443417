"""hfllm's speed defaults keep training exact: dropout off while pretraining (and back in the saved
config), and a crash-and-resume that equals the uninterrupted run with the sparse head, no dropout and bf16."""

from __future__ import annotations

import pytest
from test_faults_training import MASKING, crash_and_resume, tiny  # noqa: F401  (tiny is a fixture)

from hfllm.models.scratch import dropout_keys, dropout_turned_off, restore_dropout, without_dropout


def test_new_models_pretrain_without_dropout_unless_the_config_sets_it():
    assert without_dropout("bert", {}) == {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    kept = without_dropout("bert", {"hidden_dropout_prob": 0.2, "hidden_size": 64})
    assert kept == {"hidden_dropout_prob": 0.2, "hidden_size": 64, "attention_probs_dropout_prob": 0.0}
    assert without_dropout("distilbert", {}) == {"dropout": 0.0, "attention_dropout": 0.0}
    # Heads pretraining does not train keep theirs; types with no dropout get nothing.
    assert "seq_classif_dropout" not in dropout_keys("distilbert") and dropout_keys("albert") == {}
    assert without_dropout("no-such-type", {"a": 1}) == {"a": 1}


def test_the_saved_config_gets_the_architecture_defaults_back():
    from transformers import AutoConfig

    config = AutoConfig.for_model("bert", **without_dropout("bert", {"attention_probs_dropout_prob": 0.05}))
    assert config.hidden_dropout_prob == 0.0
    assert dropout_turned_off("bert", {"attention_probs_dropout_prob": 0.05}) == ["hidden_dropout_prob"]
    restore_dropout(config, dropout_turned_off("bert", {"attention_probs_dropout_prob": 0.05}))
    assert config.hidden_dropout_prob == 0.1 and config.attention_probs_dropout_prob == 0.05


def make_trainer(tiny, out, bf16: bool):  # noqa: F811
    """Return (trainer, run dir): a 2-layer BERT with every speed default of a pretrain run."""
    from transformers import BertConfig, BertForMaskedLM, TrainingArguments, set_seed

    from hfllm.tasks.masked_lm import mlm_eval_outputs, mlm_loss, mlm_metrics
    from hfllm.tasks.mlm_collator import make_mlm_collator
    from hfllm.tasks.sparse_mlm import enable_sparse_head
    from hfllm.train.callbacks import CollatorEpochCallback
    from hfllm.train.rundir import RunDir
    from hfllm.train.trainer import HfllmTrainer

    tokenizer, data = tiny
    set_seed(0)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **sizes)
    model = BertForMaskedLM(BertConfig(**{**config.to_dict(), **without_dropout("bert", {})}))
    run = RunDir(out)
    args = TrainingArguments(
        output_dir=str(run.checkpoints),
        max_steps=6,
        save_steps=3,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        logging_steps=1,
        use_cpu=True,
        bf16=bf16,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        seed=0,
    )
    collator = make_mlm_collator(tokenizer, MASKING, seed=0)
    logit_dims: list[int] = []

    def loss(outputs, labels, num_items_in_batch=None):  # mlm_loss, recording what the head gave it
        logit_dims.append(outputs["logits"].dim())
        return mlm_loss(outputs, labels, num_items_in_batch)

    trainer = HfllmTrainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data.select(range(8)),
        data_collator=collator,
        compute_loss_func=loss,
        compute_metrics=mlm_metrics,
        preprocess_logits_for_metrics=mlm_eval_outputs,
        callbacks=[CollatorEpochCallback(collator)],
    )
    assert enable_sparse_head(trainer)
    trainer.logit_dims = logit_dims
    return trainer, run


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_resume_is_bitwise_exact_with_the_speed_defaults(tiny, tmp_path, bf16):  # noqa: F811
    """bf16 runs whatever the CPU (emulated where not native): exactness does not depend on speed."""
    from hfllm.train.trainer import train

    straight, resumed = crash_and_resume(lambda out: make_trainer(tiny, out, bf16), train, tmp_path)
    # The collator's batches (a BatchEncoding, not a dict) reach the sparse head: one row per masked token.
    assert straight.logit_dims and set(straight.logit_dims) == {2}
    assert resumed.evaluate()["eval_token_loss"] == pytest.approx(
        straight.evaluate()["eval_token_loss"], abs=0
    )
