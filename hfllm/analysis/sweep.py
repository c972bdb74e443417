"""`hfllm sweep` as a library call: an Optuna study over any config keys, one run dir per trial.

The study lives in an RDB storage (by default SQLite in the sweep dir), so rerunning the same command
continues it, and several processes or machines given the same `--storage` URL and `--study-name`
share it. Trials run as subprocesses (hfllm/analysis/sweep_trial.py); a trial that fails is recorded
as failed and the sweep goes on; a trial left running by a sweep that died is resumed from its
checkpoints by the next sweep on the same machine.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from hfllm.analysis import sweep_space
from hfllm.analysis.sweep_report import redact, write_reports
from hfllm.analysis.sweep_trial import STOP_GRACE_S, launch, watch
from hfllm.errors import ConfigError, HfllmError
from hfllm.fsutil import atomic_write_text
from hfllm.output import log

DEFAULT_METRIC = "validation.loss"
HEARTBEAT_S = 30
LOWER_IS_BETTER = ("loss", "perplexity", "mse", "mae", "rmse", "error")


def _without_heartbeat_warnings(function):
    """Run `function` with Optuna's heartbeat warnings off: it flags its heartbeat API as experimental and
    expects heartbeats from Study.optimize only; the ask-and-tell loop here records them itself."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
            warnings.filterwarnings("ignore", message=".*fail_stale_trials.*")
            return function(*args, **kwargs)

    return wrapper


@_without_heartbeat_warnings
def run_sweep(
    config_path: Path,
    space_path: Path,
    trials: int,
    sets: list[str] | None = None,
    output_dir: Path | None = None,
    metric: str | None = None,
    direction: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    num_processes: int | None = None,
    poll_s: float = 2.0,
) -> dict[str, Any]:
    """Run (or continue) a sweep until the study holds `trials` trials; return its summary.

    `num_processes`: each trial trains on that many data-parallel processes (`--num-processes`)."""
    from hfllm.config import load_any

    started = time.time()
    base = load_any(Path(config_path), sets)
    if base.kind not in ("pretrain", "finetune"):
        raise ConfigError(f"{config_path}: sweep runs pretrain or finetune configs, not `{base.kind}`")
    space, origins = sweep_space.load_space(Path(space_path))
    metric = metric or space.metric or DEFAULT_METRIC
    direction = resolve_direction(direction or space.direction, metric)
    mapping = base.model_dump(mode="json")
    check_parameters(base.kind, mapping, space, origins)
    sampler = sweep_space.make_sampler(space, origins, str(space_path))
    pruner = sweep_space.make_pruner(space, origins, str(space_path))
    sweep_dir = Path(output_dir or f"{base.output_dir}-sweep")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    name = study_name or sweep_dir.resolve().name
    study, rdb = open_study(url, name, sampler, pruner, direction)
    check_same_sweep(study, base.kind, mapping, space, metric)
    options = ["--num-processes", str(num_processes)] if num_processes and num_processes > 1 else []
    runner = TrialRunner(study, rdb, base.kind, mapping, space, origins, metric, sweep_dir, poll_s, options)
    for frozen in runner.orphans():
        runner.resume(frozen)
    _fail_stale(study)
    while len(runner.claimed()) < trials:
        if sweep_space.exhausted(sampler, study):
            log.info("sweep: the grid is exhausted after %d trials", len(runner.claimed()))
            break
        runner.run_new()
    summary = write_reports(study, sweep_dir, metric, base.kind, final=True)
    if summary["best"] is None:
        counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items() if n)
        raise HfllmError(
            f"no trial of the sweep finished with a value of {metric} ({counts})",
            f"see the errors in {sweep_dir / 'trials.jsonl'} and each trial's sweep-trial.log",
        )
    return {
        "status": "finished",
        "sweep_dir": str(sweep_dir),
        "study_name": name,
        "storage": redact(url),
        "metric": metric,
        "direction": direction,
        **summary,
        "resumed_trials": runner.resumed,
        "seconds": round(time.time() - started, 2),
    }


