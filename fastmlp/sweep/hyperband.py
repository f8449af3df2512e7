"""W&B's ``early_terminate: {type: hyperband, ...}``, translated for Optuna's HyperbandPruner.

W&B cuts runs at "bands" of epochs: ``min_iter``, ``min_iter * eta``, ``min_iter * eta^2``...
(or, from ``max_iter`` and ``s``: ``max_iter / eta^s``, ..., ``max_iter / eta``), keeping at
each band the runs in the best ``1/eta`` of the values reached there. Optuna's
HyperbandPruner(min_resource, max_resource, reduction_factor) has those cut points in its
most aggressive bracket, and runs other brackets that cut later; so

* ``min_iter`` -> ``min_resource`` (with ``max_iter`` and ``s``: the first band,
  ``int(max_iter / eta^s)``, which must agree with ``min_iter`` when both are given);
* ``max_iter`` -> ``max_resource`` (default: the most epochs any trial trains);
* ``eta``      -> ``reduction_factor``, which Optuna needs as an integer >= 2;
* ``strict``   -> W&B's default ``true`` compares the value a run has at the band, which is
  what Optuna does; ``false`` (its best value so far) Optuna cannot do, and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastmlp.sweep.errors import SweepConfigError

HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")


@dataclass(frozen=True)
class Hyperband:
    """Hyperband in epochs: ``min_iter`` (Optuna's min_resource), ``max_iter`` (its
    max_resource; None: the trials' epochs) and ``eta`` (its reduction factor); ``s`` as
    given, for showing W&B's bands."""

    min_iter: int
    eta: int = 3
    max_iter: int | None = None
    s: int | None = None

    def bands(self, max_epochs: int) -> list[int]:
        """The epochs at which W&B's hyperband would cut (Optuna's most aggressive
        bracket), below ``max_epochs``."""
        bands, band = [], self.min_iter
        while band < (self.max_iter or max_epochs):
            bands.append(band)
            band *= self.eta
        return bands


def _integer(raw: Mapping[str, Any], key: str, smallest: int) -> int:
    value = raw[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        why = " (Optuna's reduction factor is a whole number)" if key == "eta" else ""
        raise SweepConfigError(
            f"early_terminate {key} must be an integer >= {smallest}{why}, got {value!r}"
        )
    return value


def parse_hyperband(raw: Any) -> Hyperband:
    """Check an ``early_terminate`` mapping and translate it (see the module doc).

    Raises:
        SweepConfigError: naming the key that is wrong or that Optuna cannot honour.
    """
    if not isinstance(raw, Mapping):
        raise SweepConfigError(
            "early_terminate must be a mapping such as {type: hyperband, min_iter: 2}"
        )
    kind = raw.get("type")
    if str(kind).strip().lower() != "hyperband":
        raise SweepConfigError(f"early_terminate type {kind!r} is not supported; use hyperband")
    unknown = [key for key in raw if key not in HYPERBAND_KEYS]
    if unknown:
        raise SweepConfigError(
            f"early_terminate key {unknown[0]!r} is not a hyperband setting "
            f"(W&B's are: {', '.join(HYPERBAND_KEYS)})"
        )
    if raw.get("strict", True) is not True:
        raise SweepConfigError(
            f"early_terminate strict: {raw['strict']!r} (compare each run's best value so far) "
            "is not what Optuna's HyperbandPruner does; it compares the value at each cut, "
            "W&B's default strict: true: drop strict or set it to true"
        )
    eta = _integer(raw, "eta", 2) if "eta" in raw else 3
    max_iter = _integer(raw, "max_iter", 1) if "max_iter" in raw else None
    s = _integer(raw, "s", 1) if "s" in raw else None
    min_iter = _integer(raw, "min_iter", 1) if "min_iter" in raw else None
    if s is not None and max_iter is None:
        raise SweepConfigError("early_terminate s counts bands back from max_iter: give max_iter")
    if s is not None:
        first = _first_band(max_iter, s, eta)
        if min_iter is not None and min_iter != first:
            raise SweepConfigError(
                f"early_terminate min_iter {min_iter} disagrees with max_iter {max_iter} and "
                f"s {s}, whose first band is {first}: give min_iter, or max_iter and s"
            )
        min_iter = first
    if min_iter is None:
        raise SweepConfigError(
            "early_terminate hyperband needs min_iter (epochs before the first cut), "
            "or max_iter and s"
        )
    if max_iter is not None and max_iter <= min_iter:
        raise SweepConfigError("early_terminate max_iter must be greater than min_iter")
    return Hyperband(min_iter=min_iter, eta=eta, max_iter=max_iter, s=s)


def _first_band(max_iter: int, s: int, eta: int) -> int:
    """W&B's first band: ``max_iter`` divided by ``eta`` up to ``s`` times while it stays
    at least 1 (``int()`` of each)."""
    band, first = float(max_iter), None
    for _ in range(s):
        band /= eta
        if band < 1:
            break
        first = int(band)
    if first is None:
        raise SweepConfigError(
            f"early_terminate max_iter {max_iter} / eta {eta} is below one epoch: "
            "increase max_iter or lower eta"
        )
    return first
