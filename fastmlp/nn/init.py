"""Weight initialisation, drawn on the host so every backend starts from the same weights.

=======  ===========================================  =======================
name     distribution of W (fan_in, fan_out)          reference
=======  ===========================================  =======================
random   N(0, RANDOM_STD^2), RANDOM_STD = 0.01        "small random numbers"
xavier   U(-a, a), a = sqrt(6 / (fan_in + fan_out))    Glorot & Bengio (2010)
he       N(0, 2 / fan_in)                             He et al. (2015)
=======  ===========================================  =======================

Biases always start at zero.
"""

from __future__ import annotations

import math

import numpy as np

WEIGHT_INITS = ("random", "xavier", "he")

RANDOM_STD = 0.01

_ALIASES = {"glorot": "xavier", "kaiming": "he"}


def canonical_weight_init(name: str) -> str:
    """The canonical init name, accepting any case (``"Xavier"`` -> ``"xavier"``)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in WEIGHT_INITS:
        raise ValueError(f"unknown weight init {name!r}: choose one of {', '.join(WEIGHT_INITS)}")
    return key


def init_weight(method: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """A float64 (fan_in, fan_out) weight matrix drawn by ``method``."""
    shape = (fan_in, fan_out)
    if method == "random":
        return rng.normal(0.0, RANDOM_STD, size=shape)
    if method == "xavier":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape)
    if method == "he":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    raise ValueError(f"unknown weight init {method!r}")
