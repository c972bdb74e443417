"""FSDP / DeepSpeed example configs and their early checks, without a GPU; bench/gpu_check.sh without one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfllm.config import distributed, load_any, load_config
from hfllm.config.schemas.pretrain import PretrainConfig
from hfllm.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
FSDP = REPO / "configs" / "pretrain" / "bert-base-fsdp.yaml"
DEEPSPEED = REPO / "configs" / "pretrain" / "bert-base-deepspeed.yaml"
ZERO2 = REPO / "configs" / "deepspeed" / "zero2.json"
HEAVY = ("torch", "transformers", "datasets", "accelerate")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    # training.deepspeed is read from the working directory, as when a user runs the shipped configs.
    monkeypatch.chdir(REPO)


def test_scale_configs_validate_without_importing_torch():
    code = (
        "import sys\nfrom hfllm.cli import main\n"
        f"try:\n    main(['config', 'validate', {str(FSDP)!r}, {str(DEEPSPEED)!r}])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_shipped_configs_ask_for_what_they_say():
    for path in (FSDP, DEEPSPEED):
        assert path.read_text().startswith(f"# hfllm pretrain --config configs/pretrain/{path.name} ")
    fsdp = load_any(FSDP)
    assert set(fsdp.training["fsdp"].split()) == {"full_shard", "auto_wrap"}
    assert fsdp.training["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["BertLayer"]
    assert fsdp.training["bf16"] and fsdp.model.config["attn_implementation"] == "sdpa"
    bert = Path(importlib.util.find_spec("transformers").origin).parent / "models/bert/modeling_bert.py"
    assert "class BertLayer(" in bert.read_text()  # the wrap class exists in the installed Transformers
    deepspeed = load_any(DEEPSPEED)
    assert (
        deepspeed.training["deepspeed"] == "configs/deepspeed/zero2.json" and "fsdp" not in deepspeed.training
    )
    zero2 = json.loads(ZERO2.read_text())
    assert zero2["zero_optimization"]["stage"] == 2
    # The Trainer fills "auto" from the YAML, so the batch and optimizer settings cannot disagree.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        assert zero2[key] == "auto", key
    assert set(zero2["optimizer"]["params"].values()) == {"auto"}


@pytest.mark.parametrize(
    ("config", "sets", "expected"),
    [
        (
            DEEPSPEED,
            ["training.deepspeed=missing/zero2.json"],
            ["`training.deepspeed`", "missing/zero2.json"],
        ),
        (FSDP, ["training.fsdp=full_shrad auto_wrap"], ["`training.fsdp`", "'full_shrad'", "'full_shard'"]),
        (FSDP, ["training.fsdp=7"], ["`training.fsdp`", "7"]),
        (
            FSDP,
            ["training.fsdp_config.transformer_layer_cls_to_warp=[BertLayer]"],
            [
                "training.fsdp_config.transformer_layer_cls_to_warp",
                "did you mean `transformer_layer_cls_to_wrap`",
            ],
        ),
        (
            FSDP,
            ["training.fsdp_config.state_dict_type=FULL"],
            ["training.fsdp_config.state_dict_type", "FULL"],
        ),
        (FSDP, ["training.fsdp_config.version=3"], ["training.fsdp_config.version", "1 or 2"]),
        (DEEPSPEED, ["training.fsdp=true"], ["`training.fsdp` and `training.deepspeed` are both set"]),
        (FSDP, ["training.use_cpu=true"], ["`training.fsdp` needs GPUs but `training.use_cpu` is true"]),
    ],
)
def test_distributed_mistakes_stop_at_load_naming_the_key(config, sets, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(PretrainConfig, config, sets)
    assert caught.value.exit_code == 2
    for part in expected:
        assert part in str(caught.value), (part, str(caught.value))


def test_fsdp_true_and_option_lists_are_accepted():
    for value in ("true", "[full_shard, auto_wrap]", "false"):
        load_config(PretrainConfig, FSDP, [f"training.fsdp={value}"])


def test_invalid_deepspeed_json_names_the_file_and_line(cli, tmp_path):
    bad = tmp_path / "zero2.json"
    bad.write_text('{\n  "zero_optimization": {"stage": 2,}\n}\n')
    config = tmp_path / "ds.yaml"
    config.write_text(DEEPSPEED.read_text().replace("configs/deepspeed/zero2.json", str(bad)))
    result = cli("config", "validate", config, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert f"{config}:" in result.stderr and f"{bad}:2:" in result.stderr and "invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_deepspeed_file_says_where_relative_paths_start(cli, tmp_path):
    (tmp_path / "zero2.json").write_text(ZERO2.read_text())
    config = tmp_path / "ds.yaml"
    config.write_text(DEEPSPEED.read_text().replace("configs/deepspeed/zero2.json", "zero2.json"))
    result = cli("config", "validate", config, cwd=REPO)
    assert result.returncode == 2
    assert "no such file zero2.json" in result.stderr and "working directory" in result.stderr
    assert str(tmp_path / "zero2.json") in result.stderr  # it points at the file beside the config


def test_fsdp_config_given_as_a_json_file_is_checked_too(tmp_path):
    path = tmp_path / "fsdp.json"
    path.write_text(json.dumps({"fsdp_transformer_layer_cls_to_wrap": ["BertLayer"], "fsdp_versoin": 2}))
    with pytest.raises(ConfigError, match="fsdp_config.fsdp_versoin"):
        load_config(PretrainConfig, FSDP, [f"training.fsdp_config={path}"])
    path.write_text(json.dumps({"fsdp_transformer_layer_cls_to_wrap": ["BertLayer"], "fsdp_version": 2}))
    load_config(PretrainConfig, FSDP, [f"training.fsdp_config={path}"])


def test_fsdp_names_are_read_from_the_installed_transformers():
    from transformers.trainer_utils import FSDPOption

    assert set(distributed.fsdp_options()) == {option.value for option in FSDPOption}
    keys = distributed.fsdp_config_keys()
    assert {"transformer_layer_cls_to_wrap", "version", "reshard_after_forward", "min_num_params"} <= keys


def test_fsdp_on_cpu_is_refused_with_a_message_not_a_traceback(tmp_path):
    import torch

    from hfllm.config.training_args import build_training_arguments

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    settings = {**load_any(FSDP).training, "output_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="`training.fsdp` needs GPUs") as caught:
        build_training_arguments(settings)
    assert caught.value.exit_code == 2


def test_fsdp_outside_a_distributed_launch_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "_accelerator_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="distributed launcher") as caught:
        distributed.check_runtime({"fsdp": "full_shard auto_wrap"})
    assert "--num-processes N (1 for one GPU)" in str(caught.value)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    distributed.check_runtime({"fsdp": "full_shard auto_wrap"})


def test_deepspeed_without_the_package_is_refused():
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    with pytest.raises(ConfigError, match="DeepSpeed is not installed"):
        distributed.check_runtime({"deepspeed": str(ZERO2)})


def test_gpu_check_without_a_gpu_exits_2_with_a_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 2, proc.stderr
    assert "no CUDA GPU" in proc.stderr and proc.stdout == ""
