"""`training.report_to`: experiment trackers, checked when the config is validated, without importing them.

Transformers raises only when the Trainer is built (after the model is loaded) if a tracker's
package is missing; hfllm says so at validate time and names the extra that installs it.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from pathlib import Path
from typing import Any

from hfllm.config.yamlio import Origins
from hfllm.errors import ConfigError

# report_to name -> (module whose presence Transformers checks, what to pip install).
PACKAGES: dict[str, tuple[str, str]] = {
    "wandb": ("wandb", "hfllm[wandb]"),
    "mlflow": ("mlflow", "hfllm[mlflow]"),
    "trackio": ("trackio", "hfllm[trackio]"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "comet_ml": ("comet_ml", "comet_ml"),
    "neptune": ("neptune", "neptune"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "codecarbon": ("codecarbon", "codecarbon"),
    "swanlab": ("swanlab", "swanlab"),
    "dagshub": ("dagshub", "dagshub mlflow"),
    "flyte": ("flytekit", "flytekit"),
    "azure_ml": ("azureml", "azureml-core"),
}
SPECIAL = ("all", "none")


@functools.cache
def known_trackers() -> tuple[str, ...]:
    """Return the report_to names of the installed Transformers (its INTEGRATION_TO_CALLBACK keys)."""
    spec = importlib.util.find_spec("transformers")
    try:
        source = Path(next(iter(spec.submodule_search_locations))) / "integrations" / "integration_utils.py"
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (AttributeError, OSError, StopIteration, SyntaxError, TypeError):
        return tuple(PACKAGES)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "INTEGRATION_TO_CALLBACK" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return tuple(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    return tuple(PACKAGES)


def tracker_names(report_to: Any) -> list[str]:
    """Return the names `training.report_to` lists (a string is one name; "all" and "none" included)."""
    return [report_to] if isinstance(report_to, str) else list(report_to or [])


def check_report_to(training: dict[str, Any], origins: Origins, source: str) -> None:
    """Raise ConfigError for a report_to name Transformers does not know or whose package is missing."""
    names = tracker_names(training.get("report_to"))
    where = origins.get(("training", "report_to"), source)
    known = known_trackers()
    for name in names:
        if name in SPECIAL:
            continue
        if name not in known:
            close = difflib.get_close_matches(str(name), [*known, *SPECIAL], n=1, cutoff=0.6)
            hint = (
                f"did you mean `{close[0]}`?"
                if close
                else f"use one of: {', '.join(sorted(known))}, all, none"
            )
            raise ConfigError(f"{where}: unknown tracker {name!r} in `training.report_to`", hint)
        module, install = PACKAGES.get(name, (name, name))
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"{where}: `training.report_to` names {name}, but the {module} package is not installed",
                f"pip install '{install}' (or remove {name} from training.report_to)",
            )
