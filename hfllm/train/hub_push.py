"""`training.push_to_hub`: upload a finished run's model/ (weights, tokenizer, card, cleaning.json) to the
Hugging Face Hub, once, after metrics.json.

The Trainer's own pushes stay off (hfllm.train.runner.training_settings): they would create the repo
when the Trainer starts, push checkpoints/ (optimizer states included) on every save without hfllm's
card, and run on every rank. Here the final model/ goes up once, from rank 0, and the run records it in
hub.json, so a run whose upload failed pushes again when the same command is rerun.

TrainingArguments' own keys say where: hub_model_id (default: the run dir's name in your namespace),
hub_private_repo, hub_revision, hub_token (else HF_TOKEN or `hf auth login`). The token is never
written anywhere (config.yaml, cards and logs leave it out).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, HfllmError
from hfllm.fsutil import atomic_write_json
from hfllm.hub import hub_offline
from hfllm.output import log

RECORD = "hub.json"  # in the run dir: where model/ went


def asked(config: Any) -> bool:
    """Return whether the config asks for the final model to be pushed."""
    return bool((getattr(config, "training", None) or {}).get("push_to_hub"))


def hub_api(token: str) -> Any:
    """Return the Hub client (tests replace this function with a fake one)."""
    from huggingface_hub import HfApi

    return HfApi(token=token)


def token_for(training: dict[str, Any]) -> str | None:
    """Return the token to push with: training.hub_token, else HF_TOKEN or the saved login."""
    from huggingface_hub import get_token

    return training.get("hub_token") or get_token()


def check_push(config: Any) -> None:
    """Raise ConfigError (exit 2) before any training when push_to_hub is asked but cannot work."""
    if not asked(config):
        return
    keep = "or set training.push_to_hub: false (the model stays in the run dir's model/)"
    if hub_offline(datasets=False):
        raise ConfigError(
            "training.push_to_hub is true, but HF_HUB_OFFLINE is set: nothing can be uploaded",
            f"unset HF_HUB_OFFLINE on a machine that reaches the Hugging Face Hub, {keep}",
        )
    if not token_for(config.training):
        raise ConfigError(
            "training.push_to_hub is true, but there is no Hugging Face token",
            f"set HF_TOKEN (a write token) or run `hf auth login`, {keep}",
        )


def repo_id(config: Any, run_dir: Path) -> str:
    """Return the repo to push to: training.hub_model_id, else the run dir's name (in your namespace)."""
    return config.training.get("hub_model_id") or Path(run_dir).resolve().name


def pending(config: Any, run_dir: Path) -> bool:
    """Return whether a finished run still has to push its model (asked, and no hub.json yet)."""
    return asked(config) and not (Path(run_dir) / RECORD).is_file()


def push_model(config: Any, run_dir: Path, model_dir: Path) -> dict[str, Any]:
    """Return the push record after uploading `model_dir` to the Hub and writing it to <run>/hub.json."""
    training = config.training
    target = repo_id(config, run_dir)
    log.info("pushing %s to the Hugging Face Hub as %s", model_dir, target)
    try:
        api = hub_api(token_for(training))
        repo = api.create_repo(
            target, private=training.get("hub_private_repo"), exist_ok=True, repo_type="model"
        )
        commit = api.upload_folder(
            repo_id=getattr(repo, "repo_id", target),
            folder_path=str(model_dir),
            repo_type="model",
            revision=training.get("hub_revision"),
            commit_message=f"hfllm: model of run {Path(run_dir).resolve().name}",
        )
    except Exception as exc:  # network, permissions, a repo that exists as another type...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HfllmError(
            f"the run finished (model in {model_dir}), but pushing it to {target} failed: {reason}",
            "fix the cause and run the same command again: a finished run pushes what it has not pushed",
        ) from None
    record = {
        "repo_id": getattr(repo, "repo_id", target),
        "url": str(repo),
        "commit_url": getattr(commit, "commit_url", None),
        "revision": training.get("hub_revision"),
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(Path(run_dir) / RECORD, record)
    log.info("pushed to %s", record["commit_url"] or record["url"])
    return record
