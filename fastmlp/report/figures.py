"""The report's own figures: curves of several runs in one plot, and the seed-to-seed spread
of final accuracies. Drawn on the run figures' canvas (:mod:`fastmlp.runs.figures`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from fastmlp.runs.figures import new_figure, save_figure

Curve = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class Line:
    """One line of a panel: the mean over ``curves`` (one per seed; a band shows their range
    when there are several), drawn in colour number ``colour`` with ``style``."""

    label: str
    curves: Sequence[Curve]
    colour: int = 0
    style: str = "-"


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    lines: Sequence[Line]
    percent: bool = False


def _mean_curve(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs every curve has, and the mean, minimum and maximum there."""
    common = sorted(set.intersection(*(set(epoch for epoch, _ in curve) for curve in curves)))
    table = np.array(
        [[dict(curve)[epoch] for epoch in common] for curve in curves], dtype=np.float64
    ).reshape(len(curves), len(common))
    return np.array(common), table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def plot_curves(panels: Sequence[Panel], path: str | PathLike[str], title: str) -> Path:
    """Panels side by side, each with lines of metric against epoch, as a PNG."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = new_figure(5.2 * len(panels), 4.2)
    colours = colormaps["tab10"]
    for ax, panel in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels, strict=True):
        for line in panel.lines:
            curves = [curve for curve in line.curves if curve]
            if not curves:
                continue
            epochs, mean, low, high = _mean_curve(curves)
            colour = colours(line.colour % 10)
            label = line.label if len(curves) == 1 else f"{line.label} (mean of {len(curves)})"
            ax.plot(epochs, mean, line.style, color=colour, marker="o", markersize=3, label=label)
            if len(curves) > 1:
                ax.fill_between(epochs, low, high, color=colour, alpha=0.15, linewidth=0)
        ax.set_title(panel.title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel.ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel.percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title, fontsize=12)
    return save_figure(figure, path)


def plot_spread(
    groups: Sequence[tuple[str, Sequence[float]]],
    path: str | PathLike[str],
    title: str,
    xlabel: str,
) -> Path:
    """One row per group: each value (one per seed) as a dot, the mean as a bar, and the
    mean ± standard deviation written at the right, as a PNG. Values are fractions in [0, 1]."""
    from matplotlib.ticker import PercentFormatter
    from matplotlib.transforms import blended_transform_factory

    figure = new_figure(8, 0.55 * len(groups) + 1.4)
    ax = figure.subplots()
    rows = np.arange(len(groups))[::-1]
    everything = np.concatenate([np.asarray(values, dtype=np.float64) for _, values in groups])
    low, high = float(everything.min()), float(everything.max())
    pad = max(0.01, 0.08 * (high - low))
    ax.set_xlim(max(0.0, low - pad), min(1.0, high + pad))
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for row, (_, values) in zip(rows, groups, strict=True):
        values = np.asarray(values, dtype=np.float64)
        ax.plot(values, np.full(values.shape, row), "o", color="tab:blue", alpha=0.7, clip_on=False)
        ax.plot([values.mean()] * 2, [row - 0.3, row + 0.3], color="black", linewidth=2)
        ax.text(
            1.02,
            row,
            f"{100 * values.mean():.2f}% ± {100 * values.std():.2f}",
            transform=right,
            va="center",
            fontsize=8,
        )
    ax.set_yticks(rows, labels=[label for label, _ in groups], fontsize=8)
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title, fontsize=11)
    return save_figure(figure, path)
