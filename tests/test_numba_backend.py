"""The Numba CPU backend computes exactly what the NumPy backend computes, only faster.

Its optimizer, bias + ReLU, activation-gradient and bias-gradient kernels evaluate the
NumPy backend's operations in the same order and precision, so the results are
bit-identical; the fused softmax cross-entropy uses scalar exp/log and agrees to rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

import fastmlp  # noqa: E402
from fastmlp.backends.numba_backend import NumbaBackend  # noqa: E402
from fastmlp.backends.numpy_backend import NumpyBackend  # noqa: E402

DTYPES = ["float32", "float64"]


def optimizer_buffers(rng, dtype, n=4099):
    p, g, m = (rng.normal(size=n).astype(dtype) for _ in range(3))
    v = np.abs(rng.normal(size=n)).astype(dtype) * 1e-3
    return p, g, m, v


UPDATES = {
    "sgd": lambda b, p, g, m, v, t: b.sgd_(p, g, 0.05),
    "momentum": lambda b, p, g, m, v, t: b.momentum_(p, g, m, 0.05, 0.9),
    "nag": lambda b, p, g, m, v, t: b.nag_(p, g, m, 0.05, 0.7),
    "rmsprop": lambda b, p, g, m, v, t: b.rmsprop_(p, g, v, 0.01, 0.99, 1e-8),
    "adam": lambda b, p, g, m, v, t: b.adam_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, t),
    "nadam": lambda b, p, g, m, v, t: b.nadam_(
        p, g, m, v, 2e-3, 0.9, 0.999, 1e-8, t, 0.45, 0.46, 0.3
    ),
    "add_scaled": lambda b, p, g, m, v, t: b.add_scaled_(p, g, 5e-4),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("update", UPDATES)
def test_optimizer_updates_are_bit_identical_to_numpy(update, dtype):
    rng = np.random.default_rng(0)
    numba_arrays = optimizer_buffers(rng, dtype)
    numpy_arrays = tuple(array.copy() for array in numba_arrays)
    for step in range(1, 6):
        UPDATES[update](NumbaBackend(), *numba_arrays, step)
        UPDATES[update](NumpyBackend(), *numpy_arrays, step)
    for actual, expected in zip(numba_arrays, numpy_arrays):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_is_identical_to_numpy(dtype):
    x = np.array([1e-39, -1e-39, 1e-20, 0.0, -3.0, 1e-31], dtype=dtype)
    expected = x.copy()
    NumpyBackend().flush_subnormals_(expected, 1e-30)
    NumbaBackend().flush_subnormals_(x, 1e-30)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid"])
def test_activation_kernels_are_bit_identical_to_numpy(activation, dtype):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(33, 17)).astype(dtype) * 3
    z[0, :2] = [np.nan, -0.0]
    b = rng.normal(size=17).astype(dtype)
    delta = rng.normal(size=(33, 17)).astype(dtype)
    outputs = []
    for backend in (NumbaBackend(), NumpyBackend()):
        a = z.copy()
        with np.errstate(invalid="ignore", over="ignore"):
            backend.bias_activation_(a, b, activation)
        d = delta.copy()
        backend.activation_grad_(d, a, activation)
        outputs.append((a, d))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_sums_are_bit_identical_to_numpy(dtype):
    x = np.random.default_rng(2).normal(size=(257, 19)).astype(dtype)
    actual, expected = np.empty(19, dtype), np.empty(19, dtype)
    NumbaBackend().column_sums_(actual, x)
    NumpyBackend().column_sums_(expected, x)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_cross_entropy_agrees_with_numpy_to_rounding(dtype):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(64, 10)).astype(dtype) * 5
    z[0] = [1000, -1000, 0, 0, 0, 0, 0, 0, 0, 3]  # extreme logits stay finite
    y = rng.integers(0, 10, size=64)
    expected_grad = z.copy()
    expected_loss = NumpyBackend().cross_entropy_(expected_grad, y)
    loss = NumbaBackend().cross_entropy_(z, y)
    tolerance = 1e-6 if dtype == "float32" else 1e-14
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    np.testing.assert_allclose(loss, expected_loss, rtol=tolerance)
    np.testing.assert_allclose(z, expected_grad, rtol=tolerance, atol=tolerance)


def test_training_on_numba_follows_numpy_to_rounding():
    rng = np.random.default_rng(4)
    x = rng.random((512, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=512)
    runs = []
    for backend in (NumbaBackend(), NumpyBackend()):
        model = fastmlp.MLP(784, (64, 32), 10, device=backend, seed=0)
        fastmlp.train(
            model,
            fastmlp.optim.Adam(lr=1e-3),
            x,
            y,
            epochs=2,
            batch_size=32,
            seed=0,
            progress=False,
            verbose=False,
        )
        runs.append(model.params)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4, atol=1e-6)


def test_fastmlp_numba_0_selects_plain_numpy():
    script = "import fastmlp; print(fastmlp.get_backend('cpu').name)"
    for setting, expected in (("0", "numpy"), ("1", "numba")):
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "FASTMLP_NUMBA": setting},
            check=True,
        )
        assert result.stdout.strip() == expected
