"""Array backends: one API over NumPy (CPU) and CuPy (CUDA GPU).

``get_backend(device)`` turns a device string into a :class:`Backend`; operations on
existing arrays follow the arrays (``backend_of``). CuPy is imported only when a CUDA
device is asked for or probed, so NumPy-only installs never import it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np

from fastmlp.backends.base import Backend
from fastmlp.backends.numpy_backend import NumpyBackend
from fastmlp.errors import UserError, one_line

__all__ = [
    "Backend",
    "DeviceUnavailableError",
    "NumpyBackend",
    "available_devices",
    "backend_of",
    "get_backend",
]

_CUDA_INSTALL_HINT = 'pip install "fastmlp[cuda12]" (or "fastmlp[cuda13]" for CUDA 13 drivers)'


class DeviceUnavailableError(UserError, RuntimeError):
    """A device was asked for that this machine cannot provide."""


@functools.cache
def _numpy_backend() -> NumpyBackend:
    return NumpyBackend()


@functools.cache
def _numba_backend() -> Backend:
    if not importlib.util.find_spec("numba"):
        raise DeviceUnavailableError(
            'device "numba" needs Numba, which is not installed: pip install "fastmlp[jit]"'
        )
    from fastmlp.backends.numba_backend import NumbaBackend

    return NumbaBackend()


@functools.cache
def _cpu_backend() -> Backend:
    """The fastest CPU backend here: Numba-compiled kernels when Numba is installed.

    ``FASTMLP_NUMBA=0`` in the environment keeps the plain NumPy backend (the two agree bit
    for bit or to rounding; see ``fastmlp.backends.numba_backend``).
    """
    if os.environ.get("FASTMLP_NUMBA", "").strip() != "0" and importlib.util.find_spec("numba"):
        return _numba_backend()
    return _numpy_backend()


@functools.cache
def _cupy_backend(device_id: int) -> Backend:
    from fastmlp.backends.cupy_backend import CupyBackend

    return CupyBackend(device_id)


def _cuda_device_count() -> int:
    """How many CUDA devices CuPy can use; raises DeviceUnavailableError saying why not."""
    try:
        import cupy
    except ImportError as error:
        raise DeviceUnavailableError(
            f"device 'cuda' needs CuPy, which is not installed ({error}); "
            f"install it with: {_CUDA_INSTALL_HINT}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError, missing driver libraries, ...
        raise DeviceUnavailableError(
            f"CuPy is installed but no CUDA GPU is usable ({one_line(error)}); "
            "check the NVIDIA driver, or use --device cpu"
        ) from None
    if count == 0:
        raise DeviceUnavailableError(
            "CuPy is installed but this machine has no CUDA GPU; use --device cpu"
        )
    return count


def _parse_cuda_index(device: str) -> int:
    if device in ("cuda", "cupy", "gpu"):
        return 0
    index = device.partition(":")[2]
    if not (index.isascii() and index.isdigit()):
        raise UserError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    return int(index)


def get_backend(device: str | Backend = "cpu") -> Backend:
    """The backend for ``device``.

    Args:
        device: ``"cpu"`` (NumPy, with Numba-compiled kernels when Numba is installed),
            ``"numpy"`` (plain NumPy), ``"numba"`` (Numba, an error without it),
            ``"cuda"`` / ``"cuda:N"`` (alias
            ``"cupy"``), or ``"auto"`` (the first CUDA device when one is usable, else the
            CPU). A Backend is returned as it is.

    Raises:
        DeviceUnavailableError: a CUDA device was asked for and CuPy or a GPU is missing.
        ValueError: the device string is not one of the above.
    """
    if isinstance(device, Backend):
        return device
    name = str(device).strip().lower()
    if name == "cpu":
        return _cpu_backend()
    if name == "numpy":
        return _numpy_backend()
    if name == "numba":
        return _numba_backend()
    if name == "auto":
        try:
            _cuda_device_count()
        except DeviceUnavailableError:
            return _cpu_backend()
        return _cupy_backend(0)
    if name in ("cuda", "cupy", "gpu") or name.startswith("cuda:"):
        index = _parse_cuda_index(name)
        count = _cuda_device_count()
        if index >= count:
            raise DeviceUnavailableError(
                f"device {device!r} does not exist: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        return _cupy_backend(index)
    raise UserError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")


def available_devices() -> list[str]:
    """The devices that work on this machine, e.g. ``["cpu", "cuda:0"]``."""
    devices = ["cpu"]
    try:
        count = _cuda_device_count()
    except DeviceUnavailableError:
        return devices
    return devices + [f"cuda:{index}" for index in range(count)]


def backend_of(array: Any) -> Backend:
    """The backend that owns ``array`` (NumPy arrays -> CPU, CuPy arrays -> their GPU)."""
    if isinstance(array, (np.ndarray, np.generic)):
        return _cpu_backend()
    module = type(array).__module__.partition(".")[0]
    if module == "cupy":
        return _cupy_backend(array.device.id)
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")
