"""The local metric modules: hand-computed values, and agreement with scikit-learn / scipy."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from hfllm.metrics import compute, metric_path

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_every_metric_loads_offline_from_the_package():
    for name in ("classification", "multilabel", "regression", "entities", "masked_lm"):
        assert metric_path(name).is_file()
        # evaluate reads the import lines to find dependencies: one import per line.
        for line in metric_path(name).read_text().splitlines():
            assert not (line.startswith("import ") and "," in line), f"{name}: {line}"


def test_classification_hand_computed():
    # gold 0 1 1 1 2, pred 0 1 2 1 1: class 0 P=1 R=1; class 1 P=2/3 R=2/3; class 2 P=0 R=0.
    result = compute("classification", predictions=[0, 1, 2, 1, 1], references=[0, 1, 1, 1, 2])
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["per_class"]["1"] == {
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
        "support": 3,
    }
    assert result["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert result["f1_weighted"] == pytest.approx((1 * 1 + 3 * 2 / 3 + 0) / 5)
    assert result["f1_micro"] == pytest.approx(3 / 5)
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [0, 1, 0]]


def test_classification_matches_sklearn_on_random_labels():
    rng = random.Random(0)
    gold = [rng.randrange(5) for _ in range(300)]
    pred = [g if rng.random() < 0.6 else rng.randrange(6) for g in gold]  # class 5 is predicted, never gold
    result = compute("classification", predictions=pred, references=gold)
    assert result["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, pred))
    assert result["mcc"] == pytest.approx(sklearn_metrics.matthews_corrcoef(gold, pred))
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            gold, pred, average=average, zero_division=0
        )
        assert result[f"precision_{average}"] == pytest.approx(p)
        assert result[f"recall_{average}"] == pytest.approx(r)
        assert result[f"f1_{average}"] == pytest.approx(f)
    per_class = sklearn_metrics.f1_score(gold, pred, average=None, zero_division=0)
    assert [result["per_class"][str(c)]["f1"] for c in range(6)] == pytest.approx(list(per_class))


def test_classification_mcc_is_zero_when_undefined_and_label_names_are_used():
    result = compute(
        "classification", predictions=[1, 1], references=[1, 1], labels=[0, 1], label_names=["neg", "pos"]
    )
    assert result["mcc"] == 0.0
    assert set(result["per_class"]) == {"neg", "pos"}
    assert result["per_class"]["neg"]["support"] == 0


def test_multilabel_matches_sklearn():
    rng = np.random.default_rng(1)
    gold = (rng.random((200, 4)) < 0.3).astype(int)
    pred = np.where(rng.random((200, 4)) < 0.8, gold, 1 - gold)
    result = compute(
        "multilabel", predictions=pred.tolist(), references=gold.tolist(), label_names=list("abcd")
    )
    assert result["subset_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, pred))
    assert result["hamming_loss"] == pytest.approx(sklearn_metrics.hamming_loss(gold, pred))
    for average in ("macro", "micro", "weighted"):
        f = sklearn_metrics.f1_score(gold, pred, average=average, zero_division=0)
        assert result[f"f1_{average}"] == pytest.approx(f)
    assert result["per_class"]["c"]["support"] == int(gold[:, 2].sum())


def test_multilabel_hand_computed():
    result = compute("multilabel", predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])
    assert result["subset_accuracy"] == 0.5
    assert result["precision_micro"] == pytest.approx(2 / 3)
    assert result["recall_micro"] == 1.0


def test_regression_hand_computed_and_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    result = compute("regression", predictions=[1.0, 2.0, 3.5], references=[1.0, 2.5, 3.0])
    assert result["mse"] == pytest.approx((0 + 0.25 + 0.25) / 3)
    assert result["mae"] == pytest.approx(1 / 3)
    assert result["spearman"] == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    gold = rng.normal(size=100).round(1)  # rounding makes ties, which Spearman must average
    pred = gold + rng.normal(scale=0.7, size=100).round(1)
    result = compute("regression", predictions=pred.tolist(), references=gold.tolist())
    assert result["pearson"] == pytest.approx(stats.pearsonr(pred, gold)[0])
    assert result["spearman"] == pytest.approx(stats.spearmanr(pred, gold)[0])
    assert result["rmse"] == pytest.approx(math.sqrt(sklearn_metrics.mean_squared_error(gold, pred)))


def test_regression_constant_input_gives_nan_correlation():
    result = compute("regression", predictions=[1.0, 1.0, 1.0], references=[1.0, 2.0, 3.0])
    assert math.isnan(result["pearson"])


def test_entities_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O"]]
    # gold entities: PER(0,2) LOC(3,4) ORG(1,4); predicted: PER(0,2) ORG(3,4) ORG(1,3): one hit.
    result = compute("entities", predictions=pred, references=gold)
    assert result["entity_precision"] == pytest.approx(1 / 3)
    assert result["entity_recall"] == pytest.approx(1 / 3)
    assert result["entity_f1"] == pytest.approx(1 / 3)
    assert result["token_accuracy"] == pytest.approx(6 / 8)
    assert result["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert result["per_type"]["LOC"]["support"] == 1 and result["per_type"]["LOC"]["recall"] == 0.0
    assert result["scheme"] == "IOB2"


def test_masked_lm_perplexity_is_exp_of_mean_nll():
    result = compute("masked_lm", predictions=[1, 2, 3, 4], references=[1, 2, 0, 0], nll=[0.5, 1.0, 2.0, 0.5])
    assert result["masked_token_accuracy"] == 0.5
    assert result["perplexity"] == pytest.approx(math.exp(1.0))
    assert result["masked_tokens"] == 4
