"""`hfllm export --merge`: a LoRA adapter folded into its base model and saved as a full model that stock
`AutoModelFor*.from_pretrained` loads (no peft needed, no adapter overhead at inference)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, InputError
from hfllm.models.adapters import ADAPTER_CONFIG, is_adapter_dir, load_adapter_model, read_adapter_config
from hfllm.output import log
from hfllm.owners import check_owner, entries, write_marker

# Scratch names that hfllm.owners.TRANSIENT tells every command to ignore (a parent may be a run dir).
WORK_PREFIX = ".hfllm-work-"


def adapter_dir_of(path: Path) -> Path:
    """Return the adapter dir of a run dir or of a model dir; InputError when neither holds an adapter."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"--merge {path}: not found", "give the run dir (or its model/) of a LoRA run")
    for candidate in (path, path / "model"):
        if is_adapter_dir(candidate):
            return candidate
    full = any((p / "config.json").is_file() for p in (path, path / "model"))
    raise InputError(
        f"--merge {path}: not a LoRA adapter dir (no {ADAPTER_CONFIG})"
        + ("; it holds a full model already, there is nothing to merge" if full else ""),
        "give the run dir (or its model/) of a finetune or pretrain run that had a `peft:` section",
    )


def merge_adapter(source: Path, output_dir: Path, overwrite: bool = False) -> dict[str, Any]:
    """Return the export's result JSON after writing the merged full model into `output_dir`.

    `output_dir` must be new, empty or an earlier export (replaced only with `overwrite`); the model is
    written into a temporary dir beside it and renamed into place, so no half-written model is ever seen.
    """
    started = time.time()
    adapter = adapter_dir_of(source)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output-dir {output_dir} is a file", "give a new or empty directory")
    check_owner(output_dir, "export", "--overwrite" if overwrite else "")
    if entries(output_dir) and not overwrite:
        raise ConfigError(
            f"{output_dir} holds an earlier export",
            "pass --overwrite to replace it, or give another --output-dir",
        )
    model, tokenizer, task = load_adapter_model(adapter)
    base = str(read_adapter_config(adapter).get("base_model_name_or_path"))
    merged = model.merge_and_unload()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{output_dir.name}-", dir=output_dir.parent))
    try:
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (staging / "README.md").write_text(merged_card(adapter, base), encoding="utf-8")
        write_marker(staging, "export", merged_from=str(adapter.resolve()), base_model=base)
        _publish(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("merged %s into %s: a full model in %s", adapter, base, output_dir)
    return {
        "status": "merged",
        "command": "export",
        "adapter_dir": str(adapter),
        "base_model": base,
        "output_dir": str(output_dir),
        "task": task,
        "parameters": sum(p.numel() for p in merged.parameters()),
        "seconds": round(time.time() - started, 2),
    }


def _publish(staging: Path, dest: Path) -> None:
    """Rename `staging` to `dest`; an existing `dest` (empty, or an earlier export) is moved aside first."""
    if not dest.exists():
        os.replace(staging, dest)
        return
    aside = dest.with_name(f"{WORK_PREFIX}{dest.name}-replaced-{os.getpid()}")
    os.replace(dest, aside)
    try:
        os.replace(staging, dest)
    except BaseException:
        os.replace(aside, dest)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def merged_card(adapter: Path, base: str) -> str:
    """Return the merged model's card: the adapter's card, saying it is now a full model."""
    file = adapter / "README.md"
    card = file.read_text(encoding="utf-8") if file.is_file() else "---\nlibrary_name: transformers\n---\n"
    lines = [
        line for line in card.replace("library_name: peft", "library_name: transformers", 1).splitlines()
        if not line.startswith("This is a LoRA adapter")
    ]  # fmt: skip
    note = (
        f"A full model: the LoRA adapter `{adapter}` merged into its base model `{base}` by "
        "`hfllm export --merge`. It loads with stock `AutoModelFor*.from_pretrained`."
    )
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), len(lines) - 1)
    return "\n".join([*lines[: title + 1], "", note, *lines[title + 1 :]]) + "\n"
