"""The figure of ``fastmlp bench --stack``: a model's throughput in a stack of K against K.

Drawn with matplotlib (``pip install "fastmlp[plot]"``) on the run figures' canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from fastmlp.bench.compare import BatchResult
from fastmlp.bench.competitors import stack_size
from fastmlp.runs.figures import new_figure, save_figure


def stack_speedups(result: BatchResult) -> dict[int, float]:
    """K -> median over rounds of a model's samples/s in a stack of K over one model's
    (1 for K = 1), for the stacks in ``result``."""
    speedups = {1: 1.0}
    for name in list(result.samples_per_second)[1:]:
        size = stack_size(name)
        if size is not None:
            speedups[size] = result.median_speedup(name)
    return dict(sorted(speedups.items()))


def plot_stack_curve(results: Sequence[BatchResult], path: str | PathLike[str], title: str) -> Path:
    """One line per batch size of :func:`stack_speedups` against K (log scale), as a PNG."""
    figure = new_figure(6.4, 4.2)
    ax = figure.subplots()
    for result in results:
        speedups = stack_speedups(result)
        sizes, values = list(speedups), list(speedups.values())
        ax.plot(sizes, values, marker="o", label=f"batch {result.batch_size}")
        for size, value in zip(sizes[1:], values[1:]):
            ax.annotate(f"{value:.2f}×", (size, value), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.margins(y=0.12)  # room for the labels above the highest points
    ax.set_xscale("log", base=2)
    sizes = sorted({size for result in results for size in stack_speedups(result)})
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.set_xlabel("models in the stack, K")
    ax.set_ylabel("samples/s per model, × one model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title(title, fontsize=10)
    return save_figure(figure, path)
