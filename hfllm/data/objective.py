"""What a data dir was built for (masked / causal / supervised), and the check a training command makes."""

from __future__ import annotations

from typing import Any

from hfllm.errors import InputError

OBJECTIVES = ("masked", "causal", "supervised")


def objective_of(manifest: dict[str, Any]) -> str:
    """Return the objective a data dir was built for: the manifest's, else what its packing mode implies.

    Data dirs written before the manifest recorded it were masked-LM (group, line) or supervised.
    """
    recorded = manifest.get("objective")
    if recorded in OBJECTIVES:
        return recorded
    return "supervised" if manifest.get("mode") == "supervised" else "masked"


def check_objective(data: Any, expected: str) -> None:
    """Raise InputError when the data dir `data` (a DataDir) was built for another objective than `expected`.

    `expected` is masked, causal or supervised; the message names both and the preprocess setting to change.
    """
    found = objective_of(data.manifest)
    if found == expected:
        return
    task = data.manifest.get("task")
    built = f"{found} ({task})" if found == "supervised" and task else found
    fix = {
        "masked": "rerun `hfllm preprocess` with objective: masked (the default)",
        "causal": "rerun `hfllm preprocess` with objective: causal",
        "supervised": "rerun `hfllm preprocess` with packing.mode: supervised (and the task)",
    }[expected]
    raise InputError(
        f"{data.path}: the data dir was built for the {built} objective, not {expected} "
        f"(manifest.json objective: {found})",
        fix,
    )
