"""The Numba CPU backend computes what the NumPy backend computes, only faster.

Its compiled formula loops (optimizer updates, bias + activation, activation gradients)
and bias-gradient loop evaluate the NumPy backend's operations in the same order and
precision, so the results are bit-identical where no transcendental function is involved;
formulas with exp, tanh or erf, and the fused softmax cross-entropy, agree to rounding.
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", fastmlp.optim.names())
def test_optimizer_updates_are_bit_identical_to_numpy(name, dtype):
    """Five steps of every registered optimizer: the compiled loop and NumPy's ufuncs."""
    rng = np.random.default_rng(0)
    n = 4099
    p0, g = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    results = []
    for backend in (NumbaBackend(), NumpyBackend()):
        params = backend.asarray(p0.copy())
        optimizer = fastmlp.optim.create(name)
        for _ in range(5):
            optimizer.step(params, g)
        results.append((params, *optimizer.state.values()))
    for actual, expected in zip(*results):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_scaled_is_bit_identical_to_numpy(dtype):
    rng = np.random.default_rng(0)
    y, x = rng.normal(size=4099).astype(dtype), rng.normal(size=4099).astype(dtype)
    expected = y.copy()
    NumpyBackend().add_scaled_(expected, x, 5e-4)
    NumbaBackend().add_scaled_(y, x, 5e-4)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_is_identical_to_numpy(dtype):
    x = np.array([1e-39, -1e-39, 1e-20, 0.0, -3.0, 1e-31], dtype=dtype)
    expected = x.copy()
    NumpyBackend().flush_subnormals_(expected, 1e-30)
    NumbaBackend().flush_subnormals_(x, 1e-30)
    np.testing.assert_array_equal(x, expected)


def _activations():
    from fastmlp.nn.activations import ACTIVATIONS

    return ACTIVATIONS.names()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", _activations())
def test_activation_kernels_match_numpy(activation, dtype):
    """Bit for bit where the formula is algebraic (relu, leaky_relu, the gradients written
    through the output), to float rounding where it calls exp, tanh or erf; NaN and -0
    propagate alike."""
    from fastmlp.nn.activations import create

    function = create(activation)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(33, 17)).astype(dtype) * 3
    z[0, :2] = [np.nan, -0.0]
    b = rng.normal(size=17).astype(dtype)
    delta = rng.normal(size=(33, 17)).astype(dtype)
    outputs = []
    for backend in (NumbaBackend(), NumpyBackend()):
        a = z.copy()
        out = np.empty_like(z) if function.backward_from == "input" else None
        with np.errstate(invalid="ignore", over="ignore"):
            backend.bias_activation_(a, b, function, out)
        d = delta.copy()
        backend.activation_grad_(d, a, function)
        outputs.append((a if out is None else out, d))
    declaration = function.declaration
    for (actual, expected), exact in zip(
        zip(outputs[0], outputs[1]),
        (declaration.forward_formula.exact, declaration.backward_formula.exact),
    ):
        if exact:
            np.testing.assert_array_equal(actual, expected)
        else:
            tolerance = 4e-7 if dtype == "float32" else 1e-15
            np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)


def test_generated_kernels_are_cached_on_disk_and_reloaded(tmp_path):
    """A second process finds the generated source and Numba's compiled code in the cache."""
    script = (
        "import numpy as np, fastmlp\n"
        "m = fastmlp.MLP(20, (8,), 3, activation='leaky_relu', device='cpu', seed=0)\n"
        "m.loss_and_grad(np.zeros((4, 20), np.float32), np.zeros(4, int))\n"
        "from fastmlp.backends.numba_backend import kernel_cache_directory\n"
        "print(kernel_cache_directory())\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=env, check=True)  # fmt: skip
    cache = tmp_path / "fastmlp" / "numba"
    assert first.stdout.strip() == str(cache)
    sources = sorted(cache.glob("fastmlp_kernel_*.py"))
    assert sources and list((cache / "__pycache__").glob("*.nbi"))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    assert sorted(cache.glob("fastmlp_kernel_*.py")) == sources  # reused, not regenerated


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


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("correct_dtype", ["int64", "float64"])
def test_the_loss_kernels_count_correct_rows_as_numpy_argmax(label_smoothing, correct_dtype):
    """Ties go to the first logit, a NaN row to its first NaN, labels out of range are never
    correct, as ``argmax == y``; the compiled loop counts into the training loop's 0-d
    int64 counter, any other counter gets the count added."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=(40, 6))
    z[0] = [2.0, 2.0, 0.0, 0.0, 0.0, 0.0]  # tie: class 0
    z[1] = [2.0, 2.0, 0.0, 0.0, 0.0, 0.0]  # tie, label 1: not correct
    z[2] = [0.0, np.nan, 9.0, np.nan, 0.0, 0.0]  # first NaN: class 1
    z[3] = [np.nan, 1.0, 9.0, 0.0, 0.0, 0.0]  # class 0
    z[4] = [-np.inf] * 6  # all equal: class 0
    z[5] = [-0.0, 0.0, -1.0, -1.0, -1.0, -1.0]  # -0 and 0 tie: class 0
    y = rng.integers(0, 6, size=40)
    y[:6] = [0, 1, 1, 0, 0, 0]
    y[6:9] = [-1, 6, 99]  # out of range
    expected = int((z.argmax(axis=1) == y).sum())
    kernels = [NumpyBackend().cross_entropy_, NumbaBackend().cross_entropy_,
               NumpyBackend().mean_squared_error_]  # fmt: skip
    for kernel in kernels:
        correct = np.full((), 3, dtype=correct_dtype)
        extra = {"label_smoothing": label_smoothing} if "entropy" in kernel.__name__ else {}
        with np.errstate(all="ignore"):
            kernel(z.copy(), y, correct=correct, **extra)
        assert correct == 3 + expected, kernel


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


def test_a_numpy_model_trains_on_numpy_alone(monkeypatch):
    """``device="numpy"`` keeps every kernel on plain NumPy, the optimizer step included
    (its arrays alone would pick the "cpu" backend, which is Numba's)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Numba kernel ran for a NumPy model")

    for method in ("run_formula_", "bind_formula", "cross_entropy_", "column_sums_"):
        monkeypatch.setattr(NumbaBackend, method, refuse)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 12)).astype(np.float32), rng.integers(0, 3, 64)
    model = fastmlp.MLP(input_size=12, hidden_sizes=(8,), output_size=3, device="numpy",
                        dropout=0.2, seed=0)  # fmt: skip
    optimizer = fastmlp.optim.create("adam")
    fastmlp.train(model, optimizer, x, y, epochs=1, batch_size=16, seed=0, progress=False,
                  verbose=False)  # fmt: skip
    assert optimizer.steps == 4
