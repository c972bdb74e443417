"""training.push_to_hub: the final model/ (with its card) goes to the Hub once, after metrics.json, through
huggingface_hub's create_repo / upload_folder (a fake client here); offline or without a token the run is
refused before training; the token is written nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import run_cli

SECRET = "hf_fakeSecretToken1234567890"


class FakeHub:
    """Records what hfllm asks of the Hub client, and what the uploaded folder held at that moment."""

    def __init__(self, run_dir: Path, fail: bool = False):
        self.run_dir, self.fail = run_dir, fail
        self.repos: list[dict] = []
        self.uploads: list[dict] = []

    def __call__(self, token):
        self.token = token
        return self

    def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None):
        self.repos.append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, repo_type=None, revision=None, commit_message=None):
        if self.fail:
            raise ConnectionError("the Hub did not answer")
        folder = Path(folder_path)
        self.uploads.append(
            {
                "repo_id": repo_id,
                "folder": folder,
                "files": sorted(p.name for p in folder.iterdir()),
                "metrics_written": (self.run_dir / "metrics.json").is_file(),
                "card": (folder / "README.md").read_text(encoding="utf-8"),
            }
        )

        class Commit:
            commit_url = f"https://huggingface.co/{repo_id}/commit/abc"

        return Commit()


def _config(root: Path, model_dir: Path, data_dir: Path, **training):
    from hfllm.config import load_config
    from hfllm.config.schemas.finetune import FinetuneConfig

    settings = {
        "max_steps": 2,
        "per_device_train_batch_size": 16,
        "report_to": [],
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 1,
        "load_best_model_at_end": False,
        **training,
    }
    mapping = {
        "kind": "finetune",
        "model": {"name_or_path": str(model_dir)},
        "data": {"dir": str(data_dir)},
        "output_dir": str(root / "run"),
        "training": settings,
    }
    (root / "ft.yaml").write_text(yaml.safe_dump(mapping), encoding="utf-8")
    return load_config(FinetuneConfig, root / "ft.yaml")


@pytest.fixture(scope="module")
def data(ft_build, ft_tiny, tmp_path_factory):
    model_dir, tokenizer = ft_tiny
    return model_dir, ft_build.sequence_data_dir(tmp_path_factory.mktemp("push") / "data", tokenizer)


def test_push_uploads_model_and_card_once_after_metrics(data, tmp_path, monkeypatch):
    from hfllm.train import hub_push, runner

    model_dir, data_dir = data
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    fake = FakeHub(tmp_path / "run", fail=True)
    monkeypatch.setattr(hub_push, "hub_api", fake)
    config = _config(
        tmp_path, model_dir, data_dir, push_to_hub=True, hub_model_id="me/tiny-cls", hub_private_repo=True,
        hub_token=SECRET,
    )  # fmt: skip
    # The upload fails: the run is finished and saved all the same, and says how to push again.
    with pytest.raises(Exception, match="pushing it to me/tiny-cls failed: the Hub did not answer"):
        runner.run(config)
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run" / "hub.json").exists()
    fake.fail = False
    result = runner.run(config)  # the same command again: the finished run pushes what it did not
    assert result["status"] == "already_finished"
    assert fake.token == SECRET and fake.repos[-1] == {
        "repo_id": "me/tiny-cls",
        "private": True,
        "exist_ok": True,
    }
    (upload,) = fake.uploads
    assert upload["folder"] == tmp_path / "run" / "model" and upload["metrics_written"]
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(upload["files"])
    assert "model-index" in upload["card"] and "hub_token: null" in upload["card"]
    assert (tmp_path / "run" / "hub.json").is_file()
    runner.run(config)
    assert len(fake.uploads) == 1  # pushed once
    # The token is written nowhere: config.yaml, card, checkpoints (training_args.bin), logs.
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_push_refused_before_training_offline_or_without_token(data, tmp_path, monkeypatch):
    model_dir, data_dir = data
    _config(tmp_path, model_dir, data_dir, push_to_hub=True)
    offline = run_cli("finetune", "--config", tmp_path / "ft.yaml")  # conftest sets HF_HUB_OFFLINE=1
    assert offline.returncode == 2, offline.stderr
    assert "push_to_hub" in offline.stderr and "HF_HUB_OFFLINE" in offline.stderr
    assert "Traceback" not in offline.stderr and not (tmp_path / "run" / "checkpoints").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login either
    no_token = run_cli("finetune", "--config", tmp_path / "ft.yaml")
    assert no_token.returncode == 2, no_token.stderr
    assert "no Hugging Face token" in no_token.stderr and "HF_TOKEN" in no_token.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
