"""A stand-in for ``cupy`` backed by NumPy that counts what a GPU run would cost.

``FakeCupy`` is a module object that ``fastmlp/backends/cupy_backend.py`` is imported over
(``tests/cuda_host.py``'s ``import_cupy_backend``). Its arrays are :class:`DeviceArray`, a
NumPy array subclass standing for device memory, and it keeps a :class:`Ledger` of

* **launches**: every kernel a CuPy run would start: each ElementwiseKernel and
  ReductionKernel call (their CUDA C++ bodies compiled for the CPU, as in
  ``tests/cuda_host.py``), every ufunc and array function on device arrays (``matmul`` is
  cuBLAS, ``sum`` a reduction, ``a + b`` an elementwise kernel), copies into device arrays,
  gathers by an index array, random draws;
* **device-to-host transfers**: ``cupy.asnumpy``, ``.get()``, and anything that turns a
  device array into a host value (``float(a)``, ``int(a)``, ``bool(a)``, ``a.item()``,
  ``a.tolist()``): each is a synchronisation of the host with the device;
* **host-to-device transfers**: ``cupy.asarray`` of host data (CuPy stages it through
  page-locked memory and queues the copy: no wait for the device, but a copy per call).

Shape-only operations (views, slices, ``reshape``) launch nothing, as on a GPU. The counts
are what the CuPy backend would issue; they do not model CuPy's own fusion or caching.
"""

from __future__ import annotations

import collections
import functools
import math
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.cuda_host import HostElementwiseKernel, HostReductionKernel

# Array functions that only make a view or read metadata: no kernel on a GPU.
NO_LAUNCH = frozenset(
    {"reshape", "ravel", "shape", "ndim", "size", "result_type", "broadcast_to", "squeeze",
     "expand_dims", "atleast_1d", "atleast_2d", "moveaxis", "swapaxes", "transpose",
     "may_share_memory", "shares_memory", "empty", "empty_like", "iscomplexobj", "isscalar"}
)  # fmt: skip


class Ledger:
    """What the device was asked to do: launches by name, transfers each way."""

    def __init__(self) -> None:
        self.launches: collections.Counter[str] = collections.Counter()
        self.to_host = 0
        self.to_device = 0
        self.recording = True

    def launch(self, name: str) -> None:
        if self.recording:
            self.launches[name] += 1

    def transfer_to_host(self) -> None:
        if self.recording:
            self.to_host += 1

    def transfer_to_device(self) -> None:
        if self.recording:
            self.to_device += 1

    def reset(self) -> None:
        self.launches.clear()
        self.to_host = self.to_device = 0

    @property
    def total_launches(self) -> int:
        return sum(self.launches.values())

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing is recorded inside (the test's own reads of device arrays)."""
        saved, self.recording = self.recording, False
        try:
            yield
        finally:
            self.recording = saved


LEDGER = Ledger()


def host(value: Any) -> Any:
    """``value`` with every DeviceArray in it (also in tuples, lists and dicts) as a plain
    NumPy view of the same memory."""
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, tuple):
        return tuple(host(item) for item in value)
    if isinstance(value, list):
        return [host(item) for item in value]
    if isinstance(value, dict):
        return {key: host(item) for key, item in value.items()}
    return value


def device(value: Any) -> Any:
    """Every NumPy array in ``value`` as a DeviceArray (the same memory), and every NumPy
    scalar as a 0-d one: what NumPy returns as a scalar (``a.sum()``), CuPy keeps on the
    device as a 0-d array. Python numbers stay."""
    if isinstance(value, np.generic):
        return np.asarray(value).view(DeviceArray)
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(device(item) for item in value)
    if isinstance(value, list):
        return [device(item) for item in value]
    return value


def _returning(out: Any, result: Any) -> Any:
    """The ``out=`` arrays the caller gave back as they were given, else the result."""
    if out is None:
        return device(result)
    return out[0] if isinstance(out, tuple) and len(out) == 1 else out