def resolve_direction(direction: str | None, metric: str) -> str:
    """Return minimize/maximize: as given (min/max accepted), else from the metric's name (losses go down)."""
    if direction:
        return {"min": "minimize", "max": "maximize"}.get(direction, direction)
    lower = any(word in metric.rsplit(".", 1)[-1].lower() for word in LOWER_IS_BETTER)
    chosen = "minimize" if lower else "maximize"
    log.info("sweep: %s %s (from its name; pass --direction to choose)", chosen, metric)
    return chosen


def trial_mapping(
    mapping: dict[str, Any], params: dict[str, Any], run_dir: Path, where: dict[str, str]
) -> tuple[dict, dict]:
    """Return (config mapping, origins) of a trial: the base config, the trial's values, its run dir."""
    import copy

    from hfllm.config.overrides import apply_override

    data, origins = copy.deepcopy(mapping), {}
    for key, value in params.items():
        path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
        apply_override(data, path, value, where.get(key, key), origins)
    data["output_dir"] = str(run_dir)
    return data, origins


def validate_trial(kind: str, data: dict[str, Any], origins: dict, source: str) -> Any:
    """Return the trial's validated config (ConfigError naming the space file's line of a bad key)."""
    from hfllm.config import validate_config
    from hfllm.config.schemas import schema_for

    return validate_config(schema_for(kind), data, origins, source)


def check_parameters(kind: str, mapping: dict[str, Any], space: Any, origins: dict) -> None:
    """Raise ConfigError (at the parameter's line) unless every parameter key takes a sample value."""
    where = _param_origins(space, origins)
    sample = {}
    for key, p in space.parameters.items():
        sample[key] = p.choices[0] if p.type == "categorical" else p.low
    data, trial_origins = trial_mapping(mapping, sample, Path("sweep-check"), where)
    validate_trial(kind, data, trial_origins, "search space")


def _param_origins(space: Any, origins: dict) -> dict[str, str]:
    return {key: origins.get(("parameters", key), "search space") for key in space.parameters}


