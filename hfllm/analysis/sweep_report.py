"""What a sweep leaves behind: trials.jsonl, a table on stderr, plots, and best.yaml ready to run."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from hfllm.fsutil import atomic_save_figure, atomic_write_text

STATES = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def redact(url: str) -> str:
    """Return a storage URL without its password (user:secret@host -> user:***@host)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def trial_record(trial: Any, metric: str) -> dict[str, Any]:
    """Return one line of trials.jsonl."""
    return {
        "number": trial.number,
        "state": STATES.get(trial.state.name, trial.state.name.lower()),
        metric: trial.value,
        "params": trial.params,
        "run_dir": trial.user_attrs.get("run_dir"),
        "seconds": trial.user_attrs.get("seconds"),
        "exit_code": trial.user_attrs.get("exit_code"),
        "error": trial.user_attrs.get("error"),
        "intermediate": {str(step): value for step, value in sorted(trial.intermediate_values.items())},
    }


def write_reports(study: Any, sweep_dir: Path, metric: str, kind: str, final: bool) -> dict[str, Any]:
    """Write trials.jsonl, best.yaml and the plots from the study (every process's trials); return the
    counts, the best trial and the files. `final`: also print the table on stderr."""
    trials = study.get_trials(deepcopy=False)
    records = [trial_record(t, metric) for t in trials]
    files = {"trials": str(sweep_dir / "trials.jsonl")}
    atomic_write_text(sweep_dir / "trials.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in records))
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = None
    if complete:
        best_trial = study.best_trial
        files["best"] = str(write_best(best_trial, sweep_dir, metric, kind, len(trials)))
        best = {
            "number": best_trial.number,
            "value": best_trial.value,
            "params": best_trial.params,
            "run_dir": best_trial.user_attrs.get("run_dir"),
            "config": files["best"],
        }
        space = study.user_attrs.get("space", {}).get("parameters", {})
        log_scale = {key for key, p in space.items() if isinstance(p, dict) and p.get("log")}
        plots = write_plots(complete, sweep_dir, metric, study.direction.name.lower(), log_scale)
        files["plots"] = [str(p) for p in plots]
    if final:
        sys.stderr.write(table(records, metric, best))
    counts = {
        state: sum(r["state"] == state for r in records)
        for state in ("complete", "pruned", "failed", "running")
    }
    return {"trials": counts, "best": best, "files": files}


def write_best(trial: Any, sweep_dir: Path, metric: str, kind: str, total: int) -> Path:
    """Write best.yaml: the best trial's config, with its own run dir (sweep_dir/best), ready to run."""
    from hfllm.config import to_yaml, validate_config
    from hfllm.config.schemas import schema_for

    data = dict(trial.user_attrs["config"])
    data["output_dir"] = str(sweep_dir / "best")
    config = validate_config(schema_for(kind), data, {}, f"trial {trial.number}")
    path = sweep_dir / "best.yaml"
    header = (
        f"# hfllm {kind} --config {path}\n"
        f"# The best of {total} sweep trials: trial {trial.number} ({trial.user_attrs.get('run_dir')}), "
        f"{metric} = {trial.value:.6g}.\n"
        f"# Parameters: {json.dumps(trial.params, default=str)}\n"
    )
    atomic_write_text(path, header + to_yaml(config))
    return path


def table(records: list[dict[str, Any]], metric: str, best: dict[str, Any] | None) -> str:
    """Return the trials as a text table (the best one marked with *)."""
    names = sorted({k for r in records for k in r["params"]})
    header = ["trial", "state", metric, *names, "seconds"]
    rows = []
    for r in records:
        value = r[metric]
        rows.append(
            [
                f"{r['number']}{'*' if best and best['number'] == r['number'] else ''}",
                r["state"],
                f"{value:.6g}" if value is not None else "-",
                *[_cell(r["params"].get(n)) for n in names],
                f"{r['seconds']:.0f}" if r["seconds"] else "-",
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    failed = [
        f"  trial {r['number']}: {r['error']}" for r in records if r["state"] == "failed" and r["error"]
    ]
    return (
        "\n".join(["sweep trials (* = best):", *lines, *(["failed trials:", *failed] if failed else [])])
        + "\n"
    )


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def write_plots(
    complete: list[Any], sweep_dir: Path, metric: str, direction: str, log_scale: set[str]
) -> list[Path]:
    """Draw the metric over the trials (with the best so far) and against each parameter (`log_scale`: the
    parameters sampled on a log scale); return the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    numbers = [t.number for t in complete]
    values = [t.value for t in complete]
    pick = min if direction == "minimize" else max
    best_so_far = [pick(values[: i + 1]) for i in range(len(values))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(numbers, values, "o", label=metric)
    ax.step(numbers, best_so_far, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.legend()
    ax.set_title(f"{metric} over the trials ({direction})")
    fig.tight_layout()
    paths = [atomic_save_figure(fig, sweep_dir / "metric-over-trials.png")]
    for name in sorted({k for t in complete for k in t.params}):
        points = [(t.params[name], t.value) for t in complete if name in t.params]
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [p[0] for p in points]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            ax.plot(xs, [p[1] for p in points], "o")
            if name in log_scale:
                ax.set_xscale("log")
        else:  # categorical: one column per choice
            labels = sorted({str(x) for x in xs})
            ax.plot([labels.index(str(x)) for x in xs], [p[1] for p in points], "o")
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against {name}")
        fig.tight_layout()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        paths.append(atomic_save_figure(fig, sweep_dir / f"metric-vs-{safe}.png"))
    return paths
