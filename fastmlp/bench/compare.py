"""Side-by-side training speed: fastmlp against PyTorch, scikit-learn, a careful NumPy
trainer and the matrix-product floor, each contender in its own process.

Threads of OpenBLAS, OpenMP and PyTorch in one process interfere, so every contender lives
in a worker process of its own (spawned, so no library state is inherited) that loads the
same data and answers "run one epoch" with its seconds; only one runs at a time. Shared
machines drift (up to ~1.8x within minutes here), so absolute times mean little: the
contenders run interleaved -- A B C, B C A, C A B, ... -- and the report gives, for each
competitor, the median over rounds of the per-round ratio ``fastmlp samples/s /
competitor samples/s``, both sides measured seconds apart. The workers warm up side by
side, so one untimed round follows before the rounds that count. An epoch slower than
``DISTURBED`` times the contender's best so far was disturbed by other load and is run
again (up to ``RETRIES`` times; the count is reported).

Every worker computes subnormal floats as zero, as fastmlp's training loop does
(:mod:`fastmlp.backends.denormals`; PyTorch's own threads through
``torch.set_flush_denormal``): without it a hand-written Adam's state for always-zero
input pixels decays into subnormals and each epoch gets slower (the careful NumPy trainer:
0.22 s per epoch at batch 64 at first, 0.37 s by the eighth), which would measure the
subnormal trap rather than the training loop.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp.backends.denormals import denormals_are_zero
from fastmlp.bench.competitors import CONTENDERS, HIDDEN, STACK_PREFIX, make_contender, stack_size
from fastmlp.errors import UserError
from fastmlp.runs.environment import blas_library, processor_name

COMPETITORS = ("torch", "torch-fused", "sklearn", "careful-numpy", "fastmlp-numpy", "floor")

# An epoch this much slower than the contender's best so far is run again ...
DISTURBED = 1.3
# ... at most this many times.
RETRIES = 2
# Seconds between two contenders' epochs: the threads of the one that just ran (OpenMP,
# OpenBLAS) spin for a while after their last task, taking cores from the next one.
PAUSE = 0.5


@dataclass
class BatchResult:
    """All rounds at one batch size: samples/s per contender, ratios against fastmlp."""

    batch_size: int
    samples: int
    rounds: int
    samples_per_second: dict[str, list[float]] = field(default_factory=dict)
    reruns: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def median_rate(self, name: str) -> float:
        return statistics.median(self.samples_per_second[name])

    def median_ratio(self, name: str) -> float:
        """Median over rounds of fastmlp's rate divided by ``name``'s rate in the same round."""
        ours = next(iter(self.samples_per_second.values()))
        theirs = self.samples_per_second[name]
        return statistics.median(a / b for a, b in zip(ours, theirs))

    def median_speedup(self, name: str) -> float:
        """Median over rounds of ``name``'s rate divided by fastmlp's in the same round (a
        stack's per-model rate against one model's)."""
        ours = next(iter(self.samples_per_second.values()))
        theirs = self.samples_per_second[name]
        return statistics.median(b / a for a, b in zip(ours, theirs))

    @property
    def floor(self) -> str | None:
        """The name of the matmul floor's row, when it ran."""
        return next((name for name in self.samples_per_second if name == "matmul floor"), None)

    def share_of_floor(self, name: str) -> float:
        """Median over rounds of ``name``'s rate over the floor's: 1 would be all matmuls."""
        floor = self.samples_per_second[self.floor]
        ours = self.samples_per_second[name]
        return statistics.median(a / b for a, b in zip(ours, floor))


