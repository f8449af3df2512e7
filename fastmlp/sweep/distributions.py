"""W&B's parameter distributions, sampled by the local engine with W&B's meaning.

Each swept parameter is one Optuna distribution in a space where sampling it uniformly
(random search) gives exactly W&B's distribution, and where TPE (Bayesian search) sees the
distribution's own geometry; :meth:`Parameter.decode` turns the sampled point into the
value, quantised as W&B does (``round(x / q) * q``, an integer when ``q`` is one):

==========================  =====================================  =============================
W&B distribution            spec keys (defaults)                   Optuna samples, then decode
==========================  =====================================  =============================
constant                    value                                  nothing: a fixed setting
categorical                 values                                 the values (lists as JSON)
categorical + probabilities values, probabilities                  u in [0, 1]: W&B's cumulative
int_uniform                 min, max (integers)                    the integers min..max
uniform                     min, max                               [min, max]
q_uniform                   min, max, q (1)                        [min, max], quantised
log_uniform                 min, max (natural logs of the bounds)  [e^min, e^max] on a log scale
log_uniform_values          min, max (> 0)                         [min, max] on a log scale
q_log_uniform               min, max, q (1)                        as log_uniform, quantised
q_log_uniform_values        min, max, q (1)                        as log_uniform_values, quant.
inv_log_uniform             min, max (log(1/X) in [min, max])      [e^-max, e^-min], log scale
inv_log_uniform_values      min, max (X in [min, max])             [min, max] on a log scale
normal, q_normal            mu (0), sigma (1), q (1)               u: mu + sigma * Phi^-1(u)
log_normal, q_log_normal    mu (0), sigma (1), q (1)               u: exp(mu + sigma * Phi^-1(u))
beta, q_beta                a (1), b (1), q (1)                    u: the beta(a, b) quantile
==========================  =====================================  =============================

A grid search visits every value of ``values`` (without probabilities), ``int_uniform`` and
``q_uniform`` (min, min + q, ..., max); other distributions are continuous and refused.
A setting that only takes whole numbers (``epochs``, ``batch_size``...) gets the sampled
value rounded to an integer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastmlp.sweep.errors import SweepConfigError
from fastmlp.sweep.quantiles import beta_quantile, normal_quantile

# distribution -> the spec keys it takes besides ``distribution`` (W&B's schema).
DISTRIBUTION_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
    "beta": ("a", "b"),
    "q_beta": ("a", "b", "q"),
}
# W&B's name for categorical with probabilities.
DISTRIBUTION_ALIASES = {"categorical_w_probabilities": "categorical"}
# Distributions sampled as a quantile u in [0, 1] (no bounded Optuna range holds them).
QUANTILE_SPACE = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
# Distributions sampled on a log scale, and those whose min/max are logarithms.
LOG_SCALE = (
    "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
    "inv_log_uniform", "inv_log_uniform_values",
)  # fmt: skip
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
# How far into each tail quantile-space distributions are checked against the setting.
CHECKED_TAIL = 0.001


def quantise(value: float, q: float) -> float | int:
    """W&B's quantisation, ``round(value / q) * q`` (half to even, as NumPy rounds): an
    integer when ``q`` is one; float noise (0.30000000000000004) rounded away."""
    steps = round(value / q)
    if isinstance(q, int):
        return int(steps * q)
    return float(f"{steps * q:.12g}")


def number(value: Any) -> Any:
    """``value`` with numeric text as a number (PyYAML reads ``1e-3`` without a dot as a
    string): ``"64"`` -> 64, ``"1e-3"`` -> 0.001; other values as they are, text trimmed."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        result = float(text)
    except ValueError:
        return text
    return result if math.isfinite(result) else text


def _encoded(values: tuple[Any, ...]) -> bool:
    """Whether categorical values must be stored as JSON text (Optuna keeps scalars only)."""
    return any(isinstance(value, (list, tuple, dict)) for value in values)


