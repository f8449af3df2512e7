"""Kernels are memory-safe whatever their inputs; bad labels are a clear ValueError.

Numba does not check bounds and CuPy wraps out-of-range indices, so a label outside
``[0, classes)`` once made the compiled cross-entropy read and write outside its arrays
("double free or corruption"). Every kernel now checks sizes and gives such a label a NaN
loss instead of indexing with it (with label smoothing too); the model checks the label
range and says so.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.backends.base import Backend
from fastmlp.backends.numpy_backend import NumpyBackend

HOST_BACKENDS = {"reference": Backend, "numpy": NumpyBackend}
try:
    from fastmlp.backends.numba_backend import NumbaBackend

    HOST_BACKENDS["numba"] = NumbaBackend
except ImportError:  # pragma: no cover - numba is an optional extra
    pass

LOSSES = ("cross_entropy_", "mean_squared_error_")
BAD_LABELS = {
    "too_large": np.array([0, 1, 5, 2, 3]),
    "negative": np.array([0, -1, 2, -7, 1]),
    "huge_unsigned": np.array([0, 1, 2**64 - 1, 2, 2**63], dtype=np.uint64),
}


def logits(rows=5, classes=3, dtype="float64"):
    return np.random.default_rng(0).normal(size=(rows, classes)).astype(dtype)


@pytest.mark.parametrize("kernel", LOSSES)
@pytest.mark.parametrize("labels", BAD_LABELS, ids=str)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_loss_kernels_give_out_of_range_labels_a_nan_loss_and_touch_nothing_else(
    backend, labels, kernel
):
    y = BAD_LABELS[labels]
    valid = (y.astype(object) >= 0) & (y.astype(object) < 3)
    z = logits()
    loss = getattr(HOST_BACKENDS[backend](), kernel)(z, y)
    assert np.isnan(loss)
    assert np.isfinite(z).all()
    # the rows with valid labels get exactly their usual gradient
    safe = np.where(valid, y, 0).astype(np.int64)
    expected = logits()
    getattr(NumpyBackend(), kernel)(expected, safe)
    rows = np.flatnonzero(valid.astype(bool))
    if kernel == "cross_entropy_":
        np.testing.assert_allclose(z[rows], expected[rows], rtol=1e-12)
        # an invalid row keeps softmax / N: no onehot term was subtracted anywhere
        invalid = np.flatnonzero(~valid.astype(bool))
        np.testing.assert_allclose(z[invalid].sum(axis=1), 1 / len(y), rtol=1e-12)


@pytest.mark.parametrize("labels", BAD_LABELS, ids=str)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_smoothed_cross_entropy_gives_out_of_range_labels_a_nan_loss_and_touches_nothing_else(
    backend, labels
):
    """With label smoothing eps an invalid row loses its (1 - eps) onehot term only: its
    gradient is (softmax - eps / K) / N, summing to (1 - eps) / N."""
    y, eps = BAD_LABELS[labels], 0.3
    valid = ((y.astype(object) >= 0) & (y.astype(object) < 3)).astype(bool)
    z = logits()
    loss = HOST_BACKENDS[backend]().cross_entropy_(z, y, label_smoothing=eps)
    assert np.isnan(loss)
    assert np.isfinite(z).all()
    expected = logits()
    NumpyBackend().cross_entropy_(expected, np.where(valid, y, 0).astype(np.int64), eps)
    np.testing.assert_allclose(z[valid], expected[valid], rtol=1e-12)
    np.testing.assert_allclose(z[~valid].sum(axis=1), (1 - eps) / len(y), rtol=1e-12)


@pytest.mark.parametrize("kernel", LOSSES)
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_loss_kernels_reject_labels_of_the_wrong_length(backend, kernel):
    with pytest.raises(ValueError, match="labels"):
        getattr(HOST_BACKENDS[backend](), kernel)(logits(), np.zeros(3, dtype=np.int64))
    if kernel == "cross_entropy_":
        with pytest.raises(ValueError, match="labels"):
            HOST_BACKENDS[backend]().cross_entropy_(
                logits(), np.zeros(7, dtype=np.int64), label_smoothing=0.1
            )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_cross_entropy_of_logits_without_classes_is_an_error(backend, label_smoothing):
    """(N, 0) logits: no class to take the maximum over or to index (the compiled loop
    would read z[row, 0] outside the array)."""
    with pytest.raises(ValueError):
        HOST_BACKENDS[backend]().cross_entropy_(
            np.empty((4, 0)), np.zeros(4, dtype=np.int64), label_smoothing
        )


@pytest.mark.skipif("numba" not in HOST_BACKENDS, reason="needs numba")
def test_compiled_cross_entropy_checks_its_shapes_itself():
    """The compiled loss loop refuses mismatched or empty arrays even when called directly."""
    from fastmlp.backends.numba_backend import _softmax_cross_entropy

    labels, count = np.zeros(4, dtype=np.int64), np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match="one entry per row"):
        _softmax_cross_entropy(np.ones((4, 3)), labels, np.empty(3), 0.9, 0.1 / 3, count)
    with pytest.raises(ValueError, match="one entry per row"):
        _softmax_cross_entropy(np.ones((4, 3)), labels[:2], np.empty(4), 1.0, 0.0, count)
    with pytest.raises(ValueError, match="at least one class"):
        _softmax_cross_entropy(np.empty((4, 0)), labels, np.empty(4), 0.9, 0.1, count)
    with pytest.raises(ValueError, match="count of correct rows is one entry"):
        _softmax_cross_entropy(np.ones((4, 3)), labels, np.empty(4), 1.0, 0.0, count[:0])


@pytest.mark.parametrize("name", fastmlp.optim.names())
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_fused_updates_reject_buffers_of_different_lengths(backend, name):
    """Every optimizer's kernel on every CPU backend, handed a gradient shorter than the
    parameters (directly, not through the optimizer's own checks)."""
    optimizer = fastmlp.optim.create(name)
    optimizer.steps = 1
    optimizer.advance()
    arrays = [np.ones(100), np.ones(10), *(np.ones(100) for _ in optimizer.buffers)]
    with pytest.raises(ValueError, match="shape"):
        HOST_BACKENDS[backend]().run_formula_(
            optimizer.formula, arrays, optimizer.scalars(optimizer.hyperparameter_values())
        )


@pytest.mark.skipif("numba" not in HOST_BACKENDS, reason="needs numba")
def test_compiled_loops_check_their_shapes_themselves():
    """The generated Numba loops refuse mismatched arrays even when called directly."""
    from fastmlp.backends.numba_backend import compiled

    adam = fastmlp.optim.create("adam")
    loop = compiled(adam.formula, 1, ())
    with pytest.raises(ValueError, match="shapes"):
        loop(*([0.5] * 7), np.ones(100), np.ones(10), np.ones(100), np.ones(100))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_layer_kernels_reject_mismatched_shapes(backend):
    from fastmlp.backends.base import backward_kernel, forward_kernel
    from fastmlp.nn.activations import create

    kernels = HOST_BACKENDS[backend]()
    for name in ("relu", "tanh", "sigmoid", "gelu"):
        function = create(name)
        with pytest.raises(ValueError, match="shape"):
            kernels.bias_activation_(np.ones((4, 8)), np.ones(3), function)
        with pytest.raises(ValueError, match="shape"):
            kernels.activation_grad_(np.ones((4, 8)), np.ones((2, 8)), function)
        # the kernels layers bind once check their arrays at every call too
        declaration = function.declaration
        forward = kernels.bind_formula(forward_kernel(declaration, False), {}, "float64", 2,
                                       ("b",))  # fmt: skip
        with pytest.raises(ValueError, match="shape"):
            forward(np.ones((4, 8)), np.ones(3))
        backward = kernels.bind_formula(backward_kernel(declaration), {}, "float64", 2)
        with pytest.raises(ValueError, match="shape"):
            backward(np.ones((4, 8)), np.ones((2, 8)))
    if backend == "numba":
        with pytest.raises(ValueError, match="column"):
            kernels.column_sums_(np.ones(3), np.ones((4, 8)))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_column_sums_of_no_rows_are_zero(backend):
    out = np.full(4, 7.0)
    HOST_BACKENDS[backend]().column_sums_(out, np.empty((0, 4)))
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_evaluate_and_loss_and_grad_raise_for_labels_out_of_range(device, loss):
    model = fastmlp.MLP(input_size=20, hidden_sizes=(8,), output_size=3, loss=loss, device=device)
    x = np.random.default_rng(0).random((64, 20)).astype("float32")
    for labels in (np.full(64, 5), np.full(64, -1)):
        with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
            model.evaluate(x, labels)
        with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
            model.loss_and_grad(x, labels)


def test_the_reported_crash_is_now_a_value_error():
    """The exact command from the bug report, in a fresh process: no abort, a ValueError."""
    command = (
        "import fastmlp, numpy as np; "
        "m = fastmlp.MLP(input_size=20, hidden_sizes=(8,), output_size=3); "
        "print(m.evaluate(np.random.rand(64, 20).astype('f4'), np.full(64, 5)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", command], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert "ValueError: 64 of 64 labels lie outside [0, 3)" in result.stderr


def test_an_empty_batch_is_a_value_error():
    model = fastmlp.MLP(input_size=5, hidden_sizes=(4,), output_size=3)
    with pytest.raises(ValueError, match="empty batch"):
        model.loss_and_grad(np.zeros((0, 5)), np.zeros(0, dtype=int))


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_uint8_images_are_scaled_the_same_way_everywhere(device):
    """uint8 inputs mean pixels 0..255 in forward, predict, evaluate and loss_and_grad,
    exactly as ``fastmlp.train`` reads them."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 3, size=32)
    scaled = images.reshape(32, -1).astype("float32") / 255
    model = fastmlp.MLP(input_size=20, hidden_sizes=(8,), output_size=3, device=device, seed=0)
    np.testing.assert_allclose(model.forward(images), model.forward(scaled), rtol=1e-6)
    np.testing.assert_array_equal(model.predict(images), model.predict(scaled))
    np.testing.assert_allclose(model.evaluate(images, labels), model.evaluate(scaled, labels))
    loss_bytes = float(model.loss_and_grad(images, labels))
    grads_bytes = model.grads.copy()
    assert loss_bytes == pytest.approx(float(model.loss_and_grad(scaled, labels)), rel=1e-6)
    np.testing.assert_allclose(grads_bytes, model.grads, rtol=1e-5, atol=1e-7)
