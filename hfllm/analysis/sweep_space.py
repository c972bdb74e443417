"""Optuna's side of a sweep's search space (hfllm/config/schemas/sweep.py): distributions, sampler, pruner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfllm.config.schemas.sweep import CategoricalParameter, FloatParameter, IntParameter, SweepSpace
from hfllm.config.yamlio import Origins
from hfllm.errors import ConfigError


def load_space(path: Path) -> tuple[SweepSpace, Origins]:
    """Return the validated search space in `path` and where each of its keys is (file:line:col)."""
    from hfllm.config import validate_config
    from hfllm.config.yamlio import read_config_file

    data, origins = read_config_file(path)
    return validate_config(SweepSpace, data, origins, str(path)), origins


def distributions(space: SweepSpace) -> dict[str, Any]:
    """Return the Optuna distribution of each parameter."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for key, p in space.parameters.items():
        if isinstance(p, FloatParameter):
            out[key] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParameter):
            out[key] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[key] = CategoricalDistribution(p.choices)
    return out


def make_sampler(space: SweepSpace, origins: Origins, source: str) -> Any:
    """Return the Optuna sampler the space file asks for (ConfigError at its line when Optuna refuses)."""
    import optuna

    s = space.sampler
    where = origins.get(("sampler",), source)
    kwargs = dict(s.options)
    try:
        if s.type == "grid":
            return _grid_sampler_class()(_grid(space, where), seed=s.seed, **kwargs)
        cls = {
            "tpe": optuna.samplers.TPESampler,
            "random": optuna.samplers.RandomSampler,
            "qmc": optuna.samplers.QMCSampler,
            "gp": optuna.samplers.GPSampler,
        }[s.type]
        return cls(seed=s.seed, **kwargs)
    except (TypeError, ValueError, ImportError) as exc:
        raise ConfigError(f"{where}: sampler {s.type}: {exc}") from None


def make_pruner(space: SweepSpace, origins: Origins, source: str) -> Any:
    """Return the Optuna pruner the space file asks for."""
    import optuna

    p = space.pruner
    where = origins.get(("pruner",), source)
    cls = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }[p.type]
    try:
        return cls(**p.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: pruner {p.type}: {exc}") from None


def _grid_sampler_class() -> Any:
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """GridSampler that does not call study.stop() when the grid is done (Optuna allows that only inside
        Study.optimize); the sweep asks `is_exhausted` before each trial instead."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return AskTellGridSampler


def exhausted(sampler: Any, study: Any) -> bool:
    """Return whether a grid sampler has tried every point (other samplers never are)."""
    check = getattr(sampler, "is_exhausted", None)
    return bool(check(study)) if check is not None else False


def _grid(space: SweepSpace, where: str) -> dict[str, list[Any]]:
    grid = {}
    for key, p in space.parameters.items():
        if isinstance(p, CategoricalParameter):
            grid[key] = list(p.choices)
        elif isinstance(p, IntParameter) and not p.log:
            grid[key] = list(range(p.low, p.high + 1, p.step))
        else:
            raise ConfigError(
                f"{where}: sampler grid needs categorical or int parameters; `{key}` is a float"
            )
    return grid