@dataclass(frozen=True)
class Parameter:
    """One swept setting: a W&B distribution with its values or bounds.

    ``name`` is the fastmlp setting, ``source`` the name in the config (``n_epoch``,
    ``optimizer.lr``). ``choices`` are categorical values as written (duplicates dropped),
    ``probabilities`` their W&B weights; ``low``/``high`` bound the sampled range in value
    space (``e^min``, ``e^max`` for log_uniform); ``q`` the quantisation step; ``mu``,
    ``sigma``, ``a``, ``b`` the normal and beta parameters. ``grid``: the sweep is a grid
    search; ``integer``: the setting takes whole numbers only.
    """

    name: str
    distribution: str
    source: str = ""
    choices: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | int | None = None
    mu: float = 0.0
    sigma: float = 1.0
    a: float = 1.0
    b: float = 1.0
    grid: bool = False
    integer: bool = False

    def optuna_distribution(self) -> Any:
        """The Optuna distribution of this parameter's sampled point (see module doc)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.distribution == "categorical" and not self.probabilities:
            if _encoded(self.choices):
                return CategoricalDistribution([json.dumps(value) for value in self.choices])
            return CategoricalDistribution(self.choices)
        if self.distribution in QUANTILE_SPACE or self.probabilities:
            return FloatDistribution(0.0, 1.0)
        if self.distribution == "int_uniform":
            return IntDistribution(int(self.low), int(self.high))
        if self.grid and self.distribution == "q_uniform":
            return CategoricalDistribution(self.grid_values())
        return FloatDistribution(self.low, self.high, log=self.distribution in LOG_SCALE)

    def decode(self, point: Any) -> Any:
        """The setting's value at Optuna's sampled ``point``."""
        if self.distribution == "categorical":
            if self.probabilities:
                return self.choices[self._category(point)]
            return json.loads(point) if _encoded(self.choices) else point
        if self.distribution == "int_uniform" or (self.grid and self.distribution == "q_uniform"):
            return point
        value = float(point)
        if self.distribution in ("normal", "q_normal"):
            value = normal_quantile(value, self.mu, self.sigma)
        elif self.distribution in ("log_normal", "q_log_normal"):
            try:
                value = math.exp(normal_quantile(value, self.mu, self.sigma))
            except OverflowError:  # beyond any float: no setting accepts it
                value = math.inf
        elif self.distribution in ("beta", "q_beta"):
            value = beta_quantile(value, self.a, self.b)
        if self.q is not None:
            value = quantise(value, self.q)
        if self.integer and not isinstance(value, int):
            value = round(value)
        return value

    def _category(self, u: float) -> int:
        """W&B's pick for quantile ``u``: the first value whose cumulative probability
        exceeds it."""
        total = 0.0
        for index, probability in enumerate(self.probabilities):
            total += probability
            if u < total:
                return index
        return len(self.probabilities) - 1

    def grid_values(self) -> list[Any]:
        """Every point a grid search visits (as Optuna stores them); an error for a
        distribution a grid cannot enumerate."""
        if self.distribution == "categorical" and not self.probabilities:
            if _encoded(self.choices):
                return [json.dumps(value) for value in self.choices]
            return list(self.choices)
        if self.distribution == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1))
        if self.distribution == "q_uniform":
            steps = round((self.high - self.low) / self.q)
            values = [self.low + k * self.q for k in range(steps + 1)]
            if isinstance(self.q, int) and isinstance(self.low, int):
                return values
            return [float(f"{value:.12g}") for value in values]
        raise SweepConfigError(
            f"method grid needs a finite set of values, but parameter {self.source!r} has the "
            f"{'distribution categorical with probabilities' if self.probabilities else ''}"
            f"{'' if self.probabilities else f'continuous distribution {self.distribution}'}: "
            "give values, or use int_uniform or q_uniform, or method random or bayes"
        )

    def grid_size(self) -> int:
        """How many points a grid search visits (counted, not listed)."""
        if self.distribution == "int_uniform":
            return int(self.high) - int(self.low) + 1
        if self.distribution == "q_uniform":
            return round((self.high - self.low) / self.q) + 1
        return len(self.grid_values())

    def checked_values(self) -> list[Any]:
        """Values that stand for all this parameter can take, to check against the setting:
        every categorical value, the ends of a range, the far tails of an unbounded one."""
        if self.distribution == "categorical":
            return list(self.choices)
        if self.distribution in QUANTILE_SPACE:
            return [self.decode(u) for u in (CHECKED_TAIL, 0.5, 1 - CHECKED_TAIL)]
        return [self.decode(self.low), self.decode(self.high)]

    def first_value(self) -> Any:
        """A value of this parameter (the first, or the median of an unbounded one)."""
        if self.distribution in QUANTILE_SPACE:
            return self.decode(0.5)
        return self.checked_values()[0]

    def largest(self) -> float:
        """The largest value it takes (for a normal or beta: its 99.9th percentile)."""
        return max(value for value in self.checked_values() if isinstance(value, (int, float)))

    def describe(self) -> str:
        """The distribution and its values or range, as ``--dry_run`` shows them."""
        if self.distribution == "categorical":
            shown = ", ".join(json.dumps(value) if isinstance(value, (list, dict)) else str(value)
                              for value in self.choices)  # fmt: skip
            if self.probabilities:
                weights = ", ".join(f"{p:g}" for p in self.probabilities)
                return f"categorical: {shown} (probabilities {weights})"
            return f"categorical: {shown}"
        quantised = f", quantised to multiples of {self.q:g}" if self.q is not None else ""
        whole = ", rounded to whole numbers" if self.integer and self.q is None else ""
        if self.distribution == "int_uniform":
            return f"int_uniform: {int(self.low)}..{int(self.high)}"
        if self.distribution in ("normal", "q_normal", "log_normal", "q_log_normal"):
            inner = f"normal(mu={self.mu:g}, sigma={self.sigma:g})"
            if self.distribution.endswith("log_normal"):
                inner = f"exp({inner})"
            return f"{self.distribution}: {inner}{quantised}{whole}"
        if self.distribution in ("beta", "q_beta"):
            inner = f"beta(a={self.a:g}, b={self.b:g}) in [0, 1]"
            return f"{self.distribution}: {inner}{quantised}{whole}"
        scale = ", log scale" if self.distribution in LOG_SCALE else ""
        return f"{self.distribution}: [{self.low:.6g}, {self.high:.6g}]{scale}{quantised}{whole}"

    def sampled_as(self, method: str) -> str:
        """What Optuna samples for this parameter under ``method`` (for ``--dry_run``)."""
        if method == "grid":
            return f"{self.grid_size()} grid values"
        if self.distribution in QUANTILE_SPACE or self.probabilities:
            return "u in [0, 1], then the quantile"
        if self.distribution == "categorical":
            return "one of the values"
        if self.distribution == "int_uniform":
            return "an integer"
        space = "log(value)" if self.distribution in LOG_SCALE else "the value"
        return f"{space}{', then quantised' if self.q is not None else ''}"


def _finite(value: Any) -> bool:
    """A number that a float holds, finite (an integer of hundreds of digits is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _bound(source: str, spec: Mapping[str, Any], key: str, default: float | None = None) -> Any:
    if key not in spec:
        if default is not None:
            return default
        raise SweepConfigError(f"sweep parameter {source!r}: its distribution needs {key!r}")
    value = number(spec[key])
    if not _finite(value):
        raise SweepConfigError(
            f"sweep parameter {source!r}: {key} must be a number, got {spec[key]!r}"
        )
    return value


def infer_distribution(source: str, spec: Mapping[str, Any]) -> str:
    """W&B's default: value -> constant, values -> categorical, min/max -> int_uniform when
    both are integers, else uniform."""
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        low, high = number(spec["min"]), number(spec["max"])
        both_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
        return "int_uniform" if both_int else "uniform"
    raise SweepConfigError(
        f"sweep parameter {source!r} needs value, values, min and max, or a distribution"
    )


def _probabilities(source: str, spec: Mapping[str, Any], count: int) -> tuple[float, ...]:
    raw = spec["probabilities"]
    if not isinstance(raw, list) or len(raw) != count:
        raise SweepConfigError(
            f"sweep parameter {source!r}: probabilities must list one number per value"
        )
    weights = tuple(_bound(source, {"probabilities": p}, "probabilities") for p in raw)
    if any(p < 0 for p in weights) or abs(sum(weights) - 1) > 1e-6:
        raise SweepConfigError(
            f"sweep parameter {source!r}: probabilities must be >= 0 and sum to 1, "
            f"got {', '.join(f'{p:g}' for p in weights)}"
        )
    return weights


def _unique(values: list[Any]) -> tuple[tuple[Any, ...], list[Any]]:
    """The values without repeats, and the repeats (1, 1.0 and True are one value, as they
    are to Optuna)."""
    kept: list[Any] = []
    repeats = []
    for value in values:
        (repeats if value in kept else kept).append(value)
    return tuple(kept), repeats


def categorical(
    name: str, source: str, spec: Mapping[str, Any], *, grid: bool
) -> tuple[Parameter, list[Any]]:
    """A categorical Parameter from ``values`` (and ``probabilities``); the repeated values
    it dropped."""
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        raise SweepConfigError(f"sweep parameter {source!r}: 'values' must be a non-empty list")
    if "probabilities" in spec:
        choices = tuple(number(value) for value in values)
        probabilities = _probabilities(source, spec, len(choices))
        return Parameter(name, "categorical", source, choices, probabilities, grid=grid), []
    choices, repeats = _unique([number(value) for value in values])
    return Parameter(name, "categorical", source, choices, grid=grid), repeats


def ranged(
    name: str,
    source: str,
    distribution: str,
    spec: Mapping[str, Any],
    *,
    grid: bool,
    integer: bool,
) -> Parameter:
    """A Parameter of any distribution but constant and categorical (checked)."""
    if distribution in QUANTILE_SPACE:
        if distribution.endswith("beta"):
            a, b = _bound(source, spec, "a", 1.0), _bound(source, spec, "b", 1.0)
            if a <= 0 or b <= 0:
                raise SweepConfigError(f"sweep parameter {source!r}: beta needs a > 0 and b > 0")
            extra: dict[str, float] = {"a": a, "b": b}
        else:
            sigma = _bound(source, spec, "sigma", 1.0)
            if sigma < 0:
                raise SweepConfigError(f"sweep parameter {source!r}: sigma must be >= 0")
            extra = {"mu": _bound(source, spec, "mu", 0.0), "sigma": sigma}
        return Parameter(
            name, distribution, source, q=_step(source, spec, distribution, grid),
            grid=grid, integer=integer, **extra,
        )  # fmt: skip
    low, high = _bound(source, spec, "min"), _bound(source, spec, "max")
    if not low < high:
        raise SweepConfigError(f"sweep parameter {source!r}: min must be less than max")
    if distribution == "int_uniform" and (low != int(low) or high != int(high)):
        raise SweepConfigError(f"sweep parameter {source!r}: int_uniform needs integer min and max")
    if distribution in ("log_uniform", "q_log_uniform", "inv_log_uniform"):
        low, high = _exponentials(source, distribution, low, high)
    elif distribution in LOG_SCALE and low <= 0:
        raise SweepConfigError(f"sweep parameter {source!r}: {distribution} needs min > 0")
    if distribution == "int_uniform":
        low, high = int(low), int(high)
    return Parameter(
        name, distribution, source, low=low, high=high,
        q=_step(source, spec, distribution, grid), grid=grid,
        integer=integer and distribution != "int_uniform",
    )  # fmt: skip


def _exponentials(source: str, distribution: str, low: float, high: float) -> tuple[float, float]:
    """The value-space bounds of a distribution whose min and max are natural logarithms."""
    try:
        if distribution == "inv_log_uniform":  # log(1/X) in [min, max]
            return math.exp(-high), math.exp(-low)
        return math.exp(low), math.exp(high)
    except OverflowError:
        raise SweepConfigError(
            f"sweep parameter {source!r}: {distribution} takes min and max as natural "
            f"logarithms, and exp({max(abs(low), abs(high)):g}) overflows; did you mean "
            f"{distribution}_values?"
        ) from None


def _step(
    source: str, spec: Mapping[str, Any], distribution: str, grid: bool
) -> float | int | None:
    """``q`` of a quantised distribution (W&B's default 1.0), None otherwise; a grid walks
    from min to max in steps of q, so q must divide max - min."""
    if not distribution.startswith("q_"):
        return None
    q = _bound(source, spec, "q", 1.0)
    if q <= 0:
        raise SweepConfigError(f"sweep parameter {source!r}: q must be > 0, got {q:g}")
    if grid and distribution == "q_uniform":
        low, high = _bound(source, spec, "min"), _bound(source, spec, "max")
        steps = (high - low) / q
        if not math.isfinite(steps) or abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            raise SweepConfigError(
                f"sweep parameter {source!r}: a grid walks from min to max in steps of q, "
                "so q must divide max - min exactly"
            )
    return q
