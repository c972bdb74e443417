"""`hfllm attention`: the weights it writes and prints are the model's own (eager attention), the heat
maps open, causal models show their mask, bad requests get clear errors, and --explain's numbers are
the request's section 4.3 example computed correctly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli

TEXT = "GNU tool to edit audio files from the command line."


def model_attentions(model_dir: Path, text: str) -> tuple[list[str], list]:
    """Return (tokens, attentions[layer][head][query][key]) straight from Transformers, eager attention."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return tokenizer.convert_ids_to_tokens(ids), [a[0].tolist() for a in out.attentions]


@pytest.fixture(scope="module")
def causal_models(tmp_path_factory, ft_tiny):
    """Tiny GPT-2 and Llama models built from scratch (2 layers, hidden 32) with the fixture tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    _, tokenizer = ft_tiny
    root = tmp_path_factory.mktemp("causal")
    sizes = {
        "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64},
        "llama": {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
    }
    dirs = {}
    for model_type, size in sizes.items():
        torch.manual_seed(0)
        config = AutoConfig.for_model(
            model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **size
        )
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(str(root / model_type))
        tokenizer.save_pretrained(str(root / model_type))
        dirs[model_type] = root / model_type
    return dirs


def test_weights_equal_the_models_own_and_rows_sum_to_one(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    out = tmp_path / "att"
    result = run_cli("attention", "--model", model_dir, TEXT, "--output-dir", out, "--layer", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = result.json
    data = json.loads((out / "attention.json").read_text())
    tokens, expected = model_attentions(model_dir, TEXT)
    assert data["tokens"] == summary["tokens"] == tokens
    assert data["num_layers"] == 2 and data["num_heads"] == 2 and not data["causal"]
    assert data["attentions"] == expected  # the same floats, every layer, head, row and column
    for layer in data["attentions"]:
        for head in layer:
            assert all(abs(sum(row) - 1.0) < 1e-5 for row in head)
    # The table: per token, the keys with the largest weights of the heads' mean in layer 1, in order.
    mean = [[sum(h[i][j] for h in expected[1]) / 2 for j in range(len(tokens))] for i in range(len(tokens))]
    for row in summary["top"]:
        weights = [t["weight"] for t in row["attends_to"]]
        assert weights == sorted(mean[row["index"]], reverse=True)[:3]


def test_heat_maps_open(tmp_path, ft_tiny):
    import matplotlib.image

    model_dir, _ = ft_tiny
    out = tmp_path / "att"
    result = run_cli("attention", "--model", model_dir, TEXT, "--output-dir", out, "--head", "1")
    assert result.returncode == 0, result.stderr
    assert "layer 1, head 1" in result.stdout and "->" in result.stdout
    for name in ("layer-1-heads.png", "layer-1-head-1.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100, name


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_causal_models_show_the_causal_mask(tmp_path, causal_models, model_type):
    out = tmp_path / model_type
    result = run_cli("attention", "--model", causal_models[model_type], TEXT, "--output-dir", out, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "attention.json").read_text())
    assert data["causal"] and result.json["causal"]
    for layer in data["attentions"]:
        for head in layer:
            n = len(head)
            assert all(head[i][j] == 0.0 for i in range(n) for j in range(i + 1, n))
            assert all(abs(sum(row) - 1.0) < 1e-5 for row in head)
            assert head[0][0] == pytest.approx(1.0)  # the first token can only attend to itself
    assert data["attentions"] == model_attentions(causal_models[model_type], TEXT)[1]


def test_bad_requests_are_clear_errors(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    long_text = "audio " * 300
    cases = [
        (["--model", model_dir, long_text], 3, "the model's context is 128"),
        (["--model", model_dir, TEXT, "--layer", "2"], 2, "--layer 2: the model has 2 layers"),
        (["--model", model_dir, TEXT, "--head", "-3"], 2, "--head -3: the model has 2 heads"),
        (["--model", tmp_path / "absent", TEXT], 3, "model dir not found"),
        ([TEXT], 2, "give --model DIR"),
    ]
    for args, code, message in cases:
        result = run_cli("attention", *args, "--output-dir", tmp_path / "out")
        assert result.returncode == code and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_existing_files_are_not_overwritten_without_the_flag(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    out = tmp_path / "att"
    assert run_cli("attention", "--model", model_dir, TEXT, "--output-dir", out).returncode == 0
    first = (out / "attention.json").read_bytes()
    refused = run_cli("attention", "--model", model_dir, TEXT, "--output-dir", out)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert (out / "attention.json").read_bytes() == first
    replaced = run_cli("attention", "--model", model_dir, TEXT, "--output-dir", out, "--overwrite")
    assert replaced.returncode == 0 and json.loads((out / "attention.json").read_text())["tokens"]
    # A dir hfllm did not make is never written into, --overwrite or not.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "attention.json").write_text("mine\n")
    refused = run_cli("attention", "--model", model_dir, TEXT, "--output-dir", mine, "--overwrite")
    assert refused.returncode == 2 and "not made by hfllm" in refused.stderr
    assert (mine / "attention.json").read_text() == "mine\n"


def test_explain_computes_section_4_3_correctly():
    import numpy as np

    result = run_cli("attention", "--explain", "--json")
    assert result.returncode == 0, result.stderr
    got = result.json
    x = np.array(
        [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [0.2, 0.3, 0.4], [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]]
    )
    scores = x @ x[2]  # q = x_sat; K = V = X, as the example does
    weights = np.exp(scores / math.sqrt(3)) / np.exp(scores / math.sqrt(3)).sum()
    assert got["scores"] == pytest.approx([0.50, 1.22, 1.94, 0.74, 0.50, 1.46], abs=1e-12)
    assert got["weights"] == pytest.approx(weights.tolist(), abs=1e-12)
    assert got["weights_sum"] == pytest.approx(1.0, abs=1e-12)
    assert got["output"] == pytest.approx((weights @ x).tolist(), abs=1e-12)
    assert [round(v, 4) for v in got["output"]] == [0.4038, 0.5038, 0.6038]
    assert [round(w, 4) for w in got["weights"]] == [0.1149, 0.1742, 0.2639, 0.132, 0.1149, 0.2]
    printed = got["printed"]
    assert printed["weights_sum"] == pytest.approx(2.0)
    assert printed["output_from_its_weights"] == pytest.approx([0.92, 1.12, 1.32])
    assert any("sum to 2" in e for e in got["errors"])

    text = run_cli("attention", "--explain")
    assert text.returncode == 0 and "0.263929" in text.stdout and "[0.4038, 0.5038, 0.6038]" in text.stdout
    assert "sum to 2, not 1" in text.stdout
