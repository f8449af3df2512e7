"""The NumPy backend's formula plans: a select copies bit patterns exactly.

A plan runs a select ``a if test else b`` as a copy of ``b`` and a branch-free blend of the
bit patterns (``formulas._copy_where_lines``). Whatever the values (NaN payloads, signed
zeros, infinities, subnormals) it must give exactly ``np.where``'s bits, for a constant
(positive zero, negative zero, another value), a scalar and an array as the value taken.
"""

import numpy as np
import pytest

from fastmlp.backends import NumpyBackend
from fastmlp.backends.formulas import formula

DTYPES = ["float16", "float32", "float64"]


def zero_where_not_positive(x, t):
    x = 0.0 if t <= 0 else x
    return x


def negative_zero_where_not_positive(x, t):
    x = -0.0 if t <= 0 else x
    return x


def constant_where_not_positive(x, t):
    x = 2.5 if t <= 0 else x
    return x


def scalar_where_not_positive(x, t, *, s):
    x = s if t <= 0 else x
    return x


def scaled_where_negative(x, t):
    x = x * 3.0 if t < 0 else t
    return x


def edge_values(dtype: str, shape: tuple[int, int]) -> np.ndarray:
    """Random values with NaN (two payloads), both zeros, infinities and a subnormal."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=shape).astype(dtype)
    info = np.finfo(dtype)
    specials = np.array([np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, info.tiny / 4, info.max],
                        dtype=dtype)  # fmt: skip
    flat = values.reshape(-1)
    flat[rng.choice(flat.size, size=3 * specials.size, replace=False)] = np.tile(specials, 3)
    return values


def bits(array: np.ndarray) -> np.ndarray:
    return array.view(f"u{array.dtype.itemsize}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "function, reference",
    [
        (zero_where_not_positive, lambda x, t, s: np.where(t <= 0, x.dtype.type(0.0), x)),
        (negative_zero_where_not_positive,
         lambda x, t, s: np.where(t <= 0, x.dtype.type(-0.0), x)),
        (constant_where_not_positive, lambda x, t, s: np.where(t <= 0, x.dtype.type(2.5), x)),
        (scalar_where_not_positive, lambda x, t, s: np.where(t <= 0, s, x)),
        (scaled_where_negative, lambda x, t, s: np.where(t < 0, x * x.dtype.type(3.0), t)),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)  # fmt: skip
def test_a_select_gives_np_where_bit_for_bit(function, reference, dtype):
    backend = NumpyBackend()
    declared = formula(function)
    x, t = edge_values(dtype, (37, 19)), edge_values(dtype, (37, 19))[::-1].copy()
    s = np.dtype(dtype).type(-7.25)
    scalars = {"s": -7.25} if declared.scalars else {}
    with np.errstate(invalid="ignore", over="ignore"):
        expected = reference(x.copy(), t, s)
        for run in range(2):  # the second run reuses the plan's scratch buffers
            actual = x.copy()
            backend.run_formula_(declared, [actual, t], scalars)
            np.testing.assert_array_equal(bits(actual), bits(expected), err_msg=f"run {run}")
