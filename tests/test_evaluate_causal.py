"""hfllm evaluate on causal LMs: perplexity of a text file (sliding window), of a causal data dir split,
and the response loss of instruction data; masked-LM data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from hfllm.config.schemas.preprocess import PreprocessConfig
from hfllm.data.pipeline import run_preprocess
from hfllm.inference.evaluate_causal import IGNORE_INDEX, evaluate_texts, windows

CORPUS = Path(__file__).parent / "fixtures" / "preprocess" / "corpus.txt"


def test_windows_score_every_token_but_the_first_exactly_once():
    ids = list(range(100))
    rows = windows(ids, max_length=32, stride=10)
    scored = [
        row["input_ids"][i] for row in rows for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX
    ]
    assert sorted(scored[1:]) == ids[1:] and scored[0] == 0  # token 0 is never predicted (label shifted out)
    assert all(len(row["input_ids"]) <= 32 for row in rows)
    assert windows([1, 2, 3], 32, 16) == [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}]


def test_text_perplexity_in_one_window_equals_the_models_own_loss(causal_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(causal_model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(causal_model))
    text = "Command-line tool to edit audio files and convert between formats"
    metrics, records = evaluate_texts(model, tokenizer, [text], max_length=64, stride=32, batch_size=4)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        own = model(input_ids=ids, labels=ids).loss.item()
    assert metrics["token_loss"] == pytest.approx(own, rel=1e-5)
    assert metrics["tokens"] == ids.shape[1] - 1 and len(records) == 1


def test_evaluate_a_text_file_with_a_sliding_window(causal_model, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("\n".join(CORPUS.read_text(encoding="utf-8").splitlines()[:12]) + "\n", encoding="utf-8")
    result = run_cli("evaluate", "-m", causal_model, "-d", text, "-o", tmp_path / "ev", "--stride", "16")
    assert result.returncode == 0, result.stderr
    metrics = result.json["metrics"]
    from transformers import AutoTokenizer

    n = len(AutoTokenizer.from_pretrained(str(causal_model))(text.read_text())["input_ids"])
    assert metrics["tokens"] == n - 1 and metrics["stride"] == 16 and metrics["max_length"] == 64
    assert metrics["perplexity"] == pytest.approx(2.718281828 ** metrics["token_loss"])
    records = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["tokens"] for r in records) == metrics["tokens"]


def _data(tmp_path: Path, model_dir: Path, **top) -> Path:
    body = {
        "data": {"files": [str(CORPUS)]},
        "tokenizer": {"name_or_path": str(model_dir)},
        "packing": {"max_length": 64},
        "split": {"validation": 0.0, "test": 0.2},
        "num_proc": 1,
        "output_dir": str(tmp_path / "data"),
        **top,
    }
    run_preprocess(PreprocessConfig.model_validate(body))
    return tmp_path / "data"


def test_evaluate_a_causal_split_keeps_documents_apart(causal_model, tmp_path):
    data = _data(tmp_path, causal_model, objective="causal")
    result = run_cli("evaluate", "-m", causal_model, "-d", data, "-o", tmp_path / "ev")
    assert result.returncode == 0, result.stderr
    metrics = result.json["metrics"]
    assert metrics["split"] == "test" and metrics["documents_isolated"] is True and metrics["tokens"] > 0
    assert metrics["loss_on"] == "all tokens"


def test_evaluate_instruction_data_scores_response_tokens_only(causal_model, causal_build, tmp_path):
    files = [causal_build.instruction_file(tmp_path / "inst.jsonl", n=60)]
    data = _data(
        tmp_path,
        causal_model,
        task="causal-lm",
        chat_template="plain",
        data={"files": [str(f) for f in files]},
    )
    # the model's tokenizer + the plain template (no new tokens) is the data's tokenizer, as after finetune
    model_dir = causal_build.causal_model_dir(tmp_path / "model")
    (model_dir / "tokenizer_config.json").unlink()
    for file in (data / "tokenizer").iterdir():
        (model_dir / file.name).write_bytes(file.read_bytes())
    result = run_cli("evaluate", "-m", model_dir, "-d", data, "-o", tmp_path / "ev")
    assert result.returncode == 0, result.stderr
    metrics = result.json["metrics"]
    from datasets import load_from_disk

    test = load_from_disk(str(data / "test"))
    expected = sum(sum(1 for label in row[1:] if label != IGNORE_INDEX) for row in test["labels"])
    assert metrics["loss_on"] == "response tokens" and metrics["tokens"] == expected


def test_a_masked_lm_data_dir_is_refused_for_a_causal_model(causal_model, tmp_path):
    data = _data(tmp_path, causal_model, objective="masked", packing={"max_length": 64, "mode": "line"})
    result = run_cli("evaluate", "-m", causal_model, "-d", data, "-o", tmp_path / "ev")
    assert result.returncode == 3 and "built for the masked objective" in result.stderr
    assert not (tmp_path / "ev").exists()
