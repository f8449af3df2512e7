"""Weight initialisation, drawn on the host so every backend starts from the same weights.

=======  ===========================================  =======================
name     distribution of W (fan_in, fan_out)          reference
=======  ===========================================  =======================
random   N(0, RANDOM_STD^2), RANDOM_STD = 0.01        "small random numbers"
xavier   U(-a, a), a = sqrt(6 / (fan_in + fan_out))    Glorot & Bengio (2010)
he       N(0, 2 / fan_in)                             He et al. (2015)
=======  ===========================================  =======================

Biases always start at zero. Each is one :class:`WeightInit` in :data:`WEIGHT_INITS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmlp.registry import Registry

RANDOM_STD = 0.01


@dataclass(frozen=True)
class WeightInit:
    """A weight initialisation: ``draw(fan_in, fan_out, rng)`` gives a float64 matrix."""

    name: str
    draw: Callable[[int, int, np.random.Generator], np.ndarray]
    maths: str
    aliases: tuple[str, ...] = ()


WEIGHT_INITS: Registry[WeightInit] = Registry("weight init")

for _init in (
    WeightInit(
        "random",
        lambda fan_in, fan_out, rng: rng.normal(0.0, RANDOM_STD, size=(fan_in, fan_out)),
        maths=f"N(0, {RANDOM_STD}^2)",
        aliases=("normal", "gaussian"),
    ),
    WeightInit(
        "xavier",
        lambda fan_in, fan_out, rng: rng.uniform(
            -math.sqrt(6.0 / (fan_in + fan_out)),
            math.sqrt(6.0 / (fan_in + fan_out)),
            size=(fan_in, fan_out),
        ),
        maths="U(-a, a), a = sqrt(6 / (fan_in + fan_out))",
        aliases=("glorot", "xavier_uniform", "glorot_uniform"),
    ),
    WeightInit(
        "he",
        lambda fan_in, fan_out, rng: rng.normal(
            0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out)
        ),
        maths="N(0, 2 / fan_in)",
        aliases=("kaiming", "he_normal", "kaiming_normal"),
    ),
):
    WEIGHT_INITS.register(_init.name, _init, _init.aliases)


def canonical_weight_init(name: Any) -> str:
    """The canonical init name, accepting any case and aliases (``Xavier``, ``glorot``)."""
    return WEIGHT_INITS.canonical(name)


def init_weight(method: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """A float64 (fan_in, fan_out) weight matrix drawn by ``method``."""
    return WEIGHT_INITS.get(method).draw(fan_in, fan_out, rng)
