"""Run facts: what a run's checkpoints depend on beyond config.yaml, recorded in run_facts.json.

The tokenizer's fingerprint, max_length, the model's size, the world size, the global batch and the
LoRA adapter (r, target modules...): a data dir re-preprocessed at the same path or another
--num-processes changes no config key, yet would silently change a resumed run. A resume with other
facts is refused, naming each change.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, InputError
from hfllm.launch import is_main_process, world_size
from hfllm.output import log
from hfllm.train.rundir import FACTS, RunDir, decide, shown

# Model config fields that fix the shapes of the weights in a checkpoint.
MODEL_FACTS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "num_labels",
)
# How a fact is called in messages, and what restores it ({old}: the recorded value).
FACT_NAMES = {
    "tokenizer": ("tokenizer fingerprint", "use data tokenized with the old tokenizer"),
    "max_length": ("max_length", "use data packed to max_length {old}"),
    "model": ("model size", "set the model back to the old size"),
    "labels": ("labels", "use data with the old label set"),
    "world_size": ("world size", "resume with world size {old} (--num-processes {old} on one machine)"),
    "global_batch_size": ("global batch size", "keep per-device batch x processes x accumulation as before"),
    "peft": ("peft", "set the peft section back to the one the checkpoints were made with"),
}


def run_facts(
    tokenizer: str | None,
    max_length: int | None,
    model_config: Any,
    global_batch_size: int,
    **extra: Any,
) -> dict[str, Any]:
    """Return the facts a run's checkpoints depend on (recorded in run_facts.json when it starts)."""
    model = {key: getattr(model_config, key, None) for key in MODEL_FACTS}
    return {
        "format": 1,
        "tokenizer": tokenizer,
        "max_length": int(max_length) if max_length else None,
        "model": {key: value for key, value in model.items() if value is not None},
        "world_size": world_size(),
        "global_batch_size": int(global_batch_size),
        **extra,
    }


def planned_global_batch(training: dict[str, Any]) -> int:
    """Return per-device batch x processes x accumulation as the `training:` settings ask for."""
    per_device = int(training.get("per_device_train_batch_size") or 8)
    accumulation = int(training.get("gradient_accumulation_steps") or 1)
    return per_device * world_size() * accumulation


def facts_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """Return (fact, name in messages, old, new) for each recorded fact whose value changed."""
    changes = []
    for key, (name, _) in FACT_NAMES.items():
        before, after = old.get(key), new.get(key)
        if key not in old or key not in new or before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for sub in sorted(set(before) | set(after)):
                if before.get(sub) != after.get(sub):
                    changes.append((key, f"{key}.{sub}", before.get(sub), after.get(sub)))
        else:
            changes.append((key, name, before, after))
    return changes


def check_resume_facts(run: RunDir, facts: dict[str, Any], force: bool = False) -> None:
    """Record `facts` for run.start(); when resuming, raise ConfigError if the checkpoints were made
    with other ones (naming each change, old -> new), or only warn with `force` (--resume-force)."""
    run.facts = facts
    if run.resume_from is None:
        return
    recorded = Path(run.resume_from).parent.parent / FACTS
    if not recorded.is_file():
        log.info("%s records no run facts (an older run dir): resuming without comparing them", recorded)
        return
    try:
        old = json.loads(recorded.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{recorded}: unreadable ({exc})", "pass --overwrite to start again") from None
    changes = facts_changes(old, facts)
    if not changes:
        return
    said = "; ".join(f"{name} {shown(a)} -> {shown(b)}" for _, name, a, b in changes)
    if force:
        if is_main_process():
            log.warning("--resume-force: resuming from %s although %s", run.resume_from, said)
        return
    remedies = list(dict.fromkeys(FACT_NAMES[key][1].format(old=shown(a)) for key, _, a, _ in changes))
    raise ConfigError(
        f"{recorded}: cannot resume, the checkpoints were made with other settings: {said}",
        f"{'; '.join(remedies)}; or pass --resume-force to resume anyway, or --overwrite to start again",
    )


def check_world_size_before_launch(
    output_dir: Path, resume: str, overwrite: bool, force: bool, processes: int
):
    """Refuse, before starting `processes` workers, to resume a run recorded with another world size
    (else every worker would load everything, then print the same refusal)."""
    if overwrite or force or resume == "never":
        return
    try:
        run = decide(Path(output_dir), resume)
    except (ConfigError, InputError):
        return  # the run itself reports these, once
    if run.resume_from is None or run.finished:
        return
    recorded = Path(run.resume_from).parent.parent / FACTS
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(recorded.read_text(encoding="utf-8"))
        if old.get("world_size", processes) != processes:
            check_resume_facts(run, {**old, "world_size": processes})
