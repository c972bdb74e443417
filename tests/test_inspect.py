"""`hfllm inspect`: exact parameter counts, memory from a meta-device step that matches a real one,
named GPUs, and a fit check whose suggested change really fits. No weights are loaded or trained here
(the comparison with real runs is bench/inspect_accuracy.py and the slow test at the end)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli
from test_pretrain import make_data_dir

BERT_BASE = REPO / "configs" / "pretrain" / "bert-base.yaml"
TINY = REPO / "configs" / "pretrain" / "tiny.yaml"
GIB = 2**30


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A group-mode data dir (vocabulary ~800, 64-token blocks) like `hfllm preprocess` writes."""
    return make_data_dir(tmp_path_factory.mktemp("inspect") / "data")


def inspect_json(*args) -> dict:
    """Return the report of the real CLI (its own process, so its own resident set as the overhead)."""
    result = run_cli("inspect", *map(str, args), "--json")
    assert result.returncode == 0, result.stderr
    return result.json


def inspect(target: Path, device: str = "cpu", **options) -> dict:
    """Return the report from the library, in this process (the CPU rates are measured once)."""
    from hfllm.analysis.inspect_report import run_inspect

    return json.loads(json.dumps(run_inspect(target, device, **options)))


def test_bert_base_parameters_equal_the_instantiated_model():
    from transformers import AutoConfig, AutoModelForMaskedLM

    from hfllm.models.builders import count_parameters

    report = inspect(BERT_BASE, "h100", num_processes=8)
    overrides = yaml.safe_load(BERT_BASE.read_text())["model"]["config"]
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model("bert", **overrides))
    assert report["parameters"] == count_parameters(model)
    assert report["parameters"]["parameters"] == 109_514_298  # BERT-base with its 30,522-token vocabulary
    assert any("no data dir" in note for note in report["assumptions"])


def test_parameters_with_a_data_dir_equal_what_pretrain_builds(data_dir):
    from hfllm.data.datadir import open_data_dir
    from hfllm.models.builders import build_new_model, count_parameters

    report = inspect(TINY, sets=[f"data_dir={data_dir}"])
    tokenizer = open_data_dir(data_dir).load_tokenizer()
    overrides = yaml.safe_load(TINY.read_text())["model"]["config"]
    model = build_new_model("bert", overrides, tokenizer, 64)  # the builder `hfllm pretrain` calls
    assert report["parameters"] == count_parameters(model)
    assert report["batch"]["max_length"] == 64 and report["batch"]["train_examples"] > 0
    # 2 x matmul weights (4 attention + 2 MLP per layer; the head transform and tied decoder only at the
    # 15 % of masked positions the sparse head computes) + attention
    h, layers, inter, vocab = 32, 2, 64, len(tokenizer)
    matmuls = layers * (4 * h * h + 2 * h * inter) + 0.15 * (h * h + h * vocab)
    assert report["flops_per_token"]["forward"] == pytest.approx(2 * matmuls + 4 * layers * 64 * h)
    assert report["flops_per_token"]["training"] == 3 * report["flops_per_token"]["forward"]


def test_masking_time_is_measured_and_added_to_each_step_and_evaluation_batch(data_dir):
    from hfllm.analysis.devices import named_gpu
    from hfllm.analysis.plan import plan_from_target
    from hfllm.analysis.sizing import Sizer

    plan = plan_from_target(TINY, [f"data_dir={data_dir}"], 1)
    assert plan.collate_seconds > 0  # the real masked-LM collator, timed on the data dir's examples
    assert any(note.startswith("masking: ") for note in plan.assumptions)
    sizer, gpu = Sizer(plan, "gpu"), named_gpu("h100")
    with_masking = sizer.throughput(gpu, 0.5)
    measured, plan.collate_seconds = plan.collate_seconds, 0.0
    without = sizer.throughput(gpu, 0.5)
    step = with_masking["seconds_per_step"] - without["seconds_per_step"]
    assert step == pytest.approx(plan.train_batch * measured)
    batches = with_masking["eval_seconds"] - without["eval_seconds"]
    assert batches == pytest.approx(
        with_masking["evaluations"]
        * plan.eval_batch
        * measured
        * math.ceil(plan.eval_examples / plan.eval_batch)
    )
    plan.collate_seconds, plan.dataloader_workers = measured, 2  # workers mask while the step runs
    assert sizer.throughput(gpu, 0.5)["seconds_per_step"] == without["seconds_per_step"]


