"""Fine-tuning pieces that need no training: outputs, compute_metrics, class weights, preprocess settings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hfllm.tasks.classification import make_compute_metrics, sequence_outputs
from hfllm.tasks.names import headline_metric


def test_sequence_outputs_per_problem_type():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    predictions, scores = sequence_outputs(logits, "single_label_classification")
    assert predictions.tolist() == [0, 1] and scores.sum(axis=1) == pytest.approx([1.0, 1.0])
    predictions, scores = sequence_outputs(logits, "multi_label_classification")
    assert predictions.tolist() == [[1, 1, 0], [1, 1, 1]]  # sigmoid(0) = 0.5 counts as on
    values, _ = sequence_outputs(np.array([[0.25], [-1.5]]), "regression")
    assert values.tolist() == [0.25, -1.5]


def test_compute_metrics_token_classification_ignores_minus_100():
    id2label = {0: "O", 1: "B-LANG", 2: "I-LANG"}
    logits = np.zeros((1, 5, 3))
    logits[0, np.arange(5), [0, 1, 2, 0, 1]] = 5.0
    labels = np.array([[-100, 1, 2, -100, 0]])  # position 3 is a continuation sub-token: not scored
    metrics = make_compute_metrics("token-classification", None, id2label)(
        SimpleNamespace(predictions=logits, label_ids=labels)
    )
    # words: B-LANG I-LANG O predicted as B-LANG I-LANG B-LANG: one entity right, one spurious.
    assert metrics["entity_recall"] == 1.0 and metrics["entity_precision"] == 0.5
    assert metrics["token_accuracy"] == pytest.approx(2 / 3)
    assert all(isinstance(v, float) for v in metrics.values())


def test_compute_metrics_drops_undefined_values():
    metrics = make_compute_metrics("sequence-classification", "regression", None)(
        SimpleNamespace(predictions=np.ones((4, 1)), label_ids=np.array([0.0, 1.0, 2.0, 3.0]))
    )
    assert "pearson" not in metrics and metrics["mse"] == pytest.approx((1 + 0 + 1 + 4) / 4)


def test_headline_metrics():
    assert headline_metric("token-classification", None) == "entity_f1"
    assert headline_metric("sequence-classification", "regression") == "mse"
    assert headline_metric("sequence-classification", None) == "f1_macro"


def test_balanced_class_weights():
    from datasets import Dataset

    from hfllm.data.labelled import class_weights

    train = Dataset.from_dict({"labels": [0, 0, 0, 1]})
    assert class_weights(train, 3, "balanced", "sequence-classification") == pytest.approx(
        [4 / 9, 4 / 3, 0.0]
    )
    tokens = Dataset.from_dict({"labels": [[-100, 0, 1, -100], [0, 0, -100, -100]]})
    assert class_weights(tokens, 2, "balanced", "token-classification") == pytest.approx([4 / 6, 4 / 2])
    assert class_weights(train, 2, [1.0, 2.0], "sequence-classification") == [1.0, 2.0]


def test_weighted_loss_equals_unweighted_with_unit_weights():
    import torch

    from hfllm.tasks.classification import weighted_cross_entropy

    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 1, -100, 0])
    plain = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100)
    ones = weighted_cross_entropy([1.0, 1.0, 1.0])({"logits": logits}, labels)
    assert ones.item() == pytest.approx(plain.item(), rel=1e-5)
    heavier = weighted_cross_entropy([1.0, 1.0, 10.0])({"logits": logits}, labels)
    assert heavier.item() > ones.item() or logits[2].argmax() == 2


def test_preprocess_settings_for_raw_files(tmp_path):
    from hfllm.config import validate_config
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.labelled import preprocess_config

    config = FinetuneConfig.model_validate(
        {
            "task": "token-classification",
            "label_all_tokens": True,
            "model": {"name_or_path": "m"},
            "data": {"files": ["a.jsonl"], "max_length": 48, "preprocess": {"split": {"test": 0.2}}},
        }
    )
    mapping = preprocess_config(config, "/models/m", tmp_path / "data")
    pre = validate_config(PreprocessConfig, mapping, {}, "test")
    assert pre.packing.mode == "supervised" and pre.packing.max_length == 48 and pre.packing.label_all_tokens
    assert (
        pre.tokenizer.name_or_path == "/models/m"
        and pre.split.test == 0.2
        and pre.task == "token-classification"
    )
