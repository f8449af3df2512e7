"""A steady-state training step allocates no array memory on either CPU backend.

NumPy reports its data allocations to ``tracemalloc``, so the peak traced memory during
20 steps after warm-up bounds the largest temporary those steps created. The parameters
of the 784-128-128-128-10 float32 model take ~540 KB (the largest weight alone ~400 KB),
so a parameter-sized temporary blows the 64 KiB budget. Activation-sized temporaries are
caught at batch 512 (one activation is then 256 KB). What legitimately remains is small:
views, the 0-d loss, and NumPy's ufunc iterator buffer for the broadcast bias add
(8192 elements, 32 KiB in float32, whatever the batch size).
"""

import contextlib
import importlib.util
import tracemalloc

import numpy as np
import pytest

import fastmlp
from fastmlp import optim

BUDGET = 64 * 1024


@pytest.fixture(autouse=True)
def single_threaded_blas():
    """One BLAS thread: on a busy 2-core machine a multi-threaded GEMM can wait a whole
    scheduler slice per call (~100x slower). Allocation behaviour is the same either way."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1, user_api="blas")
    with limits:
        yield


def peak_allocation_of_steps(model, optimizer, x, y, warmup, steps, max_grad_norm=None):
    for _ in range(warmup):
        model.loss_and_grad(x, y, max_grad_norm=max_grad_norm)
        optimizer.step(model.params, model.grads)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(steps):
            model.loss_and_grad(x, y, max_grad_norm=max_grad_norm)
            optimizer.step(model.params, model.grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


# Both CPU backends by name: plain NumPy (what `pip install fastmlp` runs) and Numba.
CPU_BACKENDS = [
    "numpy",
    pytest.param(
        "numba",
        marks=pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="needs numba"),
    ),
]


@pytest.fixture(params=CPU_BACKENDS)
def device(request):
    return request.param


def problem(batch=64, device="numpy", **model_options):
    model = fastmlp.MLP(
        784, (128, 128, 128), 10, dtype="float32", seed=0, device=device, **model_options
    )
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    return model, x, y


def test_the_parameters_alone_are_far_larger_than_the_budget():
    model, _, _ = problem()
    assert model.params.nbytes > 8 * BUDGET


def test_tracemalloc_sees_numpy_array_allocations():
    """The premise of this file: a NumPy temporary shows up in the traced peak."""
    model, _, _ = problem()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        model.params * 2.0  # one parameter-sized temporary
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start >= model.params.nbytes


@pytest.mark.parametrize("name", optim.names())
def test_steady_state_training_step_allocates_no_array_memory(name, device):
    model, x, y = problem(device=device)
    optimizer = optim.create(name, param_groups=model.param_groups())
    growth = peak_allocation_of_steps(model, optimizer, x, y, warmup=3, steps=20)
    assert growth < BUDGET, f"{growth} bytes allocated in 20 steps"


def _activations():
    from fastmlp.nn.activations import ACTIVATIONS

    return ACTIVATIONS.names()


@pytest.mark.parametrize("activation", _activations())
@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_large_batch_step_allocates_no_activation_sized_temporary(activation, loss, device):
    """Batch 512, weight decay and dropout on: every forward/backward/loss kernel writes in
    place or into a layer's own buffer."""
    if activation == "gelu" and device == "numpy" and importlib.util.find_spec("scipy") is None:
        pytest.skip("plain NumPy computes erf with SciPy; without it, element by element")
    model, x, y = problem(
        batch=512, device=device, activation=activation, loss=loss, weight_decay=1e-3,
        dropout=0.2,
    )  # fmt: skip
    growth = peak_allocation_of_steps(model, optim.create("adam"), x, y, warmup=2, steps=5)
    assert growth < BUDGET, f"{growth} bytes allocated in 5 steps"


@pytest.mark.parametrize("name", ["adam", "nadam", "momentum", "rmsprop"])
def test_steps_that_flush_subnormals_allocate_nothing_after_the_first_flush(name, device):
    """Small decay rates give a flush every ~26-35 steps: 80 measured steps hold several."""
    model, x, y = problem(device=device)
    optimizer = optim.create(name, momentum=0.5, beta=0.5, beta1=0.5, beta2=0.6)
    growth = peak_allocation_of_steps(model, optimizer, x, y, warmup=40, steps=80)
    assert growth < BUDGET, f"{growth} bytes allocated in 80 steps"


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("max_grad_norm", [1e-3, 1e6], ids=["clipping", "scaling-by-one"])
def test_label_smoothing_and_gradient_clipping_allocate_no_temporary(name, max_grad_norm, device):
    """Batch 512 with label smoothing, gradient-norm clipping, weight decay and dropout: the
    norm and the clip coefficient live in a preallocated 0-d array, the smoothed loss in the
    loss kernel's scratch."""
    model, x, y = problem(
        batch=512, device=device, label_smoothing=0.1, weight_decay=1e-3, dropout=0.2
    )
    growth = peak_allocation_of_steps(
        model, optim.create(name), x, y, warmup=2, steps=5, max_grad_norm=max_grad_norm
    )
    assert growth < BUDGET, f"{growth} bytes allocated in 5 steps"


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_kernel_allocates_no_per_row_temporary(label_smoothing, dtype, device):
    """The loss kernel alone, on 65536 rows: a per-row temporary (256-512 KB) would show
    above what may remain, the ufunc iterator buffer of the broadcast row operations (8192
    elements) and small objects. (np.take into ``out`` once buffered a per-row copy.)"""
    rows = 65536
    backend = fastmlp.get_backend(device)
    source = np.random.default_rng(0).normal(size=(rows, 10)).astype(dtype)
    z = source.copy()
    y = np.random.default_rng(1).integers(0, 10, size=rows)
    backend.cross_entropy_(z, y, label_smoothing)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            np.copyto(z, source)
            backend.cross_entropy_(z, y, label_smoothing)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    allowed = 8192 * np.dtype(dtype).itemsize + 8 * 1024
    assert peak - start < allowed, f"{peak - start} bytes allocated in 3 calls"
