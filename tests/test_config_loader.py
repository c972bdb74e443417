"""The config system on its own: positions, did-you-mean, types, --set, precedence, round-trip."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from hfllm.config import load_config, to_yaml
from hfllm.config.schemas.base import Section, training_section
from hfllm.config.training_args import check_training_section, training_arg_fields
from hfllm.config.yamlio import parse_yaml
from hfllm.errors import ConfigError


class Data(Section):
    files: list[str] = Field(description="input files")
    text_column: str = "text"


class Model(Section):
    hidden_size: int = 32
    dropout: float = 0.1


class Example(Section):
    kind: Literal["example"] = "example"
    data: Data
    model: Model = Model()
    output_dir: str = "runs/example"
    training: training_section({"learning_rate": 5e-4, "seed": 7})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, sets=None, flags=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(Example, write(tmp_path, text), sets, flags)
    return str(info.value)


def test_unknown_key_names_place_and_suggests(tmp_path):
    msg = error_of(tmp_path, "data:\n  files: [a.txt]\nmodel:\n  hiden_size: 64\n")
    assert f"{tmp_path}/cfg.yaml:4:3" in msg
    assert "unknown key `model.hiden_size`" in msg
    assert "did you mean `model.hidden_size`?" in msg


def test_unknown_training_key_suggests_trainingarguments_field(tmp_path):
    msg = error_of(tmp_path, "data: {files: [a]}\ntraining:\n  lerning_rate: 0.1\n")
    assert "cfg.yaml:3:3" in msg and "`training.lerning_rate`" in msg
    assert "did you mean `training.learning_rate`?" in msg


def test_wrong_type_names_key_and_expected_type(tmp_path):
    msg = error_of(tmp_path, "data: {files: [a]}\nmodel:\n  hidden_size: big\n")
    assert "cfg.yaml:3:3" in msg and "`model.hidden_size`" in msg and "integer" in msg and "'big'" in msg


def test_wrong_training_type(tmp_path):
    msg = error_of(tmp_path, "data: {files: [a]}\ntraining:\n  per_device_train_batch_size: eight\n")
    assert "`training.per_device_train_batch_size` should be int" in msg and "cfg.yaml:3:3" in msg


def test_missing_required_key(tmp_path):
    msg = error_of(tmp_path, "data:\n  text_column: body\n")
    assert "missing required key `data.files`" in msg and "cfg.yaml:1:1" in msg


@pytest.mark.parametrize(
    "text, where",
    [
        ("data: {files: [a]\n", "cfg.yaml:2:1"),
        ("data:\n  files: [a]\n   bad: 1\n", "cfg.yaml:3:4"),
        ("a: 1\na: 2\n", "2:1"),
    ],
)
def test_malformed_yaml_names_line_and_column(tmp_path, text, where):
    msg = error_of(tmp_path, text)
    assert where in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(Example, tmp_path / "nope.yaml")


def test_set_reaches_nested_keys_and_list_indices(tmp_path):
    path = write(tmp_path, "data:\n  files: [a.txt, b.txt]\n")
    cfg = load_config(
        Example, path, ["data.files.1=c.txt", "data.files.2=d.txt", "model.dropout=0", "training.seed=3"]
    )
    assert cfg.data.files == ["a.txt", "c.txt", "d.txt"]
    assert cfg.model.dropout == 0.0 and cfg.training["seed"] == 3


def test_set_values_are_yaml_typed(tmp_path):
    cfg = load_config(
        Example,
        write(tmp_path, "data: {files: [a]}\n"),
        ["training.report_to=[tensorboard]", "training.bf16=true"],
    )
    assert cfg.training["report_to"] == ["tensorboard"] and cfg.training["bf16"] is True


def test_set_unknown_key_is_an_error_naming_the_set(tmp_path):
    msg = error_of(tmp_path, "data: {files: [a]}\n", sets=["model.hidden_sise=8"])
    assert "--set model.hidden_sise=8" in msg and "did you mean `model.hidden_size`?" in msg


@pytest.mark.parametrize("expr", ["model.hidden_size", "=3", "a..b=1"])
def test_set_without_key_or_equals(tmp_path, expr):
    msg = error_of(tmp_path, "data: {files: [a]}\n", sets=[expr])
    assert "--set" in msg and "KEY=VALUE" in msg or "empty part" in msg


def test_set_index_past_end(tmp_path):
    msg = error_of(tmp_path, "data: {files: [a]}\n", sets=["data.files.5=x"])
    assert "index 5 is past the end of `data.files`" in msg


def test_precedence_defaults_file_set_flags(tmp_path):
    path = write(tmp_path, "data: {files: [a]}\noutput_dir: from-file\ntraining: {learning_rate: 0.01}\n")
    cfg = load_config(Example, path)
    assert cfg.output_dir == "from-file" and cfg.training == {"learning_rate": 0.01, "seed": 7}
    cfg = load_config(Example, path, ["output_dir=from-set", "training.learning_rate=0.02"])
    assert cfg.output_dir == "from-set" and cfg.training["learning_rate"] == 0.02
    cfg = load_config(
        Example, path, ["output_dir=from-set"], flags={"output_dir": "from-flag", "unused": None}
    )
    assert cfg.output_dir == "from-flag"
    assert load_config(Example, write(tmp_path, "data: {files: [a]}\n")).output_dir == "runs/example"


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(
        Example, write(tmp_path, "data: {files: [a]}\ntraining: {max_steps: 5}\n"), ["model.dropout=0.2"]
    )
    text = to_yaml(cfg)
    again = load_config(Example, write(tmp_path, text))
    assert again == cfg and to_yaml(again) == text


def test_training_fields_match_the_installed_dataclass():
    import dataclasses

    from transformers import TrainingArguments

    real = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert set(training_arg_fields()) == real


def test_training_type_check_accepts_unions_and_rejects_wrong_types():
    ok = {
        "report_to": "none",
        "eval_steps": 0.5,
        "fsdp_config": {"a": 1},
        "warmup_steps": 10,
        "save_total_limit": None,
    }
    check_training_section(ok, {}, "x")
    for bad in ({"num_train_epochs": "3"}, {"do_train": "yes"}, {"seed": 1.5}):
        with pytest.raises(ConfigError):
            check_training_section(bad, {}, "x")


def test_parse_yaml_records_positions():
    data, origins = parse_yaml("a:\n  b: [1, {c: 2}]\n", "f.yaml")
    assert data == {"a": {"b": [1, {"c": 2}]}}
    assert origins[("a", "b")] == "f.yaml:2:3" and origins[("a", "b", 1, "c")] == "f.yaml:2:11"


def test_yaml_scalars_people_write_in_training_configs():
    data, _ = parse_yaml("lr: 1e-3\nstrategy: no\nflag: true\nsteps: 10\n", "f.yaml")
    assert data == {"lr": 0.001, "strategy": "no", "flag": True, "steps": 10}


def test_set_accepts_exponent_floats(tmp_path):
    cfg = load_config(Example, write(tmp_path, "data: {files: [a]}\n"), ["training.learning_rate=1e-3"])
    assert cfg.training["learning_rate"] == 0.001