def test_precision_is_the_one_pretrain_picks_when_the_config_sets_none(data_dir, monkeypatch):
    import hfllm.precision
    from hfllm.analysis.devices import named_gpu
    from hfllm.analysis.inspect_report import _precision_for_device
    from hfllm.analysis.plan import plan_from_target

    def planned(sets: list[str], gpu=None) -> str:
        plan = plan_from_target(TINY, [f"data_dir={data_dir}", *sets], 1)
        if plan.precision_by_device:
            _precision_for_device(plan, gpu)
        return plan.precision

    wide = ["model.config.hidden_size=256", "model.config.num_attention_heads=4"]
    monkeypatch.setattr(hfllm.precision, "native_cpu_bf16", lambda: "amx_bf16")
    assert planned(wide) == "bf16"  # as the masked-LM recipe's apply_precision decides
    assert planned([]) == "fp32"  # 32 wide: bf16's casts would cost what it saves
    assert planned([*wide, "training.bf16=false"]) == "fp32"
    assert planned([], named_gpu("h100")) == "bf16"
    monkeypatch.setattr(hfllm.precision, "native_cpu_bf16", lambda: None)
    assert planned(wide) == "fp32"  # emulated bf16 would be slower


@pytest.mark.parametrize(
    ("model_type", "share", "precision", "checkpointing"),
    [
        ("bert", None, "fp32", False),
        ("bert", None, "bf16", False),
        ("bert", 0.15, "bf16", False),  # the sparse masked-LM head
        ("bert", 0.15, "bf16", True),  # gradient checkpointing recomputes under autocast
        ("llama", None, "bf16", False),
        ("gpt2", None, "bf16", False),
    ],
)
def test_meta_simulation_equals_the_same_step_on_real_tensors(model_type, share, precision, checkpointing):
    """The meta-device step allocates exactly what the real CPU step allocates (same dispatch, same sizes);
    in bf16, the meta step's emulated autocast casts exactly what torch.autocast casts on the CPU."""
    import torch
    from transformers import AutoConfig

    from hfllm.analysis.simulate import CAUSAL_LM, MASKED_LM, auto_class, build_meta_model, simulate_run

    sizes = {"n_embd": 32, "n_layer": 2, "n_head": 2} if model_type == "gpt2" else {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    }  # fmt: skip
    config = AutoConfig.for_model(model_type, vocab_size=500, **sizes)
    for dropout in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
        if hasattr(config, dropout):
            setattr(config, dropout, 0.0)  # the flash kernel on both sides
    objective = MASKED_LM if model_type == "bert" else CAUSAL_LM
    dtype = torch.bfloat16 if precision == "bf16" else None
    args = (objective, 48, 4, 8, "cpu", checkpointing, [], share, dtype)
    meta = simulate_run(build_meta_model(config, objective), *args)
    torch.manual_seed(0)
    real_model = auto_class(objective).from_config(config)  # real weights on the CPU: the step runs for real
    real = simulate_run(real_model, *args)
    assert meta.train.peak == real.train.peak and meta.train.after_forward == real.train.after_forward
    assert meta.eval.peak == real.eval.peak
    assert sum(meta.train.costs.flops) == sum(real.train.costs.flops) > 0
    if dtype is not None:  # and mixed precision is neither the fp32 step nor a bf16 model's
        fp32 = simulate_run(build_meta_model(config, objective), *args[:-1])
        half = simulate_run(build_meta_model(config, objective).to(dtype), *args[:-1])
        assert half.train.peak < meta.train.peak < fp32.train.peak


def test_memory_variants_checkpointing_bf16_and_sharding():
    small_eval = ["training.per_device_eval_batch_size=8"]  # so the training step is the peak
    report = inspect(BERT_BASE, "h100", num_processes=8, sets=small_eval)
    variants = {(v["precision"], v["gradient_checkpointing"]): v for v in report["memory"]["variants"]}
    params = report["parameters"]["parameters"]
    for variant in variants.values():
        assert variant["weights"] == variant["gradients"] == 4 * params
        assert variant["optimizer"] == 8 * params  # AdamW: two fp32 moments
    assert variants[("fp32", True)]["activations"] < variants[("fp32", False)]["activations"] / 2
    assert variants[("bf16", False)]["activations"] < variants[("fp32", False)]["activations"]
    per_rank = report["memory"]["per_rank"]
    assert per_rank["zero3"] < per_rank["zero2"] < per_rank["zero1"] < per_rank["ddp"]
    assert report["batch"]["sharding"] == "ddp" and report["batch"]["precision"] == "bf16"
    speed = report["throughput"]
    assert speed["peak_flops"] == 989e12 and speed["peak_kind"] == "bf16"
    assert report["fit"]["available_bytes"] == 81559 * 2**20 and report["fit"]["fits"]


def test_cpu_peak_adds_the_runtime_memory_measured_on_a_one_layer_stand_in(data_dir):
    report = inspect_json(TINY, "--set", f"data_dir={data_dir}")  # its own process: nothing paged in yet
    configured = report["memory"]["configured"]
    runtime = configured["runtime"]
    assert runtime > 4 * 2**20  # at least the code a first training step pages in
    tensors = max(configured["train_step_peak"], configured["eval_peak"])
    assert configured["peak"] == tensors + runtime
    note = next(n for n in report["assumptions"] if n.startswith("runtime memory"))
    assert f"{runtime / 2**20:.1f} MiB" in note and "importing tensorboard" in note
    # BERT-base's one-layer stand-in at batch 32 x 512 would take seconds: not run, and said so.
    base = inspect(BERT_BASE)
    assert base["memory"]["configured"]["runtime"] == 0
    assert any(n.startswith("runtime memory not measured: a one-layer stand-in") for n in base["assumptions"])


