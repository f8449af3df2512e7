"""Where each sweep worker trains: round-robin over the visible GPUs, or the sweep's device.

A sweep whose device is CUDA (``--device cuda``, ``cuda:N``, or ``auto`` on a machine with a
GPU) gives worker ``i`` the device ``cuda:(i mod G)`` of the G GPUs it may use (every visible
GPU for ``cuda``, GPU N alone for ``cuda:N``), with up to ``--workers_per_gpu`` workers on
each; without ``--workers`` there are ``G x workers_per_gpu`` workers. Any other sweep (CPU,
or a sweep whose trials choose their own device) leaves the device to each trial, as before.

Each worker gets a device name, not a CUDA_VISIBLE_DEVICES of its own: the device is then an
ordinary run setting that every trial's ``config.json`` records (which GPU a trial ran on is
in its run), nothing depends on a worker process setting an environment variable before
anything in it touches CUDA, and a CUDA_VISIBLE_DEVICES that the user or a scheduler set is
honoured as it is: ``cuda:i`` is the i-th GPU it makes visible, and the start-up lines name
the physical GPU behind it.

The logic here is pure (:func:`place_workers` takes the GPU count as a function, called only
for a CUDA sweep), so it is tested without a GPU; :func:`plan_workers` wires it to the sweep
configuration and to CuPy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastmlp.sweep.config import SweepConfig
from fastmlp.sweep.study import SweepError

CPU_DEVICES = frozenset({"cpu", "numpy", "numba"})
CUDA_DEVICES = frozenset({"cuda", "cupy", "gpu"})


@dataclass(frozen=True)
class WorkerPlace:
    """Where one worker trains.

    Attributes:
        device: the device its trials train on, ``cuda:i``; None: the sweep's own device
            setting, unchanged (CPU sweeps).
        where: one line for the start-up message (empty for a CPU worker).
    """

    device: str | None
    where: str = ""


def visible_gpu_names(count: int, environ: Mapping[str, str]) -> list[str]:
    """The physical GPU behind each of ``cuda:0`` .. ``cuda:count-1``: the entries of
    CUDA_VISIBLE_DEVICES when it is set (indices or UUIDs), else the indices themselves.

    ``count`` is CuPy's, which already honours CUDA_VISIBLE_DEVICES (CUDA stops at its first
    entry that names no GPU, so the count may be shorter than the list).
    """
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(index) for index in range(count)]
    entries = [entry.strip() for entry in visible.split(",")]
    return entries[:count]


def _gpus(device: str, count: int, environ: Mapping[str, str]) -> list[int]:
    """The indices of the GPUs a CUDA ``device`` may use."""
    if count == 0:
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        why = "" if visible is None else f" (CUDA_VISIBLE_DEVICES={visible!r})"
        raise SweepError(f"device {device!r} needs a CUDA GPU, and none is visible{why}")
    if device in CUDA_DEVICES or device == "auto":
        return list(range(count))
    index = device.partition(":")[2]
    if not (index.isascii() and index.isdigit()):
        raise SweepError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    if int(index) >= count:
        raise SweepError(
            f"device {device!r} does not exist: {count} GPU(s) are visible, "
            f"cuda:0 to cuda:{count - 1}"
        )
    return [int(index)]


def place_workers(
    device: str | None,
    workers: int | None,
    workers_per_gpu: int | None,
    gpu_count: Callable[[], int],
    environ: Mapping[str, str] | None = None,
) -> list[WorkerPlace]:
    """One place per worker.

    Args:
        device: the sweep's device (``cpu``, ``numpy``, ``numba``, ``cuda``, ``cuda:N``,
            ``auto``), or None when every trial chooses its own.
        workers: ``--workers`` (None: 1 on the CPU, ``GPUs x workers_per_gpu`` on GPUs).
        workers_per_gpu: ``--workers_per_gpu`` (None: 1); only for a CUDA sweep.
        gpu_count: how many CUDA GPUs are visible; called only when the device may be one.
        environ: the environment whose CUDA_VISIBLE_DEVICES names the GPUs (default: ours).

    Raises:
        SweepError: a device or a count that cannot be honoured, in one line.
    """
    environ = os.environ if environ is None else environ
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    if workers_per_gpu is not None and workers_per_gpu < 1:
        raise SweepError(f"--workers_per_gpu must be at least 1, got {workers_per_gpu}")
    name = None if device is None else device.strip().lower()
    count = 0 if name is None or name in CPU_DEVICES else gpu_count()
    if name is None or name in CPU_DEVICES or (name == "auto" and count == 0):
        if workers_per_gpu is not None:
            why = {
                None: "this sweep's trials choose their own device",
                "auto": "device auto found no GPU here",
            }.get(name, f"device {name} is the CPU")
            raise SweepError(f"--workers_per_gpu is for sweeps on GPUs ({why})")
        return [WorkerPlace(device=None)] * (workers or 1)

    gpus = _gpus(name, count, environ)
    per_gpu = workers_per_gpu or 1
    capacity = len(gpus) * per_gpu
    workers = capacity if workers is None else workers
    if workers > capacity:
        raise SweepError(
            f"--workers {workers} is more than {len(gpus)} GPU(s) x {per_gpu} worker(s) per "
            f"GPU for device {name!r}: pass --workers_per_gpu "
            f"{-(-workers // len(gpus))}, or fewer workers"
        )
    names = visible_gpu_names(count, environ)
    physical = "CUDA_VISIBLE_DEVICES" in environ
    places = []
    for worker in range(workers):
        gpu = gpus[worker % len(gpus)]
        where = f"cuda:{gpu}"
        if physical:
            where += (
                f" (GPU {names[gpu]} of CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']})"
            )
        if worker >= len(gpus):
            sharing = list(range(worker % len(gpus), worker, len(gpus)))
            where += (
                f", shared with worker{'s' * (len(sharing) > 1)} {', '.join(map(str, sharing))}"
            )
        places.append(WorkerPlace(device=f"cuda:{gpu}", where=where))
    return places


def sweep_device(device: str | None, config: SweepConfig) -> str | None:
    """The device every trial of the sweep trains on: ``--device``, else the config's
    constant, else ``fastmlp train``'s default (auto); None when the sweep sweeps it."""
    if device is not None:
        return device
    if "device" in config.constants:
        return str(config.constants["device"])
    if "device" in config.parameters:
        return None
    return "auto"


def cuda_device_count() -> int:
    """How many CUDA GPUs CuPy can use here (0 without CuPy or a GPU)."""
    from fastmlp.backends import available_devices

    return sum(device.startswith("cuda") for device in available_devices())


def plan_workers(
    config: SweepConfig,
    device: str | None,
    workers: int | None,
    workers_per_gpu: int | None,
) -> list[WorkerPlace]:
    """The places of a sweep's workers on this machine (see :func:`place_workers`)."""
    return place_workers(
        sweep_device(device, config), workers, workers_per_gpu, gpu_count=cuda_device_count
    )
