"""Preflight checks of `hfllm pretrain`: data, tokenizer and model that do not fit together exit 3."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_pretrain import corpus_lines, make_data_dir, train_wordpiece

from hfllm.config import load_config
from hfllm.config.schemas.pretrain import PretrainConfig
from hfllm.errors import EXIT_INPUT, InputError

TINY = REPO / "configs" / "pretrain" / "tiny.yaml"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return corpus_lines(120)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, lines) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("preflight") / "data", lines, max_length=64)


def config(data: Path, out: Path, *sets: str) -> PretrainConfig:
    return load_config(PretrainConfig, TINY, [f"data_dir={data}", f"output_dir={out}", *sets])


def preflight_error(cfg: PretrainConfig) -> InputError:
    """Return the InputError that preparing the run raises (no training happens)."""
    from hfllm.recipes.masked_lm import MaskedLM

    with pytest.raises(InputError) as info:
        MaskedLM().setup(cfg)
    assert info.value.exit_code == EXIT_INPUT
    return info.value


def test_token_ids_beyond_the_embedding_matrix(small_data, tmp_path):
    error = preflight_error(config(small_data, tmp_path, "model.config.vocab_size=100"))
    assert "embedding rows" in str(error) and str(small_data) in str(error)


def test_rows_longer_than_the_position_embeddings(small_data, tmp_path):
    error = preflight_error(config(small_data, tmp_path, "model.config.max_position_embeddings=32"))
    assert "64 tokens exceed" in str(error) and "max_length <= 32" in str(error)


def test_empty_train_split(tmp_path, lines):
    data = make_data_dir(tmp_path / "data", lines, train_share=0.0)
    error = preflight_error(config(data, tmp_path / "run"))
    assert "train split is empty" in str(error)


def test_good_data_passes_preflight(small_data, tmp_path):
    from hfllm.recipes.masked_lm import MaskedLM

    inputs = MaskedLM().setup(config(small_data, tmp_path))
    model, tokenizer = inputs.model, inputs.tokenizer
    assert model.config.vocab_size == len(tokenizer) and model.config.max_position_embeddings == 64
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.num_hidden_layers == 2 and set(inputs.splits) == {"train", "validation", "test"}
    assert not (tmp_path / "run").exists()  # setup writes nothing


def test_roberta_positions_leave_room_for_the_padding_offset(small_data, tmp_path):
    from hfllm.recipes.masked_lm import MaskedLM

    inputs = MaskedLM().setup(config(small_data, tmp_path, "model.type=roberta"))
    tokenizer, model = inputs.tokenizer, inputs.model
    assert model.config.max_position_embeddings == 64 + tokenizer.pad_token_id + 1


def test_data_from_another_tokenizer_than_the_models_exits_3(small_data, tmp_path, lines):
    """The model dir's tokenizer (vocab 600) is not the data's (vocab 800): refused before training."""
    from transformers import BertConfig, BertForMaskedLM

    other = tmp_path / "other-model"
    tokenizer = train_wordpiece(lines, vocab_size=600)
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(other)
    tokenizer.save_pretrained(other)
    result = run_cli(
        "pretrain",
        "--config",
        TINY,
        "--set",
        f"data_dir={small_data}",
        "--set",
        f"model.name_or_path={other}",
        "--output-dir",
        tmp_path / "run",
    )
    assert result.returncode == 3, result.stderr
    assert "another tokenizer than the model's" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "run").exists()  # a refused run leaves nothing behind


def test_missing_data_dir_exits_3(tmp_path):
    from hfllm.train.runner import run

    with pytest.raises(InputError, match="data dir not found"):
        run(config(tmp_path / "nope", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_every_shipped_pretrain_config_validates():
    from hfllm.config import load_any

    paths = [
        *sorted((REPO / "configs" / "pretrain").glob("*.yaml")),
        REPO / "hfllm/config/starters/pretrain.yaml",
    ]
    names = {p.name for p in paths}
    assert {"tiny.yaml", "demo.yaml", "bert-base.yaml", "minilm-continue.yaml", "seed-5.1.yaml"} <= names
    for path in paths:
        cfg = load_any(path)
        assert cfg.kind == "pretrain", path
        if path.parent.name == "pretrain":
            assert path.read_text().startswith("# hfllm pretrain --config configs/pretrain/"), path
    seed = load_any(REPO / "configs/pretrain/seed-5.1.yaml")
    assert seed.model.name_or_path == "bert-base-uncased" and seed.masking.mlm_probability == 0.15
    assert (seed.training["num_train_epochs"], seed.training["per_device_train_batch_size"]) == (3, 8)
    assert (seed.training["save_steps"], seed.training["save_total_limit"]) == (10000, 2)


def test_training_settings_build_real_training_arguments(tmp_path):
    """Every shipped config's training section is accepted by the installed TrainingArguments."""
    from types import SimpleNamespace

    from hfllm.config import load_any
    from hfllm.config.training_args import build_training_arguments
    from hfllm.recipes.masked_lm import MaskedLM
    from hfllm.train.recipe import Inputs
    from hfllm.train.rundir import RunDir
    from hfllm.train.runner import training_settings

    model = SimpleNamespace(config=SimpleNamespace(hidden_size=768))  # precision is chosen from the width
    inputs = Inputs(
        model=model, tokenizer=None, data=None, splits={"train": [0], "validation": [0]}, model_name="x"
    )
    for path in sorted((REPO / "configs" / "pretrain").glob("*.yaml")):
        settings = training_settings(MaskedLM(), load_any(path), inputs, RunDir(tmp_path))
        # GPU-only settings (bf16, FSDP, DeepSpeed) are checked in tests/test_scale_configs.py.
        settings.update(bf16=False, use_cpu=True, fsdp=None, fsdp_config=None, deepspeed=None)
        args = build_training_arguments(settings)
        assert args.output_dir == str(tmp_path / "checkpoints") and not args.remove_unused_columns


def test_unigram_output_bias_starts_at_log_frequencies(small_data, tmp_path):
    import numpy as np

    from hfllm.recipes.masked_lm import MaskedLM
    from hfllm.tasks.masked_lm import unigram_log_probs

    inputs = MaskedLM().setup(config(small_data, tmp_path, "model.output_bias_init=unigram"))
    splits, tokenizer, model = inputs.splits, inputs.tokenizer, inputs.model
    bias = model.get_output_embeddings().bias.detach().numpy()
    expected = unigram_log_probs(splits["train"], len(tokenizer), tokenizer.all_special_ids)
    assert np.allclose(bias, expected, atol=1e-6) and bias.std() > 0.5
