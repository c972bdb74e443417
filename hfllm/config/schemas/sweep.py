"""The search space of `hfllm sweep` (`kind: sweep`): what to vary (dotted config keys), how to sample
and prune. Read with hfllm's YAML loader and validated, so a mistake names file:line:column.

    kind: sweep
    metric: validation.f1_macro        # optional: --metric wins
    direction: maximize                # optional: --direction wins
    sampler: {type: tpe, seed: 42, options: {n_startup_trials: 2}}
    pruner: {type: median, options: {n_startup_trials: 1}}
    parameters:
      training.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      training.per_device_train_batch_size: {type: categorical, choices: [8, 16, 32]}
      training.num_train_epochs: {type: int, low: 1, high: 4}
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from hfllm.config.schemas.base import Section

Scalar = bool | int | float | str | None
SAMPLERS = ("tpe", "random", "grid", "qmc", "gp")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "threshold")


class FloatParameter(Section):
    """A float between `low` and `high` (log scale with `log: true`, multiples of `step` if given)."""

    type: Literal["float"] = Field(description="float, int or categorical.")
    low: float = Field(description="Smallest value.")
    high: float = Field(description="Largest value.")
    log: bool = Field(False, description="Sample on a log scale (low must be > 0).")
    step: float | None = Field(None, gt=0, description="Only multiples of this step above `low`.")

    @model_validator(mode="after")
    def _bounded(self) -> FloatParameter:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"needs finite low < high (got low {self.low}, high {self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self


class IntParameter(Section):
    """An integer between `low` and `high` inclusive."""

    type: Literal["int"] = Field(description="float, int or categorical.")
    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value.")
    log: bool = Field(False, description="Sample on a log scale (low must be >= 1).")
    step: int = Field(1, ge=1, description="Only low, low + step, ...")

    @model_validator(mode="after")
    def _bounded(self) -> IntParameter:
        if self.low >= self.high:
            raise ValueError(f"needs low < high (got low {self.low}, high {self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log: true needs low >= 1 and step 1")
        return self


class CategoricalParameter(Section):
    """One of the listed values (numbers, strings, booleans or null)."""

    type: Literal["categorical"] = Field(description="float, int or categorical.")
    choices: list[Scalar] = Field(min_length=1, description="The values to choose from.")


Parameter = Annotated[FloatParameter | IntParameter | CategoricalParameter, Field(discriminator="type")]


class SamplerSection(Section):
    """How Optuna picks the next values."""

    type: Literal["tpe", "random", "grid", "qmc", "gp"] = Field(
        "tpe", description="tpe (default), random, grid (categorical and int parameters), qmc, gp."
    )
    seed: int | None = Field(42, description="Seed of the sampler; null: a different search each time.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="More keyword arguments of the Optuna sampler (e.g. n_startup_trials).",
    )


class PrunerSection(Section):
    """How Optuna stops unpromising trials from their intermediate evaluations."""

    type: Literal["none", "median", "percentile", "successive_halving", "hyperband", "threshold"] = Field(
        "median", description="none, median (default), percentile, successive_halving, hyperband, threshold."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the Optuna pruner (e.g. n_startup_trials, n_warmup_steps, "
        "percentile, lower, upper).",
    )


class SweepSpace(Section):
    """`hfllm sweep --space FILE`: the search space of a sweep (the config to tune is --config)."""

    kind: Literal["sweep"] = Field("sweep", description="Says this file is a sweep's search space.")
    metric: str | None = Field(
        None, description="Dotted key of the metric to optimise (e.g. validation.f1_macro)."
    )
    direction: Literal["minimize", "maximize", "min", "max"] | None = Field(
        None, description="minimize or maximize the metric."
    )
    sampler: SamplerSection = Field(default_factory=SamplerSection, description="The Optuna sampler.")
    pruner: PrunerSection = Field(default_factory=PrunerSection, description="The Optuna pruner.")
    parameters: dict[str, Parameter] = Field(
        min_length=1,
        description="Dotted config keys (as for --set), each with {type: float|int, low, high, log, step} or "
        "{type: categorical, choices: [...]}.",
    )
