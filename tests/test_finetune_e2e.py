"""End to end through the real CLI: finetune -> evaluate -> predict for each task, on a tiny model.

Each test checks the JSON results and that evaluate's metrics are what its predictions.jsonl says,
recomputing them here without hfllm's metric code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

TRAINING = {
    "num_train_epochs": 2,
    "per_device_train_batch_size": 16,
    "learning_rate": 1.0e-3,
    "report_to": [],
    "logging_steps": 5,
    "save_total_limit": 1,
}


def write_config(path: Path, model_dir: Path, output_dir: Path, data: dict, **extra) -> Path:
    config = {
        "kind": "finetune",
        "model": {"name_or_path": str(model_dir)},
        "data": data,
        "output_dir": str(output_dir),
        "training": TRAINING,
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def macro_f1(gold: list, predicted: list) -> float:
    """Macro-F1 over the labels seen in gold or predicted (scikit-learn's default), written out by hand."""
    scores = []
    for label in set(gold) | set(predicted):
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        n_pred, n_gold = predicted.count(label), gold.count(label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entities of an IOB2 sequence as seqeval's strict mode counts them (hfllm's entity scores): an entity
    starts at B-X and runs through the I-X after it; an I-X without its B-X is no entity. Written
    independently of hfllm's metric."""
    found, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, this = tag.partition("-") if "-" in tag else ("O", "", "")
        if start is not None and not (prefix == "I" and this == kind):
            found.add((kind, start, i))
            start = None
        if prefix == "B":
            start, kind = i, this
    return found


def finetune_evaluate(tmp_path: Path, model_dir: Path, data_dir: Path, **extra) -> tuple[dict, dict, Path]:
    config = write_config(tmp_path / "ft.yaml", model_dir, tmp_path / "run", {"dir": str(data_dir)}, **extra)
    tuned = run_cli("--quiet", "finetune", "--config", config)
    assert tuned.returncode == 0, tuned.stderr
    result = tuned.json
    assert result["status"] == "finished" and result["command"] == "finetune"
    model = Path(result["model_dir"])
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (model / name).is_file(), name
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    evaluated = run_cli("--quiet", "evaluate", "--model", model, "--data", data_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    return result, evaluated.json, model


def test_sequence_classification_end_to_end(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    result, evaluated, model = finetune_evaluate(
        tmp_path, model_dir, data_dir, class_weights="balanced", early_stopping={"patience": 1}
    )
    label2id = json.loads((data_dir / "manifest.json").read_text())["label2id"]
    assert json.loads((model / "config.json").read_text())["label2id"] == label2id
    assert result["best_metric"]["name"] == "f1_macro"
    assert set(result["metrics"]["test"]) >= {"accuracy", "f1_macro", "mcc"}

    out = Path(evaluated["output_dir"])
    assert {p.name for p in out.iterdir()} >= {
        "metrics.json",
        "predictions.jsonl",
        "per_class.txt",
        "confusion_matrix.png",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == metrics["examples"] == 30
    assert set(records[0]) >= {"id", "text", "gold", "predicted", "score"}
    gold = [r["gold"] for r in records]
    predicted = [r["predicted"] for r in records]
    assert metrics["accuracy"] == pytest.approx(
        sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)
    )
    assert metrics["f1_macro"] == pytest.approx(macro_f1(gold, predicted))
    assert evaluated["metrics"]["f1_macro"] == metrics["f1_macro"]
    assert sum(row["support"] for row in metrics["per_class"].values()) == 30
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    lines = [records[0]["text"], "", json.dumps({"text": records[1]["text"], "id": "x1"}), records[2]["text"]]
    predicted_lines = run_cli("predict", "--model", model, "--batch-size", "2", input="\n".join(lines) + "\n")
    assert predicted_lines.returncode == 0, predicted_lines.stderr
    outputs = [json.loads(line) for line in predicted_lines.stdout.splitlines()]
    assert [o["line"] for o in outputs] == [1, 3, 4]
    assert outputs[1]["id"] == "x1"
    # predict and evaluate run the same model on the same text: the same label.
    assert [o["label"] for o in outputs] == predicted[:3]
    assert "<stdin>:2: skipped: empty line" in predicted_lines.stderr


@pytest.mark.slow
def test_token_classification_end_to_end(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.token_data_dir(tmp_path / "data", tokenizer)
    result, evaluated, model = finetune_evaluate(tmp_path, model_dir, data_dir, task="token-classification")
    assert result["best_metric"]["name"] == "entity_f1"
    assert "entity_f1" in result["metrics"]["test"]
    out = Path(evaluated["output_dir"])
    metrics = json.loads((out / "metrics.json").read_text())
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == 12
    gold = [r["gold"] for r in records]
    predicted = [r["predicted"] for r in records]
    assert all(len(g) == len(p) == len(r["tokens"]) for g, p, r in zip(gold, predicted, records, strict=True))
    flat = [(g, p) for gs, ps in zip(gold, predicted, strict=True) for g, p in zip(gs, ps, strict=True)]
    assert metrics["token_accuracy"] == pytest.approx(sum(g == p for g, p in flat) / len(flat))
    gold_spans = {(i, *s) for i, tags in enumerate(gold) for s in spans(tags)}
    pred_spans = {(i, *s) for i, tags in enumerate(predicted) for s in spans(tags)}
    hits = len(gold_spans & pred_spans)
    precision = hits / len(pred_spans) if pred_spans else 0.0
    recall = hits / len(gold_spans)
    assert metrics["entity_recall"] == pytest.approx(recall)
    assert metrics["entity_precision"] == pytest.approx(precision)

    text = "Tcl (the Tool Command Language) is a powerful scripting language.\n"
    predicted_lines = run_cli("--quiet", "predict", "--model", model, input=text)
    assert predicted_lines.returncode == 0, predicted_lines.stderr
    output = json.loads(predicted_lines.stdout)
    assert output["line"] == 1 and isinstance(output["entities"], list)
    for entity in output["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["entity"] in {"LANG", "ORG", "PROD"}


@pytest.mark.slow
@pytest.mark.parametrize("problem_type", ["multi_label_classification", "regression"])
def test_multi_label_and_regression_end_to_end(tmp_path, ft_build, ft_tiny, problem_type):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(
        tmp_path / "data", tokenizer, problem_type, pair=problem_type == "regression"
    )
    result, evaluated, model = finetune_evaluate(tmp_path, model_dir, data_dir)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["problem_type"] == problem_type
    assert json.loads((model / "config.json").read_text())["problem_type"] == problem_type
    out = Path(evaluated["output_dir"])
    metrics = json.loads((out / "metrics.json").read_text())
    records = read_jsonl(out / "predictions.jsonl")
    if problem_type == "regression":
        assert "text_pair" in records[0]
        errors = [(r["predicted"] - r["gold"]) ** 2 for r in records]
        assert metrics["mse"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)
        pair = json.dumps({"text": records[0]["text"], "text_pair": records[0]["text_pair"]})
        output = json.loads(run_cli("predict", "--model", model, input=pair + "\n").stdout)
        assert output["value"] == pytest.approx(records[0]["predicted"], rel=1e-4)
    else:
        exact = [set(r["gold"]) == set(r["predicted"]) for r in records]
        assert metrics["subset_accuracy"] == pytest.approx(sum(exact) / len(exact))
        output = json.loads(run_cli("predict", "--model", model, input=records[0]["text"] + "\n").stdout)
        assert set(output["scores"]) == {"library", "game", "audio"}
        assert output["labels"] == records[0]["predicted"]


@pytest.mark.slow
def test_finetune_from_raw_files_and_resume(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    csv = Path(__file__).parent / "fixtures" / "finetune" / "classify.csv"
    data = {
        "files": [str(csv)],
        "max_length": 64,
        "preprocess": {"split": {"validation": 0.15, "test": 0.15}},
    }
    config = write_config(tmp_path / "ft.yaml", model_dir, tmp_path / "run", data)
    first = run_cli("--quiet", "finetune", "--config", config)
    assert first.returncode == 0, first.stderr
    assert Path(first.json["data_dir"]) == tmp_path / "run" / "data"
    assert (tmp_path / "run" / "data" / "manifest.json").is_file()
    again = run_cli("--quiet", "finetune", "--config", config)
    assert again.returncode == 0 and again.json["status"] == "already_finished"
    # An interrupted run (checkpoints, but no model/ and metrics.json yet) resumes from its newest checkpoint.
    import shutil

    shutil.rmtree(tmp_path / "run" / "model")
    (tmp_path / "run" / "metrics.json").unlink()
    newest = max(
        (tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])
    )
    resumed = run_cli("--quiet", "finetune", "--config", config)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json["status"] == "finished" and resumed.json["resumed_from"] == str(newest)
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_masked_lm_evaluate_and_fill_mask(tmp_path, ft_build, ft_tiny):
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.unlabelled_data_dir(tmp_path / "data", tokenizer)
    evaluated = run_cli(
        "--quiet", "evaluate", "--model", model_dir, "--data", data_dir, "--output-dir", tmp_path / "ev"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    records = read_jsonl(tmp_path / "ev" / "predictions.jsonl")
    nll = [x for r in records for x in r["nll"]]
    hits = [g == p for r in records for g, p in zip(r["gold"], r["predicted"], strict=True)]
    assert metrics["masked_tokens"] == len(nll) > 0
    assert metrics["masked_token_accuracy"] == pytest.approx(sum(hits) / len(hits))
    import math

    assert metrics["perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-4)
    assert evaluated.json["metrics"]["perplexity"] == pytest.approx(metrics["perplexity"])

    lines = "a [MASK] for mail servers\nno mask here\n"
    predicted = run_cli("predict", "--model", model_dir, "--top-k", "3", input=lines)
    assert predicted.returncode == 0, predicted.stderr
    output = json.loads(predicted.stdout)
    assert output["line"] == 1 and len(output["masks"]) == 1 and len(output["masks"][0]) == 3
    scores = [c["score"] for c in output["masks"][0]]
    assert scores == sorted(scores, reverse=True)
    assert "<stdin>:2: skipped: no [MASK] token" in predicted.stderr


def test_recompute_helpers_are_right():
    # The hand-written helpers above must themselves be right, or the recomputations prove nothing.
    assert macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert spans(["B-X", "I-X", "O", "I-Y", "B-Y"]) == {("X", 0, 2), ("Y", 4, 5)}  # the stray I-Y: none
    assert spans(["B-X", "I-Y", "B-X", "B-X", "I-X"]) == {("X", 0, 1), ("X", 2, 3), ("X", 3, 5)}
    from seqeval.scheme import IOB2, Entities

    tags = ["B-X", "I-X", "O", "I-Y", "B-Y", "I-X", "B-X", "B-X", "I-X"]
    strict = {(e.tag, e.start, e.end) for e in Entities([tags], IOB2).entities[0]}
    assert spans(tags) == strict


@pytest.mark.slow
def test_two_processes_score_each_validation_example_once(tmp_path, ft_build, ft_tiny):
    """With 2 gloo processes and eval batches that do not divide the split, the distributed sampler
    repeats samples to even out the last batch; metrics must still count each example exactly once,
    so the validation metrics of finetune equal a single-process `hfllm evaluate` of the saved model."""
    model_dir, tokenizer = ft_tiny
    data_dir = ft_build.sequence_data_dir(tmp_path / "data", tokenizer)
    training = {**TRAINING, "num_train_epochs": 1, "per_device_eval_batch_size": 4, "use_cpu": True}
    config = write_config(
        tmp_path / "ft.yaml", model_dir, tmp_path / "run", {"dir": str(data_dir)}, training=training
    )
    tuned = run_cli("--quiet", "finetune", "--config", config, "--num-processes", "2")
    assert tuned.returncode == 0, tuned.stderr
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    evaluated = run_cli(
        "--quiet",
        "evaluate",
        "--model",
        tmp_path / "run" / "model",
        "--data",
        data_dir,
        "--split",
        "validation",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    for key in ("accuracy", "f1_macro", "mcc"):
        assert run_metrics["validation"][key] == pytest.approx(evaluated.json["metrics"][key], abs=1e-6), key