def open_study(url: str, name: str, sampler: Any, pruner: Any, direction: str):
    """Return (study, RDB storage) for `url`, created on first use, loaded afterwards."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=600)
    except (ValueError, ImportError) as exc:  # a bad URL, a missing database driver
        raise ConfigError(f"--storage {redact(url)}: {exc}") from None
    try:
        study = optuna.create_study(
            storage=rdb,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            direction=direction,
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. an existing study with the other direction
        raise ConfigError(f"study {name!r} in {redact(url)}: {exc}") from None
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name!r} in {redact(url)} was made to {study.direction.name.lower()}, not {direction}",
            "use another --output-dir or --study-name for a new study",
        )
    return study, rdb


def check_same_sweep(study: Any, kind: str, mapping: dict[str, Any], space: Any, metric: str) -> None:
    """Record what the study searches on first use; refuse to continue it with another config or space."""
    base = {k: v for k, v in mapping.items() if k != "output_dir"}
    wanted = {"kind": kind, "base_config": base, "space": space.model_dump(mode="json"), "metric": metric}
    attrs = study.user_attrs
    if "space" not in attrs:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    changed = [key for key, value in wanted.items() if attrs.get(key) != value]
    if changed:
        raise ConfigError(
            f"study {study.study_name!r} was made with another {', '.join(changed).replace('_', ' ')}",
            "rerun with the same config, --set values, space file and --metric to continue it, or pass "
            "another --output-dir (or --study-name) for a new sweep",
        )


def _fail_stale(study: Any) -> None:
    import optuna

    # Trials whose sweep (on another machine) stopped sending heartbeats are marked failed.
    optuna.storages.fail_stale_trials(study)


class TrialRunner:
    """Runs the trials of one sweep process: new ones, and ones a dead sweep on this machine left running."""

    def __init__(
        self, study, rdb, kind, mapping, space, origins, metric, sweep_dir, poll_s, options=()
    ) -> None:
        self.study, self.rdb, self.kind, self.mapping = study, rdb, kind, mapping
        self.space, self.metric, self.sweep_dir, self.poll_s = space, metric, sweep_dir, poll_s
        self.where = _param_origins(space, origins)
        self.distributions = sweep_space.distributions(space)
        self.host = socket.gethostname()
        self.resumed: list[int] = []
        self.options = list(options)  # added to each trial's training command (--num-processes N)

    def claimed(self) -> list[Any]:
        """Return the trials that count towards --trials: finished, failed, pruned or running."""
        from optuna.trial import TrialState

        return [t for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]

    def orphans(self) -> list[Any]:
        """Return the RUNNING trials of this machine whose sweep process is gone."""
        from optuna.trial import TrialState

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [
            t
            for t in running
            if t.user_attrs.get("host") == self.host and not _alive(t.user_attrs.get("sweep_pid"))
        ]

    def run_new(self) -> None:
        trial = self.study.ask(self.distributions)
        self._own(trial)  # first: a sweep killed from here on leaves a trial the next one takes over
        if self._prepare(trial, trial.params):
            log.info("trial %d: %s", trial.number, _params_text(trial.params))
            self._run(trial, self.run_dir(trial.number))

    def resume(self, frozen: Any) -> None:
        """Take over a trial that a dead sweep on this machine left running: rerun its command, which
        resumes from its newest checkpoint (or reports the run finished)."""
        import optuna

        trial = optuna.trial.Trial(self.study, frozen._trial_id)
        self._own(trial)
        _wait_gone(frozen.user_attrs.get("trial_pid"))
        if (self.run_dir(frozen.number) / "config.yaml").is_file() or self._prepare(trial, frozen.params):
            log.info(
                "trial %d: resuming it (its sweep stopped) in %s", frozen.number, self.run_dir(frozen.number)
            )
            self.resumed.append(frozen.number)
            self._run(trial, self.run_dir(frozen.number))

    def run_dir(self, number: int) -> Path:
        return self.sweep_dir / "trials" / f"trial-{number:04d}"

    def _prepare(self, trial: Any, params: dict[str, Any]) -> bool:
        """Write the trial's config.yaml (base config + its values + its run dir); False if it is invalid."""
        from hfllm.config import to_yaml

        run_dir = self.run_dir(trial.number)
        data, origins = trial_mapping(self.mapping, params, run_dir, self.where)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("config", data)
        try:
            config = validate_trial(self.kind, data, origins, "search space")
        except ConfigError as exc:
            self._finish(trial, "failed", error=f"invalid config: {exc}")
            return False
        atomic_write_text(run_dir / "config.yaml", to_yaml(config))
        return True

    def _own(self, trial: Any) -> None:
        trial.set_user_attr("host", self.host)
        trial.set_user_attr("sweep_pid", os.getpid())

    def _run(self, trial: Any, run_dir: Path) -> None:
        process = launch(self.kind, run_dir, self.options)
        trial.set_user_attr("trial_pid", process.pid)
        last = [0.0]

        def heartbeat() -> None:
            if time.time() - last[0] >= HEARTBEAT_S:
                last[0] = time.time()
                self.rdb.record_heartbeat(trial._trial_id)

        outcome = watch(process, trial, self.metric, run_dir, heartbeat, self.poll_s)
        self._finish(trial, outcome.state, outcome.value, outcome.error, outcome.exit_code, outcome.seconds)

    def _finish(self, trial, state, value=None, error=None, exit_code=None, seconds=None) -> None:
        from optuna.trial import TrialState

        for key, item in (("error", error), ("exit_code", exit_code), ("seconds", seconds)):
            if item is not None:
                trial.set_user_attr(key, item)
        if state == "complete":
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        shown = (
            f"{self.metric} = {value:.6g}" if value is not None else state + (f": {error}" if error else "")
        )
        (log.warning if state == "failed" else log.info)("trial %d: %s", trial.number, shown)
        try:
            write_reports(self.study, self.sweep_dir, self.metric, self.kind, final=False)
        except HfllmError:
            raise
        except Exception as exc:  # a report must not end the sweep; the final one raises
            log.warning("could not update the sweep's reports: %s", exc)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: Any) -> None:
    """Wait for the process of a trial whose sweep died (it got SIGTERM and is saving a checkpoint)."""
    deadline = time.time() + STOP_GRACE_S
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.5)
