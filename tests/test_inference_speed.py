"""The inference fast path: length-sorted batches keep order and content; precisions; evaluate's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hfllm.inference.predict import Item, Predictor, predicted_chunks


@pytest.fixture(scope="module")
def classifier(ft_build, ft_tiny, tmp_path_factory):
    model_dir, _ = ft_tiny
    return ft_build.classifier_dir(
        tmp_path_factory.mktemp("fast") / "cls", model_dir, {"a": 0, "b": 1, "c": 2}
    )


def texts(n: int = 37) -> list[str]:
    from hfllm.samples import corpus_path

    lines = corpus_path().read_text(encoding="utf-8").splitlines()[:n]
    return [t[: 15 + 53 * i % 300] for i, t in enumerate(lines)]  # lengths vary: sorting reorders


def test_sorted_batches_and_read_ahead_keep_order_and_content(classifier):
    items = [Item(i + 1, t) for i, t in enumerate(texts())]
    predictor = Predictor(
        classifier, batch_size=4, all_scores=True, top_k=5, max_length=None, precision="fp32"
    )
    chunks = [items[:10], items[10:11], items[11:30], items[30:]]
    streamed = [r for records in predicted_chunks(predictor, iter(chunks)) for r in records]
    # The reference: every line alone (no padding, no reordering).
    one_by_one = [r for item in items for r in predictor.predict([item])]
    assert [r["line"] for r in streamed] == [i.line for i in items]
    for got, alone in zip(streamed, one_by_one, strict=True):
        assert got["label"] == alone["label"]
        assert got["scores"] == pytest.approx(alone["scores"], abs=2e-6)


def test_read_ahead_hands_each_chunk_over_at_once_and_raises_after_it(classifier):
    """A live pipe: the second chunk is read only after the first one's records came out; an input
    error (a --strict bad line) is raised after the records of the chunks before it."""
    import threading

    from hfllm.errors import InputError

    predictor = Predictor(classifier, 4, False, 5, None, precision="fp32")
    answered = threading.Event()

    def live():
        yield [Item(1, "first line")]
        assert answered.wait(timeout=60), "the first chunk was held back until the next was read"
        yield [Item(2, "second line")]
        raise InputError("<stdin>:3: empty line")

    got = []
    with pytest.raises(InputError, match=":3:"):
        for records in predicted_chunks(predictor, live()):
            got += [r["line"] for r in records]
            answered.set()
    assert got == [1, 2]


def test_precisions_run_and_stay_close_to_fp32(classifier):
    import torch

    from hfllm.precision import for_inference

    items = [Item(i + 1, t) for i, t in enumerate(texts(12))]
    fp32 = Predictor(classifier, 4, True, 5, None, precision="fp32")
    reference = np.array([[r["scores"][k] for k in "abc"] for r in fp32.predict(items)])
    for precision, tolerance in (("bf16", 0.02), ("int8", 0.05)):
        predictor = Predictor(classifier, 4, True, 5, None, precision=precision)
        scores = np.array([[r["scores"][k] for k in "abc"] for r in predictor.predict(items)])
        assert np.abs(scores - reference).max() < tolerance, precision
    bf16, path = for_inference(fp32.model, "bf16")
    assert next(bf16.parameters()).dtype == torch.bfloat16 and path.startswith("bf16")
    # auto picks fp32 for a 32-wide model whatever the CPU: bf16 would not pay at that width.
    assert "fp32" in Predictor(classifier, 4, True, 5, None, precision="auto").precision


def test_evaluate_metrics_equal_a_plain_one_example_at_a_time_loop(ft_build, ft_tiny, tmp_path):
    import torch

    from hfllm.inference.evaluate import run_evaluate
    from hfllm.models.loader import load_for_inference

    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    label2id = json.loads((data_dir / "manifest.json").read_text())["label2id"]
    model = ft_build.classifier_dir(tmp_path / "cls", model_dir, label2id)
    result = run_evaluate(model, data_dir, "test", tmp_path / "eval", batch_size=7)
    from datasets import load_from_disk

    test = load_from_disk(str(data_dir))["test"]
    plain, _, _ = load_for_inference(model)
    with torch.no_grad():
        predicted = [int(plain(input_ids=torch.tensor([row["input_ids"]])).logits.argmax(-1)) for row in test]
    gold = list(test["labels"])
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    assert result["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    records = [
        json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    ]
    id2label = {v: k for k, v in label2id.items()}
    assert [r["predicted"] for r in records] == [id2label[p] for p in predicted]


@pytest.mark.parametrize(
    ("preset", "import_torch_first", "expected"),
    [
        ({}, False, "True PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, False, "False ACTIVE"),  # the user's choice stays
        ({"GOMP_SPINCOUNT": "1000"}, False, "False None"),
        ({}, True, "False None"),  # too late: OpenMP read its settings when torch loaded it
    ],
)
def test_inference_threads_sleep_while_waiting_unless_the_user_chose(preset, import_torch_first, expected):
    import os
    import subprocess
    import sys

    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    }
    code = (
        ("import torch\n" if import_torch_first else "")
        + "import os\nfrom hfllm.threads import sleep_while_waiting\n"
        + "print(sleep_while_waiting(), os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**env, **preset}, capture_output=True, text=True, check=True
    )
    assert proc.stdout.split("\n")[-2] == expected
