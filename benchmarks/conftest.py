"""Benchmark fixtures: every available backend, and the reference network's data."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp.backends.base import Backend


def _devices() -> list:
    """Plain NumPy, the default CPU backend when it differs (Numba), and the first GPU."""
    devices = ["numpy"]
    if fastmlp.get_backend("cpu").name != "numpy":
        devices.append("cpu")
    devices += [device for device in fastmlp.available_devices() if device.startswith("cuda")][:1]
    return [
        pytest.param(
            device,
            marks=[pytest.mark.gpu] if device.startswith("cuda") else [],
            id=fastmlp.get_backend(device).name if not device.startswith("cuda") else device,
        )
        for device in devices
    ]


@pytest.fixture(params=_devices())
def backend(request):
    return fastmlp.get_backend(request.param)


class ReferenceBackend(Backend):
    """The base class's plain bodies on NumPy: what the fused kernels are compared against."""

    name = "reference"


@pytest.fixture(scope="session")
def images():
    """54,000 Fashion-MNIST training images as float32 rows (random images if absent)."""
    try:
        data = fastmlp.data.load("fashion_mnist", download=False)
        x, y = data.x_train, data.y_train
    except fastmlp.data.DataError:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(54000, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=54000)
    return x.reshape(len(x), -1).astype(np.float32) / np.float32(255), y.astype(np.int64)


def synchronized(backend, function):
    """``function`` followed by a device synchronisation, so GPU timings are real."""

    def run():
        function()
        backend.synchronize()

    return run
