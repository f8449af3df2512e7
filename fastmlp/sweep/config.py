"""Sweep configuration: a W&B sweep YAML file, checked and translated into Optuna terms.

The format is the one ``wandb sweep`` reads, so the same file drives both engines::

    name: quick                        # optional; default: the file name without suffix
    method: random                     # grid | random | bayes
    metric: {name: val_accuracy, goal: maximize}   # goal defaults to minimize, as in W&B
    run_cap: 6                         # optional: the sweep's total number of trials
    early_terminate: {type: hyperband, min_iter: 2, eta: 3}
    parameters:
      optimizer: {values: [adam, nadam]}
      learning_rate: {distribution: log_uniform_values, min: 1e-4, max: 1e-2}
      epochs: {value: 3}

Parameter names are fastmlp settings (``fastmlp.runs.config.settings``: the long flag names of
``fastmlp train``). Each parameter becomes an Optuna distribution:

=======================  ==========================================  =======================
W&B distribution         spec keys                                   Optuna distribution
=======================  ==========================================  =======================
constant                 ``value``                                   none: a fixed setting
categorical              ``values``                                  CategoricalDistribution
int_uniform              ``min``, ``max`` (both integers)            IntDistribution
uniform                  ``min``, ``max``                            FloatDistribution
q_uniform                ``min``, ``max``, ``q`` (default 1)         FloatDistribution(step=q)
log_uniform_values       ``min``, ``max`` (> 0)                      FloatDistribution(log)
log_uniform              ``min``, ``max`` (natural-log exponents)    FloatDistribution(log)
=======================  ==========================================  =======================

Without ``distribution``, ``value`` means constant, ``values`` categorical, and ``min`` /
``max`` int_uniform when both are integers, else uniform (the W&B rules). Everything else
(other distributions, ``probabilities``, nested parameters, ``program``/``command``,
``metric.target``, hyperband ``s``/``strict``) raises :class:`SweepConfigError` naming the
key: a setting is never dropped silently.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.runs.config import (
    ConfigError,
    defaults,
    normalize_config,
    parse_yaml,
    read_text_file,
    settings,
)

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
# Per-epoch metrics of a run (fastmlp.training.EpochMetrics): what a sweep can optimise and
# Hyperband can prune on.
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform_values",
    "log_uniform",
)
# W&B distributions the local engine cannot reproduce exactly.
UNSUPPORTED_DISTRIBUTIONS = (
    "q_log_uniform",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "project",
    "entity",
)
SPEC_KEYS = ("distribution", "value", "values", "min", "max", "q")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "eta")
# A grid search with more points than this is a mistake (a min..max over millions).
MAX_GRID_POINTS = 1_000_000
# Sweep names become directory and study names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# A YAML 1.1 loader reads 1e-3 (no dot) as a string; such strings are taken as numbers.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class SweepConfigError(ConfigError):
    """The sweep configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class Parameter:
    """One swept setting: a W&B distribution with its choices or bounds.

    ``choices`` for categorical; ``low``/``high`` (in value space, also for log_uniform)
    and ``step`` (q_uniform) otherwise.
    """

    name: str
    distribution: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None

    def optuna_distribution(self) -> Any:
        """The Optuna distribution that samples this parameter the way W&B would."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.distribution == "categorical":
            return CategoricalDistribution(self.choices)
        if self.distribution == "int_uniform":
            return IntDistribution(int(self.low), int(self.high))
        log = self.distribution in ("log_uniform_values", "log_uniform")
        return FloatDistribution(self.low, self.high, log=log, step=self.step)

    def grid_size(self) -> int:
        """How many values a grid search visits (counted, not listed); an error for a
        continuous distribution."""
        if self.distribution == "categorical":
            return len(self.choices)
        if self.distribution == "int_uniform":
            return int(self.high) - int(self.low) + 1
        if self.distribution == "q_uniform":
            return round((self.high - self.low) / self.step) + 1
        self.grid_values()  # raises for a continuous distribution
        return 0

    def first_value(self) -> Any:
        """A value of this parameter (for checking it alongside the sweep's constants)."""
        return self.choices[0] if self.choices else self.low

    def grid_values(self) -> list[Any]:
        """Every value a grid search visits; an error for a continuous distribution."""
        if self.distribution == "categorical":
            return list(self.choices)
        if self.distribution == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1))
        if self.distribution == "q_uniform":
            steps = round((self.high - self.low) / self.step)
            return [round(self.low + k * self.step, 12) for k in range(steps + 1)]
        raise SweepConfigError(
            f"method grid needs a finite set of values, but parameter {self.name!r} has the "
            f"continuous distribution {self.distribution}: give values, or use int_uniform "
            "or q_uniform"
        )


