"""Issue 14 on the runner: causal-LM pretraining (`objective: causal`) and instruction tuning (`task: causal-lm`),
end to end through the CLI on tiny models, and the checks that keep the two objectives apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

CONFIGS = REPO / "configs"
FIXTURE_CORPUS = REPO / "tests" / "fixtures" / "preprocess" / "corpus.txt"
BUNDLED_CORPUS = REPO / "hfllm" / "samples" / "corpus.txt"


def causal_data(out: Path, corpus: Path = FIXTURE_CORPUS, vocab: int = 400, max_length: int = 64) -> Path:
    """Return a causal data dir of `corpus` (byte-level BPE, EOS per document, `max_length`-token blocks)."""
    sets = {
        "data.files": f"[{corpus}]",
        "tokenizer.train.vocab_size": vocab,
        "tokenizer.train.min_frequency": 1,
        "packing.max_length": max_length,
        "num_proc": 1,
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    result = run_cli(
        "--quiet",
        "preprocess",
        "-c",
        CONFIGS / "preprocess" / "corpus-causal.yaml",
        *args,
        "--output-dir",
        out,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def pretrain_args(config: str, data: Path, out: Path, **sets) -> list:
    pairs = {"data_dir": data, **sets}
    return [
        "pretrain",
        "-c",
        CONFIGS / "pretrain" / config,
        *[a for k, v in pairs.items() for a in ("--set", f"{k}={v}")],
        "--output-dir",
        out,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return causal_data(tmp_path_factory.mktemp("causal") / "data")


def test_causal_pretraining_end_to_end(data, tmp_path):
    out = tmp_path / "run"
    result = run_cli(*pretrain_args("tiny-causal.yaml", data, out, **{"training.max_steps": 20}))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json
    assert (summary["status"], summary["command"], summary["recipe"]) == ("finished", "pretrain", "causal-lm")
    metrics = json.loads((out / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["loss"] < metrics["eval_history"][0]["loss"] - 0.5  # it learned
    assert validation["perplexity"] == pytest.approx(2.718281828 ** validation["loss"], rel=1e-6)
    assert validation["unigram_perplexity"] > 1 and 0 <= validation["next_token_accuracy"] <= 1
    assert metrics["documents_isolated"] is True  # GPT-2 reads packing from the restarting position ids

    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device="cpu")
    text = generator("a library for", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("a library for") and len(text) > len("a library for")
    generated = run_cli(
        "--quiet", "generate", "--model", out / "model", "--max-new-tokens", "5", input="a tool\n"
    )
    assert generated.returncode == 0 and json.loads(generated.stdout)["line"] == 1

    again = run_cli(*pretrain_args("tiny-causal.yaml", data, out, **{"training.max_steps": 20}))
    assert again.returncode == 0 and again.json["status"] == "already_finished"
    assert again.json["metrics"] == summary["metrics"]


@pytest.mark.slow
def test_pretrain_refuses_data_built_for_the_other_objective(data, tmp_path):
    from test_pretrain import make_data_dir

    masked = make_data_dir(tmp_path / "masked", max_length=32)
    refused = run_cli(*pretrain_args("tiny-causal.yaml", masked, tmp_path / "a"))
    assert refused.returncode == 3 and "built for the masked objective, not causal" in refused.stderr
    refused = run_cli(*pretrain_args("tiny.yaml", data, tmp_path / "b"))
    assert refused.returncode == 3 and "built for the causal objective, not masked" in refused.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_objective_the_model_type_cannot_train_is_a_config_error(tmp_path):
    result = run_cli("config", "show", "-c", CONFIGS / "pretrain" / "tiny.yaml", "--set", "objective=causal")
    assert result.returncode == 2 and "objective causal needs a causal-LM model type" in result.stderr
    result = run_cli(
        "config", "show", "-c", CONFIGS / "pretrain" / "tiny-causal.yaml", "--set", "objective=masked"
    )
    assert result.returncode == 2 and "gpt2 is causal" in result.stderr
    # Without `objective`, the model type decides: gpt2 trains causally, bert masked.
    shown = yaml.safe_load(
        run_cli("config", "show", "-c", CONFIGS / "pretrain" / "tiny.yaml", "--set", "model.type=gpt2").stdout
    )
    assert shown["objective"] == "causal"


def instruct_config(tmp_path: Path, model: Path, files: list[Path], **training) -> Path:
    body = {
        "kind": "finetune",
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {
            "files": [str(f) for f in files],
            "max_length": 64,
            "preprocess": {"num_proc": 1, "split": {"validation": 0.2, "test": 0.1}},
        },
        "output_dir": str(tmp_path / "run"),
        "training": {
            "num_train_epochs": 2,
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "use_cpu": True,
            "report_to": [],
            **training,
        },
    }
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def test_instruction_tuning_end_to_end(tmp_path, causal_build, causal_model):
    rows = causal_build.instruction_file(tmp_path / "inst.jsonl", n=40)
    result = run_cli("finetune", "-c", instruct_config(tmp_path, causal_model, [rows]))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json
    assert (summary["command"], summary["recipe"]) == ("finetune", "instruction")
    assert set(summary["metrics"]) >= {"train", "validation", "test"}
    assert summary["best_metric"]["name"] == "token_loss"
    model_dir = Path(summary["model_dir"])
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(model_dir).chat_template
    # The chat template the data was built with is the one saved beside the model, for generate to use.
    assert (
        saved
        and saved == AutoTokenizer.from_pretrained(tmp_path / "run" / "data" / "tokenizer").chat_template
    )
    chat = json.dumps({"messages": [{"role": "user", "content": "What is grep?"}]})
    generated = run_cli(
        "--quiet", "generate", "--model", model_dir, "--max-new-tokens", "4", input=chat + "\n"
    )
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert json.loads(generated.stdout)["new_tokens"] <= 4


def test_classification_data_is_not_instruction_data(tmp_path, causal_model):
    csv = REPO / "tests" / "fixtures" / "finetune" / "classify.csv"
    result = run_cli("finetune", "-c", instruct_config(tmp_path, causal_model, [csv]))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert str(csv) in result.stderr and ("'prompt'" in result.stderr or "'messages'" in result.stderr)


# --- slow: learning, resume and several processes ---


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    return causal_data(tmp_path_factory.mktemp("bundled") / "data", BUNDLED_CORPUS, vocab=2000, max_length=64)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["tiny-causal.yaml", "tiny-llama.yaml"])
def test_tiny_gpt2_and_llama_beat_the_unigram_baseline_on_the_bundled_corpus(config, bundled, tmp_path):
    sets = {
        "training.max_steps": 300,
        "training.eval_steps": 100,
        "training.save_steps": 100,
        "training.per_device_train_batch_size": 32,
    }
    result = run_cli(*pretrain_args(config, bundled, tmp_path / "run", **sets))
    assert result.returncode == 0, result.stderr[-3000:]
    validation = result.json["metrics"]["validation"]
    assert validation["perplexity"] < validation["unigram_perplexity"], validation


@pytest.mark.slow
def test_instruction_response_loss_falls(tmp_path, causal_build, causal_model):
    rows = causal_build.instruction_file(tmp_path / "inst.jsonl", n=160)
    config = instruct_config(
        tmp_path, causal_model, [rows], num_train_epochs=6, eval_strategy="epoch", save_strategy="epoch"
    )
    result = run_cli("finetune", "-c", config)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["eval_history"]
    assert history[-1]["loss"] < history[0]["loss"], history


@pytest.mark.slow
def test_causal_run_killed_resumes_to_the_same_losses(bundled, tmp_path):
    sets = {
        "training.max_steps": 30,
        "training.eval_steps": 6,
        "training.save_steps": 6,
        "training.logging_steps": 1,
    }
    straight = run_cli(*pretrain_args("tiny-causal.yaml", bundled, tmp_path / "straight", **sets))
    assert straight.returncode == 0, straight.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfllm", *map(str, pretrain_args("tiny-causal.yaml", bundled, out, **sets))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    while not (out / "checkpoints" / "checkpoint-12" / "trainer_state.json").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_cli(*pretrain_args("tiny-causal.yaml", bundled, out, **sets))
    assert resumed.returncode == 0 and resumed.json["resumed_from"].endswith("checkpoint-12")

    def losses(run: Path) -> list:
        state = json.loads(
            max(
                (run / "checkpoints").glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime
            ).read_text()
        )
        return [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]

    assert losses(out) == losses(tmp_path / "straight")


@pytest.mark.slow
def test_causal_on_two_processes_matches_one_with_the_same_global_batch(bundled, tmp_path):
    same = {
        "training.max_steps": 10,
        "training.eval_steps": 5,
        "training.save_steps": 10,
        "model.config.resid_pdrop": 0,
        "model.config.embd_pdrop": 0,
        "model.config.attn_pdrop": 0,
    }
    one = run_cli(
        *pretrain_args(
            "tiny-causal.yaml",
            bundled,
            tmp_path / "one",
            **same,
            **{"training.per_device_train_batch_size": 32},
        )
    )
    two = run_cli(
        *pretrain_args("tiny-causal.yaml", bundled, tmp_path / "two", **same), "--num-processes", "2"
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    m1, m2 = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert (m1["global_batch_size"], m2["global_batch_size"], m2["world_size"]) == (32, 32, 2)
    # The loss is divided by the tokens of the whole step, so 2 x 16 trains like 1 x 32.
    assert abs(m1["validation"]["loss"] - m2["validation"]["loss"]) < 1e-5
    assert m1["train"]["loss"] == pytest.approx(m2["train"]["loss"], abs=1e-5)
