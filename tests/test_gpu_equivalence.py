"""The CuPy backend computes what the NumPy backend computes: kernel by kernel, training
step by training step, and checkpoints cross devices.

Every test here needs CuPy and a CUDA GPU (``pytest.mark.gpu``); conftest skips them
cleanly elsewhere.
"""

import numpy as np
import pytest

import fastmlp
from fastmlp import optim
from tests.kernel_cases import KERNEL_CASES, arrays_of, copied, kernel_arguments

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

OPTIMIZERS = optim.names()


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


# uniform_ draws from each backend's own generator (cuRAND vs PCG64): checked separately.
GPU_CASES = [(kernel, case) for kernel, case in KERNEL_CASES if kernel != "uniform_"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "kernel,case", GPU_CASES, ids=[k + (f"-{c}" if c else "") for k, c in GPU_CASES]
)
def test_cupy_kernel_equals_numpy_kernel_on_large_arrays(kernel, case, dtype, cp, gpu, cpu):
    args = kernel_arguments(
        kernel, case, np.random.default_rng(2024), dtype, size=FLAT_N, rows=ROWS
    )
    method = "bias_activation_" if kernel == "bias_activation_keep" else kernel
    host_args = copied(args, cpu)

    def to_device(a):
        if isinstance(a, np.ndarray):
            return cp.asarray(a)
        if isinstance(a, list):
            return [cp.asarray(x) for x in a]
        return a

    device_args = [to_device(a) for a in args]
    with np.errstate(over="ignore", under="ignore"):
        host_result = getattr(cpu, method)(*host_args)
    device_result = getattr(gpu, method)(*device_args)
    gpu.synchronize()

    rtol, atol = tolerances(kernel, dtype)
    for position, (on_gpu, on_cpu) in enumerate(zip(arrays_of(device_args), arrays_of(host_args))):
        assert isinstance(on_gpu, cp.ndarray) and on_gpu.dtype == on_cpu.dtype
        np.testing.assert_allclose(
            cp.asnumpy(on_gpu), on_cpu, rtol=rtol, atol=atol, err_msg=f"{kernel} array {position}"
        )
    if host_result is None:
        assert device_result is None
    else:
        assert isinstance(device_result, cp.ndarray) and device_result.ndim == 0, (
            "a 0-d device array"
        )
        assert device_result.dtype == host_result.dtype
        np.testing.assert_allclose(float(device_result), float(host_result), rtol=rtol)


def test_uniform_fills_in_place_with_seeded_values_in_zero_one(gpu, cp):
    out = cp.empty((ROWS, 11), dtype=cp.float32)
    gpu.uniform_(out, gpu.rng(3))
    again = cp.empty_like(out)
    gpu.uniform_(again, gpu.rng(3))
    values = cp.asnumpy(out)
    assert values.dtype == np.float32 and 0 <= values.min() and values.max() < 1
    np.testing.assert_array_equal(values, cp.asnumpy(again))
    assert abs(values.mean() - 0.5) < 0.01


@pytest.mark.parametrize("name", ["rmsprop", "adam", "nadam", "adamw"])
def test_float32_first_step_from_zero_state_matches_cpu_to_float32_rounding(name, cp):
    """From zero state v = (1 - beta2) g^2 exactly as torch and the CPU compute it:
    1 - beta2 is formed in double precision, then rounded, not formed in float32."""
    rng = np.random.default_rng(1)
    n = 100_003
    p = rng.normal(size=n).astype(np.float32)
    g = rng.normal(size=n).astype(np.float32)
    host, device = optim.create(name), optim.create(name)
    host_params, device_params = p.copy(), cp.asarray(p)
    host.step(host_params, g)
    device.step(device_params, cp.asarray(g))
    np.testing.assert_allclose(cp.asnumpy(device_params), host_params, rtol=1e-6, atol=1e-9)
    for key in host.buffers:
        np.testing.assert_allclose(
            cp.asnumpy(device.state[key]), host.state[key], rtol=1e-6, atol=1e-12
        )


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
    "weight_decay": 1e-2,
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


# ------------------------------------------------------------------------ stacks


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_stack_on_cuda_steps_as_the_stack_on_the_cpu(name, cp):
    """A stack of 4 (per-model seeds, weight decays and learning rates): 5 steps on the
    same batches give the CPU stack's parameters and per-model losses, in float64. On the
    GPU this runs the per-model optimizer kernel (one launch for all groups, the models'
    scalars in one table), the batched products and the fused loss rows."""
    x, y = blobs()
    models = {
        device: fastmlp.MLP(
            20, (32, 16), 4, activation="tanh", device=device, dtype="float64",
            seed=[1, 2, 3, 4], n_models=4, weight_decay=[0.0, 1e-3, 0.0, 1e-2],
        )
        for device in ("cpu", "cuda")
    }  # fmt: skip
    rates = [1e-2, 3e-3, 1e-2, 3e-2]
    optimizers = {
        device: optim.create(name, model.param_groups(), **{**HYPERPARAMETERS, "lr": rates})
        for device, model in models.items()
    }
    losses = {device: [] for device in models}
    for step in range(5):
        batch = slice(step * 48, step * 48 + 48)
        for device, model in models.items():
            xb, yb = model.backend.asarray(x[batch]), model.backend.asarray(y[batch])
            losses[device].append(model.backend.to_numpy(model.loss_and_grad(xb, yb)))
            optimizers[device].step(model.params, model.grads, model.backend)
    np.testing.assert_allclose(
        cp.asnumpy(models["cuda"].params), models["cpu"].params, rtol=1e-12, atol=1e-13
    )
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-12)
