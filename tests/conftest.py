"""Shared fixtures: the backend x dtype test matrix, and the skip for GPU-only tests.

In the spirit of scikit-learn's ``yield_namespace_device_dtype_combinations``: one test
body runs on every backend and dtype. CUDA cases carry ``pytest.mark.gpu``; when CuPy or a
GPU is missing they are skipped with the reason ``fastmlp`` gives, never failed. This file
never imports CuPy itself: it asks ``fastmlp.available_devices()`` / ``get_backend``, and
only when a collected test is marked ``gpu``.
"""

import functools
import importlib.util

import numpy as np
import pytest

import fastmlp

DTYPES = ["float32", "float64"]

# Every backend by name: plain NumPy always, Numba when installed (CI has it; "cpu" means
# Numba there, so naming both keeps the plain NumPy path tested), and "cuda" as a
# gpu-marked case that the hook below skips without a GPU.
_NUMBA = importlib.util.find_spec("numba") is not None
BACKENDS = [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(not _NUMBA, reason="needs numba"), id="numba"),
    pytest.param("cuda", marks=pytest.mark.gpu, id="cuda"),
]


def backend_dtype_combinations():
    """Yield ``pytest.param(device, dtype)`` for every backend and dtype; CUDA ones marked gpu."""
    for device in BACKENDS:
        name = device.values[0] if hasattr(device, "values") else device
        marks = device.marks if hasattr(device, "marks") else ()
        for dtype in DTYPES:
            yield pytest.param(name, dtype, marks=marks, id=f"{name}-{dtype}")


BACKEND_DTYPES = list(backend_dtype_combinations())


@functools.cache
def cuda_unavailable_reason():
    """None when a CUDA device works here, else why not (the DeviceUnavailableError text)."""
    if any(device.startswith("cuda") for device in fastmlp.available_devices()):
        return None
    try:
        fastmlp.get_backend("cuda")
    except fastmlp.DeviceUnavailableError as error:
        return str(error)
    return "no CUDA device is available"


def cuda_available():
    return cuda_unavailable_reason() is None


def pytest_collection_modifyitems(config, items):
    """Skip every test marked ``gpu`` when this machine has no usable CUDA device."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = cuda_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs CuPy and a CUDA GPU: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def device(request):
    """Each device of the matrix: "cpu", and "cuda" where a GPU is usable."""
    return request.param


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture(
    params=[
        pytest.param(tuple(case.values), marks=case.marks, id=case.id) for case in BACKEND_DTYPES
    ]
)
def device_dtype(request):
    """Each (device, dtype) combination of the matrix, as a tuple."""
    return request.param


@pytest.fixture
def backend(device):
    """The fastmlp backend of ``device``."""
    return fastmlp.get_backend(device)


@pytest.fixture
def rng():
    """A fixed-seed NumPy generator, so every test is reproducible."""
    return np.random.default_rng(20240521)