def machine_description() -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    cpu = processor_name() or platform.machine()
    versions = {
        "fastmlp": fastmlp.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for module in ("numba", "torch", "sklearn", "cupy"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    gpu = None
    if any(device.startswith("cuda") for device in fastmlp.available_devices()):
        import cupy

        gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "platform": platform.platform(),
        "blas": blas_library(),
        "versions": versions,
    }


def benchmark_data(samples: int, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``samples`` Fashion-MNIST training images as float32 in [0, 1], and labels."""
    try:
        dataset = fastmlp.data.load("fashion_mnist", data_dir=data_dir, val_fraction=0.0)
        x, y, source = dataset.x_train, dataset.y_train, "Fashion-MNIST"
    except fastmlp.data.DataError:
        if data_dir is not None:
            raise  # the data the user pointed at is missing or broken: say so
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(samples, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=samples)
        source = "random images (Fashion-MNIST not found)"
    x = x[:samples].reshape(-1, 784).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(x), y[:samples].astype(np.int64), source


def _serve(connection: Any, name: str, batch_size: int, device: str, samples: int,
           data_dir: str | None, hidden_sizes: tuple[int, ...]) -> None:  # fmt: skip
    """A worker: build contender ``name``, warm it up, then run an epoch per request, all
    with subnormal floats computed as zero."""
    with denormals_are_zero():
        _serve_contender(connection, name, batch_size, device, samples, data_dir, hidden_sizes)


def _serve_contender(connection: Any, name: str, batch_size: int, device: str, samples: int,
                     data_dir: str | None, hidden_sizes: tuple[int, ...]) -> None:  # fmt: skip
    try:
        x, y, source = benchmark_data(samples, data_dir)
        contender = make_contender(name, x, y, batch_size, device, hidden_sizes)
        contender.epoch()  # warm-up: allocation, kernel compilation, caches
    except (ImportError, ValueError) as error:
        connection.send(("unavailable", str(error)))
        return
    except Exception:  # a bug: its traceback goes to the parent, which raises it
        connection.send(("failed", traceback.format_exc()))
        return
    connection.send(("ready", contender.name, source, len(x)))
    while connection.recv() == "epoch":
        connection.send(contender.epoch())


class _Worker:
    """A contender's process and the parent's end of its pipe."""

    def __init__(self, context: Any, name: str, *arguments: Any) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, name, *arguments), daemon=True)
        self.process.start()
        child.close()
        self.key = self.label = name  # the label becomes the contender's own name

    def epoch(self) -> float:
        time.sleep(PAUSE)
        self.connection.send("epoch")
        return self.connection.recv()

    def stop(self) -> None:
        try:
            self.connection.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


def compare(
    batch_sizes: Sequence[int],
    device: str = "cpu",
    rounds: int = 5,
    samples: int = 16384,
    competitors: Sequence[str] = COMPETITORS,
    data_dir: str | None = None,
    log: Any = print,
    hidden_sizes: tuple[int, ...] = HIDDEN,
) -> tuple[list[BatchResult], str]:
    """Measure fastmlp and every competitor at every batch size, each contender in its own
    process, interleaved; returns the results and the data source. ``hidden_sizes``: the
    network, R's by default (fastmlp's contenders train any; the others R only)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    stacks = [name for name in competitors if name.startswith(STACK_PREFIX)]
    names = ["fastmlp", *(name for name in CONTENDERS if name in competitors), *stacks]
    _, _, source = benchmark_data(samples, data_dir)  # missing or broken data: said here, once
    results = []
    for batch_size in batch_sizes:
        result = BatchResult(batch_size=batch_size, samples=samples, rounds=rounds)
        workers = [
            _Worker(context, name, batch_size, device, samples, data_dir, tuple(hidden_sizes))
            for name in names
        ]
        try:
            ready = []
            for worker in workers:
                answer = worker.connection.recv()
                if answer[0] == "failed":
                    raise RuntimeError(f"bench contender {worker.key} failed:\n{answer[1]}")
                if answer[0] == "unavailable":
                    if worker.key == "fastmlp":  # nothing to compare with
                        raise UserError(f"fastmlp cannot run on {device}: {answer[1]}")
                    result.unavailable[worker.key] = answer[1]
                    continue
                _, label, source, result.samples = answer
                worker.label = label
                result.samples_per_second[label] = []
                result.reruns[label] = 0
                ready.append(worker)
            for worker in ready:  # one settling round, after every warm-up has ended
                worker.epoch()
            for round_index in range(rounds):
                turn = round_index % len(ready)
                for worker in ready[turn:] + ready[:turn]:  # each round starts elsewhere
                    rates = result.samples_per_second[worker.label]
                    seconds = worker.epoch()
                    best = result.samples / max(rates) if rates else seconds
                    for _ in range(RETRIES):
                        if seconds <= DISTURBED * best:
                            break
                        result.reruns[worker.label] += 1
                        seconds = worker.epoch()
                    rates.append(result.samples / seconds)
                log(
                    f"batch {batch_size} round {round_index + 1}/{rounds}: "
                    + ", ".join(
                        f"{name} {rates[-1]:,.0f}/s"
                        for name, rates in result.samples_per_second.items()
                    )
                )
        finally:
            for worker in workers:
                worker.stop()
        results.append(result)
    return results, source


def markdown_table(results: Sequence[BatchResult]) -> str:
    """One row per batch size: fastmlp's samples/s (and its share of the matmul floor),
    then each competitor's samples/s and fastmlp's ratio to it; for a stack of models its
    samples/s per model and their ratio to one model's."""
    names = list(results[0].samples_per_second)
    floor = results[0].floor
    header = ["batch", f"{names[0]} samples/s" + (" (share of floor)" if floor else "")]
    header += [
        f"{name} samples/s per model (× one model)"
        if stack_size(name)
        else f"{name} samples/s (fastmlp ×)"
        for name in names[1:]
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        first = f"{result.median_rate(names[0]):,.0f}"
        if floor:
            first += f" ({100 * result.share_of_floor(names[0]):.0f}%)"
        cells = [str(result.batch_size), first]
        for name in names[1:]:
            ratio = result.median_speedup(name) if stack_size(name) else result.median_ratio(name)
            cells.append(f"{result.median_rate(name):,.0f} ({ratio:.2f}×)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    results: Sequence[BatchResult],
    source: str,
    device: str,
    out: str | os.PathLike[str],
    hidden_sizes: tuple[int, ...] = HIDDEN,
) -> tuple[Path, Path]:
    """Write ``compare-<device>.json`` (every round) and ``.md`` (the table) into ``out``
    (``compare-<device>-stack.*`` for stacks)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    stacks = any(stack_size(name) for name in results[0].samples_per_second)
    stem = f"compare-{device.replace(':', '')}" + ("-stack" if stacks else "")
    network = "-".join(str(size) for size in (784, *hidden_sizes, 10))
    payload = {
        "machine": machine,
        "device": device,
        "network": network,
        "data": source,
        "method": "one process per contender, subnormals computed as zero in each, "
        "interleaved rounds (rotating order), an epoch "
        f"slower than {DISTURBED}x the contender's best re-run up to {RETRIES} times; ratio = "
        "median over rounds of fastmlp / competitor rate",
        "results": [
            {
                **asdict(result),
                "median_ratio": {
                    name: result.median_ratio(name) for name in list(result.samples_per_second)[1:]
                },
                # a stack's per-model samples/s over one model's
                "median_speedup": {
                    name: result.median_speedup(name)
                    for name in result.samples_per_second
                    if stack_size(name)
                },
                "share_of_floor": {
                    name: result.share_of_floor(name) for name in result.samples_per_second
                }
                if result.floor
                else {},
            }
            for result in results
        ],
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    versions = ", ".join(f"{key} {value}" for key, value in machine["versions"].items())
    blas = machine["blas"]
    versions += f"; BLAS {blas['name']} {blas['version'] or ''}".rstrip()
    if blas["threads"]:
        versions += f" ({blas['threads']} threads)"
    reference = "the reference network R, " if tuple(hidden_sizes) == HIDDEN else ""
    markdown = (
        f"Training throughput of {reference}{network}, ReLU, Adam, float32"
        f"{' (stacks: samples per second per model)' if stacks else ''}, "
        f"on {source}, {results[0].samples} samples per epoch, {results[0].rounds} interleaved "
        f"rounds, each contender in its own process; ratios are medians of per-round ratios; "
        f"the share of floor is the rate over that of the step's matrix products alone.\n\n"
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores)"
        f"{', ' + machine['gpu'] if machine['gpu'] else ''}, device {device}; {versions}.\n\n"
        f"{markdown_table(results)}\n"
    )
    markdown_path = out / f"{stem}.md"
    markdown_path.write_text(markdown)
    return json_path, markdown_path
