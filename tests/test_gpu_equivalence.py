"""The CuPy backend computes what the NumPy backend computes: kernel by kernel, training
step by training step, and checkpoints cross devices.

Every test here needs CuPy and a CUDA GPU (``pytest.mark.gpu``); conftest skips them
cleanly elsewhere.
"""

import numpy as np
import pytest

import fastmlp
from fastmlp import optim
from fastmlp.optim.optimizer import flush_threshold

pytestmark = pytest.mark.gpu

# Sizes: the flat kernels get ~3 million elements (a prime count, 3_000_017), i.e. tens of
# thousands of CUDA thread blocks plus a ragged last block that is not a multiple of any
# block size, so per-block indexing and the bounds check of the last block are exercised,
# not just one block's worth of threads. The row kernels get 70_000 rows, more than 65_535
# (the largest grid dimension y/z, and the 16-bit block-count limit of older launch code),
# so a kernel or reduction that maps rows onto one grid dimension must really span them.
# (A buffer past 2**31 elements, to probe 32-bit index overflow, would need 8-16 GB.)
FLAT_N = 3_000_017
ROWS, CLASSES = 70_000, 10

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu"]
OPTIMIZERS = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def gpu(cp):
    return fastmlp.get_backend("cuda")


@pytest.fixture(scope="module")
def cpu():
    return fastmlp.get_backend("cpu")


# --------------------------------------------------------------------- kernel cases


def optimizer_arguments(kernel, rng, dtype):
    p = rng.normal(size=FLAT_N).astype(dtype)
    g = rng.normal(size=FLAT_N).astype(dtype)
    g[::5] = 0.0

    def state(positive=False):
        x = rng.normal(size=FLAT_N)
        return (np.abs(x) if positive else x).astype(dtype)

    if kernel == "add_scaled_":
        return (p, g, 0.37)
    if kernel == "sgd_":
        return (p, g, 0.05)
    if kernel in ("momentum_", "nag_"):
        return (p, g, state(), 0.05, 0.7)
    if kernel == "rmsprop_":
        return (p, g, state(positive=True), 0.05, 0.8, 1e-6)
    if kernel == "adam_":
        return (p, g, state(), state(positive=True), 0.05, 0.8, 0.99, 1e-6, 3)
    if kernel == "nadam_":
        mu = 0.8 * (1 - 0.5 * 0.96 ** (3 * 4e-3))
        mu_next = 0.8 * (1 - 0.5 * 0.96 ** (4 * 4e-3))
        return (p, g, state(), state(positive=True), 0.05, 0.8, 0.99, 1e-6, 3, mu, mu_next, 0.35)
    if kernel == "flush_subnormals_":
        threshold = flush_threshold(dtype)
        tiny = float(np.finfo(dtype).tiny)
        x = rng.normal(size=FLAT_N) * 10.0 ** rng.uniform(
            -45 if dtype == "float32" else -320, 0, size=FLAT_N
        )
        x = x.astype(dtype)
        x[:6] = [tiny / 8, -tiny / 8, threshold / 2, -threshold * 2, 0.0, tiny]
        return (x, threshold)
    raise AssertionError(kernel)


