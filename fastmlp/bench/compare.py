"""Side-by-side training speed: fastmlp against PyTorch and scikit-learn, in one process.

Shared machines drift (up to ~1.8x within minutes here), so absolute times mean little.
The contenders run interleaved -- A B C, A B C, ... -- on the same data, and the report
gives, for each competitor, the median over rounds of the per-round ratio
``fastmlp samples/s / competitor samples/s``: both sides of a ratio were measured seconds
apart, under the same conditions.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import fastmlp
from fastmlp.bench.competitors import available_contenders

COMPETITORS = ("torch", "torch-fused", "sklearn")


@dataclass
class BatchResult:
    """All rounds at one batch size: samples/s per contender, ratios against fastmlp."""

    batch_size: int
    samples: int
    rounds: int
    samples_per_second: dict[str, list[float]] = field(default_factory=dict)

    def median_rate(self, name: str) -> float:
        return statistics.median(self.samples_per_second[name])

    def median_ratio(self, name: str) -> float:
        """Median over rounds of fastmlp's rate divided by ``name``'s rate in the same round."""
        ours = next(iter(self.samples_per_second.values()))
        theirs = self.samples_per_second[name]
        return statistics.median(a / b for a, b in zip(ours, theirs))


def machine_description() -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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


def compare(
    batch_sizes: Sequence[int],
    device: str = "cpu",
    rounds: int = 5,
    samples: int = 16384,
    competitors: Sequence[str] = COMPETITORS,
    data_dir: str | None = None,
    log: Any = print,
) -> tuple[list[BatchResult], str]:
    """Measure every contender at every batch size; returns the results and the data source."""
    x, y, source = benchmark_data(samples, data_dir)
    results = []
    for batch_size in batch_sizes:
        contenders = available_contenders(x, y, batch_size, device, tuple(competitors))
        result = BatchResult(batch_size=batch_size, samples=len(x), rounds=rounds)
        for contender in contenders:
            contender.epoch()  # warm-up: allocation, kernel compilation, caches
            result.samples_per_second[contender.name] = []
        for round_index in range(rounds):
            for contender in contenders:
                rate = len(x) / contender.epoch()
                result.samples_per_second[contender.name].append(rate)
            log(
                f"batch {batch_size} round {round_index + 1}/{rounds}: "
                + ", ".join(
                    f"{name} {rates[-1]:,.0f}/s"
                    for name, rates in result.samples_per_second.items()
                )
            )
        results.append(result)
    return results, source


def markdown_table(results: Sequence[BatchResult]) -> str:
    """One row per batch size: fastmlp's samples/s, then each competitor's and the ratio."""
    names = list(results[0].samples_per_second)
    header = ["batch", f"{names[0]} samples/s"] + [
        f"{name} samples/s (fastmlp ×)" for name in names[1:]
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        cells = [str(result.batch_size), f"{result.median_rate(names[0]):,.0f}"]
        for name in names[1:]:
            cells.append(f"{result.median_rate(name):,.0f} ({result.median_ratio(name):.2f}×)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    results: Sequence[BatchResult], source: str, device: str, out: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Write ``compare-<device>.json`` (every round) and ``.md`` (the table) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    stem = f"compare-{device.replace(':', '')}"
    payload = {
        "machine": machine,
        "device": device,
        "data": source,
        "method": "interleaved rounds; ratio = median over rounds of fastmlp / competitor rate",
        "results": [
            {
                **asdict(result),
                "median_ratio": {
                    name: result.median_ratio(name) for name in list(result.samples_per_second)[1:]
                },
            }
            for result in results
        ],
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    versions = ", ".join(f"{key} {value}" for key, value in machine["versions"].items())
    markdown = (
        f"Training throughput of the reference network (784-128-128-128-10, ReLU, Adam, float32) "
        f"on {source}, {results[0].samples} samples per epoch, {results[0].rounds} interleaved "
        f"rounds; ratios are medians of per-round ratios.\n\n"
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores)"
        f"{', ' + machine['gpu'] if machine['gpu'] else ''}, device {device}; {versions}.\n\n"
        f"{markdown_table(results)}\n"
    )
    markdown_path = out / f"{stem}.md"
    markdown_path.write_text(markdown)
    return json_path, markdown_path
