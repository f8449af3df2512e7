"""The seeded train/validation split of the official training set."""

from __future__ import annotations

import math

import numpy as np

from fastmlp.data.errors import DataError


def check_val_fraction(val_fraction: float) -> float:
    """``val_fraction`` as a float, if ``0 <= val_fraction < 1``."""
    try:
        value = float(val_fraction)
    except (TypeError, ValueError):
        raise DataError(f"val_fraction must be a number, got {val_fraction!r}") from None
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise DataError(f"val_fraction must satisfy 0 <= val_fraction < 1, got {val_fraction!r}")
    return value


def split_indices(
    n: int, val_fraction: float, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random train/validation split of ``n`` examples.

    n_val = round(n * val_fraction) examples, drawn without replacement by
    ``np.random.default_rng(seed).permutation(n)``, so the same seed always gives the same
    split. Returns (train_idx, val_idx), each sorted ascending (int64, shapes
    (n - n_val,) and (n_val,)); they are disjoint and together cover range(n).
    """
    val_fraction = check_val_fraction(val_fraction)
    n_val = math.floor(n * val_fraction + 0.5)
    if n_val >= n > 0:
        raise DataError(f"val_fraction={val_fraction} leaves no training examples out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