def row_arguments(kernel, activation, rng, dtype):
    z = (rng.normal(size=(ROWS, CLASSES)) * 4).astype(dtype)
    if kernel == "bias_activation_":
        z[0, :3] = [60.0, -60.0, -1000.0]  # saturated units, exp overflow on the CPU path
        return (z, rng.normal(size=CLASSES).astype(dtype), activation)
    if kernel == "activation_grad_":
        with np.errstate(over="ignore"):
            a = {
                "identity": z,
                "relu": np.maximum(z, 0),
                "tanh": np.tanh(z),
                "sigmoid": 1 / (1 + np.exp(-z)),
            }[activation].astype(dtype)
        return (rng.normal(size=(ROWS, CLASSES)).astype(dtype), a, activation)
    if kernel == "softmax_":
        return (z,)
    if kernel == "gather_":
        indices = rng.permutation(ROWS)[: ROWS // 2]
        return (np.zeros((ROWS // 2, CLASSES), dtype=dtype), z, indices)
    return (z, rng.integers(0, CLASSES, size=ROWS))  # cross_entropy_, mean_squared_error_


KERNEL_CASES = (
    [
        (k, None)
        for k in [
            "add_scaled_",
            "sgd_",
            "momentum_",
            "nag_",
            "rmsprop_",
            "adam_",
            "nadam_",
            "flush_subnormals_",
        ]
    ]
    + [("bias_activation_", a) for a in ACTIVATIONS]
    + [("activation_grad_", a) for a in ACTIVATIONS]
    + [
        ("softmax_", None),
        ("cross_entropy_", None),
        ("mean_squared_error_", None),
        ("gather_", None),
    ]
)


ROW_KERNELS = {
    "bias_activation_",
    "activation_grad_",
    "softmax_",
    "cross_entropy_",
    "mean_squared_error_",
    "gather_",
}


def kernel_arguments(kernel, activation, dtype):
    rng = np.random.default_rng(2024)
    if kernel in ROW_KERNELS:
        return row_arguments(kernel, activation, rng, dtype)
    return optimizer_arguments(kernel, rng, dtype)


def tolerances(kernel, dtype):
    """(rtol, atol) per kernel: few-ulp agreement, atol scaled to the values' size."""
    if kernel in ("flush_subnormals_", "gather_"):
        return 0.0, 0.0  # no arithmetic: exact
    if kernel in ("cross_entropy_", "mean_squared_error_"):
        # Gradients are (p - onehot) / N; the GPU forms p = exp(z - logsumexp), whose
        # absolute error is about half an ulp of logsumexp (~20 here), so p - 1 for a
        # confident row carries that error: ~1e-6 in float32, ~2e-15 in float64.
        return (1e-5, 1e-5 / ROWS) if dtype == "float32" else (1e-12, 1e-13 / ROWS)
    return (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-14)


def test_kernel_cases_cover_every_in_place_kernel_of_the_backend():
    import inspect

    from fastmlp.backends.base import Backend

    kernels = {
        name
        for name, _ in inspect.getmembers(Backend, inspect.isfunction)
        if name.endswith("_") and not name.startswith("_")
    }
    assert kernels == {kernel for kernel, _ in KERNEL_CASES}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "kernel,activation", KERNEL_CASES, ids=[k + (f"-{a}" if a else "") for k, a in KERNEL_CASES]
)
def test_cupy_kernel_equals_numpy_kernel_on_large_arrays(kernel, activation, dtype, cp, gpu, cpu):
    args = kernel_arguments(kernel, activation, dtype)
    host_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    device_args = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    with np.errstate(over="ignore", under="ignore"):
        host_result = getattr(cpu, kernel)(*host_args)
    device_result = getattr(gpu, kernel)(*device_args)
    gpu.synchronize()

    rtol, atol = tolerances(kernel, dtype)
    for position, (on_gpu, on_cpu) in enumerate(zip(device_args, host_args)):
        if isinstance(on_cpu, np.ndarray):
            assert isinstance(on_gpu, cp.ndarray) and on_gpu.dtype == on_cpu.dtype
            np.testing.assert_allclose(
                cp.asnumpy(on_gpu),
                on_cpu,
                rtol=rtol,
                atol=atol,
                err_msg=f"{kernel} argument {position}",
            )
    if host_result is None:
        assert device_result is None
    else:
        assert isinstance(device_result, cp.ndarray) and device_result.ndim == 0, (
            "a 0-d device array"
        )
        assert device_result.dtype == host_result.dtype
        np.testing.assert_allclose(float(device_result), float(host_result), rtol=rtol)


@pytest.mark.parametrize("kernel", ["rmsprop_", "adam_", "nadam_"])
def test_float32_first_step_from_zero_state_matches_cpu_to_float32_rounding(kernel, cp, gpu, cpu):
    """From zero state v = (1 - beta2) g^2 exactly as torch and the CPU compute it:
    1 - beta2 is formed in double precision, then rounded, not formed in float32."""
    rng = np.random.default_rng(1)
    n = 100_003
    p = rng.normal(size=n).astype(np.float32)
    g = rng.normal(size=n).astype(np.float32)
    zeros = np.zeros(n, dtype=np.float32)
    if kernel == "rmsprop_":
        host_args = [p.copy(), g, zeros.copy(), 1e-3, 0.999, 1e-8]
    elif kernel == "adam_":
        host_args = [p.copy(), g, zeros.copy(), zeros.copy(), 1e-3, 0.9, 0.999, 1e-8, 1]
    else:
        mu, mu_next = 0.9 * (1 - 0.5 * 0.96**4e-3), 0.9 * (1 - 0.5 * 0.96 ** (2 * 4e-3))
        host_args = [
            p.copy(),
            g,
            zeros.copy(),
            zeros.copy(),
            2e-3,
            0.9,
            0.999,
            1e-8,
            1,
            mu,
            mu_next,
            mu,
        ]
    device_args = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in host_args]
    getattr(cpu, kernel)(*host_args)
    getattr(gpu, kernel)(*device_args)
    for on_gpu, on_cpu in zip(device_args, host_args):
        if isinstance(on_cpu, np.ndarray):
            np.testing.assert_allclose(cp.asnumpy(on_gpu), on_cpu, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------- training steps


def blobs(n=256, classes=4, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.5, size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y


# eps well above float32 gradient rounding noise: with eps = 1e-8 an adaptive update
# lr * g / (|g| + eps) of a gradient entry that is ~0 up to rounding could flip sign
# between devices; here the update is Lipschitz in g with constant lr / eps.
HYPERPARAMETERS = {
    "lr": 1e-2,
    "momentum": 0.9,
    "beta": 0.9,
    "beta1": 0.9,
    "beta2": 0.99,
    "eps": 1e-4,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_training_steps_on_cuda_match_cpu(name, dtype, loss, cp):
    """Same seed, same batches, 5 steps of each optimizer: the parameters agree."""
    x, y = blobs()
    # tanh: no kink where a rounding difference could switch a unit on one device only.
    models = {
        device: fastmlp.MLP(
            20,
            (64, 32),
            4,
            activation="tanh",
            loss=loss,
            weight_decay=1e-3,
            device=device,
            dtype=dtype,
            seed=7,
        )
        for device in ("cpu", "cuda")
    }
    optimizers = {device: optim.create(name, **HYPERPARAMETERS) for device in models}
    np.testing.assert_array_equal(cp.asnumpy(models["cuda"].params), models["cpu"].params)
    losses = {device: [] for device in models}
    for step in range(5):
        batch = slice(step * 48, step * 48 + 48)
        for device, model in models.items():
            xb = model.backend.asarray(x[batch])
            yb = model.backend.asarray(y[batch])
            losses[device].append(float(model.loss_and_grad(xb, yb)))
            optimizers[device].step(model.params, model.grads)
    rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-13)
    np.testing.assert_allclose(
        cp.asnumpy(models["cuda"].params), models["cpu"].params, rtol=rtol, atol=atol
    )
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=rtol)
    for key, buffer in optimizers["cuda"].state.items():
        assert isinstance(buffer, cp.ndarray), f"state {key!r} lives on the GPU"
    assert optimizers["cuda"].state_dict()["scalars"] == optimizers["cpu"].state_dict()["scalars"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_on_cuda_matches_cpu(dtype, cp):
    x, y = blobs(n=20_000)  # more than one evaluation chunk
    cpu_model = fastmlp.MLP(20, (32,), 4, device="cpu", dtype=dtype, seed=3)
    gpu_model = fastmlp.MLP(20, (32,), 4, device="cuda", dtype=dtype, seed=3)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    p_cpu, p_gpu = cpu_model.forward(x), gpu_model.forward(cp.asarray(x))
    assert isinstance(p_gpu, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(p_gpu), p_cpu, rtol=rtol, atol=1e-7)
    agree = np.mean(cp.asnumpy(gpu_model.predict(x)) == cpu_model.predict(x))
    assert agree > 0.999  # only near-ties may differ
    (loss_cpu, acc_cpu), (loss_gpu, acc_gpu) = cpu_model.evaluate(x, y), gpu_model.evaluate(x, y)
    assert type(loss_gpu) is float and type(acc_gpu) is float
    assert loss_gpu == pytest.approx(loss_cpu, rel=rtol)
    assert acc_gpu == pytest.approx(acc_cpu, abs=1e-3)


# --------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", ["momentum", "nadam"])
def test_checkpoint_saved_on_gpu_loads_on_cpu_and_resumes(name, tmp_path, cp):
    x, y = blobs(n=64)
    model = fastmlp.MLP(20, (16,), 4, activation="tanh", device="cuda", seed=5)
    optimizer = optim.create(name, lr=0.01, eps=1e-4)  # eps: see HYPERPARAMETERS
    xb, yb = cp.asarray(x), cp.asarray(y)
    for _ in range(3):
        model.loss_and_grad(xb, yb)
        optimizer.step(model.params, model.grads)
    path = tmp_path / "gpu.npz"
    model.save(path, optimizer=optimizer, epoch=3, extra={"device": "cuda"})

    saved_params = cp.asnumpy(model.params)
    checkpoint = fastmlp.load_checkpoint(path)  # default: the CPU
    assert checkpoint.model.device == "cpu"
    assert isinstance(checkpoint.model.params, np.ndarray)
    np.testing.assert_array_equal(checkpoint.model.params, saved_params)
    assert checkpoint.epoch == 3 and checkpoint.extra == {"device": "cuda"}
    saved = optimizer.state_dict()
    restored = checkpoint.optimizer.state_dict()
    assert restored["steps"] == saved["steps"] and restored["scalars"] == saved["scalars"]
    for key, buffer in saved["buffers"].items():
        assert isinstance(buffer, np.ndarray)
        np.testing.assert_array_equal(restored["buffers"][key], buffer)

    # The CPU copy resumes where the GPU run stopped (float32: agreement, not bit-equality).
    checkpoint.model.loss_and_grad(x, y)
    checkpoint.optimizer.step(checkpoint.model.params, checkpoint.model.grads)
    model.loss_and_grad(xb, yb)
    optimizer.step(model.params, model.grads)
    np.testing.assert_allclose(
        checkpoint.model.params, cp.asnumpy(model.params), rtol=1e-5, atol=1e-6
    )

    on_gpu = fastmlp.MLP.load(path, device="cuda")
    assert isinstance(on_gpu.params, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(on_gpu.params), saved_params)


def test_optimizer_state_loaded_on_cpu_moves_to_the_gpu_at_the_next_step(cp):
    params = np.random.default_rng(0).normal(size=100).astype(np.float32)
    grads = np.ones(100, dtype=np.float32)
    cpu_optimizer = optim.create("adam")
    cpu_optimizer.step(params, grads)
    gpu_optimizer = optim.create("adam")
    gpu_optimizer.load_state_dict(cpu_optimizer.state_dict())
    gpu_params = cp.asarray(params)
    gpu_optimizer.step(gpu_params, cp.asarray(grads))
    cpu_optimizer.step(params, grads)
    assert all(isinstance(b, cp.ndarray) for b in gpu_optimizer.state.values())
    np.testing.assert_allclose(cp.asnumpy(gpu_params), params, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ device selection


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cupy", "CUDA", "auto"])
def test_cuda_device_names_give_the_cupy_backend(device, cp):
    backend = fastmlp.get_backend(device)
    assert backend.name == "cupy" and backend.device == "cuda:0" and backend.xp is cp


def test_a_cuda_index_past_the_last_gpu_is_unavailable(cp):
    count = cp.cuda.runtime.getDeviceCount()
    assert f"cuda:{count - 1}" in fastmlp.available_devices()
    with pytest.raises(fastmlp.DeviceUnavailableError, match=f"cuda:{count}"):
        fastmlp.get_backend(f"cuda:{count}")


def test_gpu_backend_rng_is_seeded_and_permutes_on_the_device(gpu, cp):
    a = gpu.rng(3).permutation(1000)
    b = gpu.rng(3).permutation(1000)
    assert isinstance(a, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(a), cp.asnumpy(b))
    assert sorted(cp.asnumpy(a).tolist()) == list(range(1000))