class DeviceArray(np.ndarray):
    """An array in "device" memory: NumPy memory whose every kernel and host read counts."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        LEDGER.launch(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = host(out)
        result = getattr(ufunc, method)(*host(inputs), **kwargs)
        return _returning(out, result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        if func.__name__ not in NO_LAUNCH:
            LEDGER.launch(func.__name__)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = host(out)
        result = func(*host(args), **host(kwargs))
        return _returning(out, result)

    def __getitem__(self, key: Any) -> Any:
        if any(isinstance(k, np.ndarray) for k in (key if isinstance(key, tuple) else (key,))):
            LEDGER.launch("gather")
        return device(self.view(np.ndarray)[host(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        LEDGER.launch("copy")
        self.view(np.ndarray)[host(key)] = host(value)

    # a device array read on the host: a synchronisation and a copy
    def __float__(self) -> float:
        LEDGER.transfer_to_host()
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        LEDGER.transfer_to_host()
        return int(self.view(np.ndarray))

    def __index__(self) -> int:
        LEDGER.transfer_to_host()
        return self.view(np.ndarray).__index__()

    def __bool__(self) -> bool:
        LEDGER.transfer_to_host()
        return bool(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        LEDGER.transfer_to_host()
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        LEDGER.transfer_to_host()
        return self.view(np.ndarray).tolist()

    def get(self) -> np.ndarray:
        LEDGER.transfer_to_host()
        return np.array(self.view(np.ndarray))

    # ndarray methods that run a kernel without going through a ufunc or array function
    def _method(name: str) -> Callable[..., Any]:  # noqa: N805 - a class-body helper
        def method(self: DeviceArray, *args: Any, **kwargs: Any) -> Any:
            LEDGER.launch(name)
            out = kwargs.get("out")
            if out is not None:
                kwargs["out"] = host(out)
            return _returning(out, getattr(self.view(np.ndarray), name)(*host(args), **kwargs))

        method.__name__ = name
        return method

    argmax = _method("argmax")
    argmin = _method("argmin")
    astype = _method("astype")
    copy = _method("copy")
    fill = _method("fill")
    del _method


class _RandomState:
    """``cupy.random.RandomState``: draws into device arrays, one launch each. It draws
    what NumPy's default generator of the same seed draws (CuPy's cuRAND draws other
    numbers), so that a run on this stand-in can be compared with the NumPy backend's."""

    def __init__(self, seed: int | None = None) -> None:
        self._numpy = np.random.default_rng(seed)

    def permutation(self, n: int) -> DeviceArray:
        LEDGER.launch("random.permutation")
        return device(self._numpy.permutation(n))

    def random_sample(self, size: Any = None, dtype: Any = float) -> DeviceArray:
        LEDGER.launch("random.random_sample")
        return device(self._numpy.random(size, dtype=np.dtype(dtype)))


class _Counted:
    """A kernel object whose every call is one launch; its outputs are device arrays."""

    def __init__(self, kernel: Any, name: str) -> None:
        self.kernel, self.name = kernel, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        LEDGER.launch(self.name)
        return device(self.kernel(*host(args), **kwargs))  # it broadcasts as CuPy does


def _kernel_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return kwargs.get("name") or next(
        (a for a in reversed(args) if isinstance(a, str) and a.startswith("fastmlp_")), "kernel"
    )


class FakeCupy(types.ModuleType):
    """The ``cupy`` module as the CuPy backend uses it, over NumPy, counting into LEDGER."""

    ndarray = DeviceArray

    def __init__(self, directory: Path) -> None:
        super().__init__("cupy")
        self.ledger = LEDGER
        self.random = types.SimpleNamespace(RandomState=_RandomState)
        device_object = types.SimpleNamespace(use=lambda: None, synchronize=lambda: None)
        memory = 64 * 2**30
        self.cuda = types.SimpleNamespace(
            Device=lambda _device_id=0: device_object,
            runtime=types.SimpleNamespace(memGetInfo=lambda: (memory, memory)),
        )
        self.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)
        self.ElementwiseKernel = lambda *args, **kwargs: _Counted(
            HostElementwiseKernel(directory, *args, **kwargs), _kernel_name(args, kwargs)
        )
        self.ReductionKernel = lambda *args, **kwargs: _Counted(
            HostReductionKernel(directory, *args, **kwargs), _kernel_name(args, kwargs)
        )

    @staticmethod
    def asnumpy(a: Any) -> np.ndarray:
        if isinstance(a, DeviceArray):
            LEDGER.transfer_to_host()
            return np.array(a.view(np.ndarray))
        return np.asarray(a)

    @staticmethod
    def asarray(a: Any, dtype: Any = None) -> DeviceArray:
        if isinstance(a, DeviceArray):
            if dtype is None or np.dtype(dtype) == a.dtype:
                return a
            return a.astype(dtype)
        LEDGER.transfer_to_device()
        return device(np.array(a, dtype=dtype))

    def __getattr__(self, name: str) -> Any:
        """Every other function is NumPy's on device arrays, one launch per call."""
        value = getattr(np, name)
        if not callable(value) or isinstance(value, type):
            return value

        @functools.wraps(value)
        def on_device(*args: Any, **kwargs: Any) -> Any:
            if name not in NO_LAUNCH and name not in ("zeros", "ones", "full", "arange"):
                LEDGER.launch(name)
            elif name in ("zeros", "ones", "full", "arange"):
                LEDGER.launch(f"fill.{name}")
            out = kwargs.get("out")
            if out is not None:
                kwargs["out"] = host(out)
            return _returning(out, value(*host(args), **host(kwargs)))

        return on_device


def fake_cupyx() -> types.ModuleType:
    """``cupyx`` with ``cupyx.scipy.special.erf`` (the GELU formula's function)."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    special = types.SimpleNamespace(erf=lambda x: device(erf(host(x)).astype(x.dtype)))
    module = types.ModuleType("cupyx")
    module.scipy = types.SimpleNamespace(special=special)
    return module