@dataclass(frozen=True)
class Hyperband:
    """W&B's hyperband early termination: ``min_iter`` and ``max_iter`` in epochs, ``eta``
    the reduction factor (each rung keeps the best 1/eta of the trials)."""

    min_iter: int
    eta: int = 3
    max_iter: int | None = None


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep configuration.

    ``parameters`` are the swept settings, ``constants`` the fixed ones (``value`` specs,
    and ``project``/``entity`` as ``wandb_project``/``wandb_entity``). ``raw`` is the mapping
    as read, which the W&B engine sends to W&B unchanged.
    """

    name: str
    method: str
    metric: str
    goal: str
    parameters: dict[str, Parameter]
    constants: dict[str, Any]
    hyperband: Hyperband | None = None
    run_cap: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the swept parameters, by name."""
        return {
            name: parameter.optuna_distribution() for name, parameter in self.parameters.items()
        }

    def grid(self) -> dict[str, list[Any]]:
        """The search space of a grid search (Optuna's GridSampler takes it as is)."""
        return {name: parameter.grid_values() for name, parameter in self.parameters.items()}

    def grid_size(self) -> int:
        """The number of points of the grid."""
        return math.prod(parameter.grid_size() for parameter in self.parameters.values())

    def max_epochs(self) -> int:
        """The most epochs any trial trains (Hyperband's maximum resource)."""
        if "epochs" in self.parameters:
            parameter = self.parameters["epochs"]
            candidates = parameter.choices or (parameter.high,)
            return max(int(value) for value in candidates)
        return int(self.constants.get("epochs", defaults()["epochs"]))

    def settings(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's settings for ``run_experiment``: the constants plus the sampled values."""
        return {**self.constants, **params}


def sweep_identity(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two configurations the same sweep: all keys but name, description, run_cap."""
    return {
        key: value for key, value in raw.items() if key not in ("name", "description", "run_cap")
    }


def _number(value: Any) -> Any:
    """``value``, with numeric strings such as "1e-3" turned into floats."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _check_value(name: str, value: Any, scalar: bool = True) -> None:
    """Raise if ``value`` is not a valid value of the fastmlp setting ``name``; swept values
    (``scalar``) must also be numbers, strings or booleans, which Optuna can store."""
    if scalar and not isinstance(value, (str, int, float, bool)):
        raise SweepConfigError(
            f"sweep parameter {name!r}: value {value!r} must be a number, a string or a boolean"
        )
    try:
        normalize_config({name: value})
    except ConfigError as error:
        raise SweepConfigError(f"sweep parameter {name!r}: {error}") from None


def _bound(name: str, spec: Mapping[str, Any], key: str) -> float:
    if key not in spec:
        raise SweepConfigError(f"sweep parameter {name!r}: distribution needs {key!r}")
    value = _number(spec[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SweepConfigError(
            f"sweep parameter {name!r}: {key} must be a number, got {spec[key]!r}"
        )
    return value


def _infer_distribution(name: str, spec: Mapping[str, Any]) -> str:
    """The W&B default: value -> constant, values -> categorical, min/max -> (int_)uniform."""
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        low, high = _number(spec["min"]), _number(spec["max"])
        both_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
        return "int_uniform" if both_int else "uniform"
    raise SweepConfigError(f"sweep parameter {name!r} needs value, values, or min and max")


def _parameter(name: str, spec: Any) -> Parameter | tuple[str, Any]:
    """One ``parameters`` entry: a Parameter, or ("constant", value) for a fixed setting."""
    if name not in settings():
        raise SweepConfigError(
            f"sweep parameter {name!r} is not a fastmlp setting; known: {', '.join(settings())}"
        )
    if not isinstance(spec, Mapping):
        raise SweepConfigError(
            f"sweep parameter {name!r} must be a mapping such as {{values: [...]}}, got {spec!r}"
        )
    unknown = [key for key in spec if key not in SPEC_KEYS]
    if unknown:
        raise SweepConfigError(
            f"sweep parameter {name!r}: key {unknown[0]!r} is not supported by the local engine "
            f"(supported: {', '.join(SPEC_KEYS)})"
        )
    distribution = spec.get("distribution") or _infer_distribution(name, spec)
    if distribution in UNSUPPORTED_DISTRIBUTIONS:
        raise SweepConfigError(
            f"sweep parameter {name!r}: distribution {distribution!r} is not supported by the "
            f"local engine; use one of {', '.join(DISTRIBUTIONS)}"
        )
    if distribution not in DISTRIBUTIONS:
        raise SweepConfigError(
            f"sweep parameter {name!r}: unknown distribution {distribution!r}; "
            f"use one of {', '.join(DISTRIBUTIONS)}"
        )
    if distribution == "constant":
        if "value" not in spec:
            raise SweepConfigError(f"sweep parameter {name!r}: distribution constant needs 'value'")
        value = _number(spec["value"])
        _check_value(name, value, scalar=False)
        return ("constant", value)
    if distribution == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"sweep parameter {name!r}: 'values' must be a non-empty list")
        choices = tuple(_number(value) for value in values)
        for value in choices:
            _check_value(name, value)
        if len(set(map(repr, choices))) != len(choices):
            raise SweepConfigError(f"sweep parameter {name!r}: 'values' lists a value twice")
        return Parameter(name, distribution, choices=choices)

    low, high = _bound(name, spec, "min"), _bound(name, spec, "max")
    if distribution == "log_uniform":
        try:
            low, high = math.exp(low), math.exp(high)
        except OverflowError:
            raise SweepConfigError(
                f"sweep parameter {name!r}: log_uniform takes min and max as natural "
                f"logarithms, and exp({max(low, high):g}) overflows; did you mean "
                "log_uniform_values?"
            ) from None
    if not low < high:
        raise SweepConfigError(f"sweep parameter {name!r}: min must be less than max")
    step = None
    if distribution == "int_uniform":
        if low != int(low) or high != int(high):
            raise SweepConfigError(
                f"sweep parameter {name!r}: int_uniform needs integer min and max"
            )
        low, high = int(low), int(high)
    if distribution == "log_uniform_values" and low <= 0:
        raise SweepConfigError(f"sweep parameter {name!r}: log_uniform_values needs min > 0")
    if distribution == "q_uniform":
        step = _bound(name, spec, "q") if "q" in spec else 1.0
        if step <= 0:
            raise SweepConfigError(f"sweep parameter {name!r}: q must be > 0, got {step:g}")
        steps = (high - low) / step
        if not math.isfinite(steps) or abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            raise SweepConfigError(
                f"sweep parameter {name!r}: q must be > 0 and divide max - min exactly"
            )
    elif "q" in spec:
        raise SweepConfigError(f"sweep parameter {name!r}: 'q' only applies to q_uniform")
    for value in (low, high):
        _check_value(name, value)
    return Parameter(name, distribution, low=low, high=high, step=step)


def _metric(raw: Any) -> tuple[str, str]:
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise SweepConfigError("sweep config needs metric: {name: val_accuracy, goal: maximize}")
    unknown = [key for key in raw if key not in ("name", "goal")]
    if unknown:
        raise SweepConfigError(f"metric key {unknown[0]!r} is not supported by the local engine")
    name, goal = raw["name"], str(raw.get("goal", "minimize")).strip().lower()
    if name not in METRICS:
        raise SweepConfigError(f"unknown metric name {name!r}; use one of {', '.join(METRICS)}")
    if goal not in GOALS:
        raise SweepConfigError(f"metric goal must be maximize or minimize, got {raw['goal']!r}")
    return name, goal


def _hyperband(raw: Any) -> Hyperband:
    if not isinstance(raw, Mapping):
        raise SweepConfigError(
            "early_terminate must be a mapping such as {type: hyperband, min_iter: 2}"
        )
    if raw.get("type") != "hyperband":
        raise SweepConfigError(
            f"early_terminate type {raw.get('type')!r} is not supported; use hyperband"
        )
    unknown = [key for key in raw if key not in HYPERBAND_KEYS]
    if unknown:
        raise SweepConfigError(
            f"early_terminate key {unknown[0]!r} is not supported by the local engine "
            f"(supported: {', '.join(HYPERBAND_KEYS)})"
        )
    if "min_iter" not in raw:
        raise SweepConfigError(
            "early_terminate hyperband needs min_iter (epochs before the first cut)"
        )
    values = {}
    for key, smallest in (("min_iter", 1), ("max_iter", 1), ("eta", 2)):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                raise SweepConfigError(
                    f"early_terminate {key} must be an integer >= {smallest}, got {value!r}"
                )
            values[key] = value
    if "max_iter" in values and values["max_iter"] <= values["min_iter"]:
        raise SweepConfigError("early_terminate max_iter must be greater than min_iter")
    return Hyperband(**values)


def parse_sweep_config(raw: Any, default_name: str = "sweep") -> SweepConfig:
    """Check a W&B sweep configuration mapping and translate it.

    Raises:
        SweepConfigError: naming the first key that is wrong or that the local engine
            cannot honour.
    """
    if not isinstance(raw, Mapping):
        raise SweepConfigError(
            "a sweep config must be a mapping with method, metric and parameters"
        )
    raw = _json_compatible(raw)
    unknown = [key for key in raw if key not in TOP_LEVEL_KEYS]
    if unknown:
        hint = " (fastmlp runs every trial itself)" if unknown[0] in ("program", "command") else ""
        raise SweepConfigError(
            f"sweep config key {unknown[0]!r} is not supported by fastmlp sweep{hint}; "
            f"supported: {', '.join(TOP_LEVEL_KEYS)}"
        )
    method = raw.get("method")
    if method not in METHODS:
        raise SweepConfigError(f"sweep config method must be grid, random or bayes, got {method!r}")
    metric, goal = _metric(raw.get("metric"))
    name = str(raw.get("name") or default_name)
    if not NAME_PATTERN.fullmatch(name):
        raise SweepConfigError(
            f"sweep name {name!r} may only use letters, digits, '_', '.' and '-'"
        )
    specs = raw.get("parameters")
    if not isinstance(specs, Mapping) or not specs:
        raise SweepConfigError("sweep config needs parameters: a mapping of setting names to specs")

    parameters: dict[str, Parameter] = {}
    constants: dict[str, Any] = {}
    for key, value in (("project", raw.get("project")), ("entity", raw.get("entity"))):
        if value is not None:
            constants[f"wandb_{key}"] = str(value)
    for parameter_name, spec in specs.items():
        parsed = _parameter(str(parameter_name), spec)
        if isinstance(parsed, Parameter):
            parameters[parsed.name] = parsed
        else:
            constants[str(parameter_name)] = parsed[1]

    hyperband = (
        _hyperband(raw["early_terminate"]) if raw.get("early_terminate") is not None else None
    )
    run_cap = raw.get("run_cap")
    if run_cap is not None and (
        isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1
    ):
        raise SweepConfigError(f"run_cap must be a positive integer, got {run_cap!r}")
    config = SweepConfig(
        name=name,
        method=method,
        metric=metric,
        goal=goal,
        parameters=parameters,
        constants=constants,
        hyperband=hyperband,
        run_cap=run_cap,
        raw=dict(raw),
    )
    if method == "grid":
        size = config.grid_size()  # raises for a continuous parameter
        if size > MAX_GRID_POINTS:
            raise SweepConfigError(
                f"the grid has {size:,} points, more than {MAX_GRID_POINTS:,}: give fewer "
                "values, or use method random or bayes"
            )
    _check_together(config)
    if hyperband is not None and hyperband.min_iter > config.max_epochs():
        raise SweepConfigError(
            f"early_terminate min_iter {hyperband.min_iter} exceeds the trials' "
            f"{config.max_epochs()} epochs: Hyperband could never stop a trial"
        )
    if metric.startswith("val_") and config.constants.get("val_fraction") == 0:
        raise SweepConfigError(f"metric {metric} needs a validation split, but val_fraction is 0")
    return config


def _check_together(config: SweepConfig) -> None:
    """Raise if the constants cannot make a valid run with any value of the swept
    parameters (checked with each parameter's first value): every trial would fail."""
    sample = {name: parameter.first_value() for name, parameter in config.parameters.items()}
    try:
        normalize_config({**config.constants, **sample})
    except ConfigError as error:
        raise SweepConfigError(f"the sweep's settings do not make a valid run: {error}") from None


def _json_compatible(raw: Any) -> Any:
    """The config with values JSON cannot hold (YAML dates and times) as strings, the way
    they are written; Optuna and sweep.json store the config as JSON."""
    if isinstance(raw, Mapping):
        return {str(key): _json_compatible(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_json_compatible(value) for value in raw]
    if isinstance(raw, (datetime.date, datetime.time)):
        return raw.isoformat()
    return raw


def read_sweep_config(path: str | PathLike[str], name: str | None = None) -> SweepConfig:
    """Read and check a sweep configuration file (YAML, or JSON which is YAML too).

    ``name`` overrides the file's ``name`` (default: the file name without its suffix).
    """
    path = Path(path)
    try:
        raw = parse_yaml(read_text_file(path, "sweep config"), path, "sweep config")
    except ConfigError as error:
        raise SweepConfigError(str(error)) from None
    if name is not None and isinstance(raw, Mapping):
        raw = {**raw, "name": name}
    return parse_sweep_config(raw, default_name=path.stem)