def test_fsdp_and_deepspeed_configs_are_read_as_their_zero_stage():
    fsdp_config = REPO / "configs/pretrain/bert-base-fsdp.yaml"
    assert inspect(fsdp_config, "a100", num_processes=8)["batch"]["sharding"] == "zero3"
    grad_op = inspect(fsdp_config, "a100", sets=["training.fsdp=shard_grad_op auto_wrap"])
    assert grad_op["batch"]["sharding"] == "zero2"
    deepspeed = run_cli(  # its JSON file is named relative to the working directory
        "inspect", "configs/pretrain/bert-base-deepspeed.yaml", "--device", "a100", "--json", cwd=REPO
    )
    assert deepspeed.returncode == 0, deepspeed.stderr
    assert deepspeed.json["batch"]["sharding"] == "zero2"


@pytest.mark.slow
def test_a_config_that_does_not_fit_gets_a_change_that_fits(tmp_path, data_dir):
    # 8192: with the sparse output layer and dropout off while pretraining, 2048 now fits in 2 GiB.
    big = ["--set", f"data_dir={data_dir}", "--set", "training.per_device_train_batch_size=8192"]
    big += ["--set", "training.per_device_eval_batch_size=8192"]
    report = inspect_json(TINY, *big, "--memory-gib", "2")
    fit = report["fit"]
    assert not fit["fits"] and fit["needed_bytes"] > 2 * GIB
    change = fit["suggestion"]["set"]
    assert change and all(s.startswith("training.") for s in change)
    again = inspect_json(TINY, *big, *[a for s in change for a in ("--set", s)], "--memory-gib", "2")
    assert again["fit"]["fits"] and again["fit"]["needed_bytes"] <= 2 * GIB
    assert again["memory"]["per_rank"]["ddp"] == fit["suggestion"]["peak_bytes_per_rank"]
    # Accumulation keeps the global batch when the train batch shrinks.
    assert again["batch"]["global_batch_size"] == report["batch"]["global_batch_size"]

    text = run_cli("inspect", TINY, *big, "--memory-gib", "2")
    assert text.returncode == 0 and "does NOT fit" in text.stdout and "--set training." in text.stdout


def test_nothing_fits_says_so(data_dir):
    report = inspect(TINY, sets=[f"data_dir={data_dir}"], memory_gib=0.01)
    assert not report["fit"]["fits"] and report["fit"]["suggestion"] is None


def test_report_text_names_every_part(data_dir):
    result = run_cli("inspect", TINY, "--set", f"data_dir={data_dir}")
    assert result.returncode == 0, result.stderr
    for part in (
        "parameters",
        "FLOPs/token",
        "memory per rank",
        "fp32",
        "bf16",
        "zero3",
        "tokens/s",
        "fit",
        "assumptions",
    ):
        assert part in result.stdout, part


def test_model_dir_and_causal_models(tmp_path, ft_tiny):
    model_dir, _ = ft_tiny
    report = inspect(model_dir)
    assert report["kind"] == "model" and report["objective"] == "masked_lm"
    assert any("model dir has no training settings" in note for note in report["assumptions"])

    from transformers import AutoConfig

    for model_type, size in (("gpt2", {"n_embd": 32, "n_layer": 2, "n_head": 2}), ("llama", {})):
        extra = size or {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
        config = AutoConfig.for_model(model_type, vocab_size=300, intermediate_size=64, **extra)
        config.architectures = ["GPT2LMHeadModel" if model_type == "gpt2" else "LlamaForCausalLM"]
        config.save_pretrained(tmp_path / model_type)
        report = inspect(tmp_path / model_type, max_length=32)
        assert report["objective"] == "causal_lm" and report["memory"]["configured"]["activations"] > 0


def test_bad_inputs_are_clear_errors(tmp_path):
    unknown = run_cli("inspect", BERT_BASE, "--device", "h900")
    assert unknown.returncode == 2 and "unknown device" in unknown.stderr and "h100" in unknown.stderr
    missing = run_cli("inspect", tmp_path)
    assert missing.returncode == 3 and "config.json" in missing.stderr
    preprocess = run_cli("inspect", REPO / "configs" / "preprocess" / "demo.yaml")
    assert preprocess.returncode == 2 and "training runs" in preprocess.stderr
    for result in (unknown, missing, preprocess):
        assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("command", ["inspect", "attention", "sweep"])
def test_help_imports_no_heavy_library(command):
    heavy = ("torch", "transformers", "datasets", "accelerate", "optuna", "matplotlib")
    code = (
        "import sys\nfrom hfllm.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_predicted_memory_within_25_percent_of_a_real_run(tmp_path):
    """Acceptance 1 (memory) on the tiny config: bench/inspect_accuracy.py, shortened to 20 steps."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "inspect_accuracy.py"), "--only", "tiny", "--max-steps", "20"]
        + ["--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)["tiny"]
    assert figures["memory_within_25pct"], figures
