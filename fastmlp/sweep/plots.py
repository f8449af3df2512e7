"""Figures of a sweep report: parallel coordinates, metric against time, importance.

Each function draws on its own Agg figure (as ``fastmlp.runs.figures`` does: no pyplot, nothing
left open), writes a PNG and returns its path. Inputs are plain lists, one entry per trial.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.runs.figures import new_figure, save_figure

# Parameter values shown as tick labels on a numeric parallel-coordinates axis.
NUMERIC_TICKS = 5

# The parallel-coordinates value labels are drawn above the trials' lines (zorder 2 and 3).
LABEL_ZORDER = 5

# Time since the first trial is shown in the first of these units that keeps the span
# below 120 of them (days beyond that).
TIME_UNITS = (("seconds", 1.0), ("minutes", 60.0), ("hours", 3600.0), ("days", 86400.0))


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _axis(values: Sequence[Any], distribution: Any) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] of one parameter's values, and (position, label) ticks.

    Categorical values are evenly spaced (numbers in increasing order, other values in the
    order of the config); numbers are placed linearly, or logarithmically for a log
    distribution.
    """
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            choices.sort()
        spacing = max(len(choices) - 1, 1)
        positions = {repr(choice): index / spacing for index, choice in enumerate(choices)}
        ticks = [(index / spacing, _label(choice)) for index, choice in enumerate(choices)]
        return np.array([positions[repr(value)] for value in values]), ticks
    log = bool(getattr(distribution, "log", False))
    low, high = float(distribution.low), float(distribution.high)

    def scale(x: Any) -> Any:
        x = np.asarray(x, dtype=np.float64)
        if log:
            return (np.log(x) - math.log(low)) / (math.log(high) - math.log(low))
        return (x - low) / (high - low)

    marks = np.geomspace(low, high, NUMERIC_TICKS) if log else np.linspace(low, high, NUMERIC_TICKS)
    return scale(values), [(float(scale(mark)), _label(float(mark))) for mark in marks]


def plot_parallel_coordinates(
    params: Mapping[str, Sequence[Any]],
    distributions: Mapping[str, Any],
    values: Sequence[float],
    metric: str,
    goal: str,
    path: str | PathLike[str],
) -> Path:
    """One line per trial through an axis per parameter and a last axis for the metric.

    Args:
        params: parameter name -> the value of every trial (same order as ``values``).
        distributions: parameter name -> its Optuna distribution (sets the axis scale).
        values: the metric of every trial; goal: "maximize" or "minimize" (the best
            trial's line is drawn last, thickest).
        metric: the metric's name, for the labels.
        path: where to write the PNG.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    names = list(params)
    metric_values = np.asarray(values, dtype=np.float64)
    figure = new_figure(max(7.0, 1.5 * (len(names) + 1) + 1.5), 5.0)
    ax = figure.subplots()
    columns, ticks = [], []
    for name in names:
        positions, axis_ticks = _axis(params[name], distributions[name])
        columns.append(positions)
        ticks.append(axis_ticks)
    low, high = float(metric_values.min()), float(metric_values.max())
    spread = high - low or 1.0
    columns.append((metric_values - low) / spread)
    ticks.append(
        [(float((v - low) / spread), f"{v:.4g}") for v in np.linspace(low, high, NUMERIC_TICKS)]
        if high > low
        else [(0.0, f"{low:.4g}")]
    )

    lines = np.stack(columns, axis=1)
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1)
    colormap = colormaps["viridis"] if goal == "maximize" else colormaps["viridis_r"]
    order = np.argsort(metric_values if goal == "maximize" else -metric_values)
    x = np.arange(lines.shape[1])
    for rank, index in enumerate(order):
        best = rank == len(order) - 1
        ax.plot(
            x,
            lines[index],
            color=colormap(norm(metric_values[index])),
            linewidth=2.8 if best else 1.2,
            alpha=1.0 if best else 0.75,
            zorder=3 if best else 2,
        )
    for column, axis_ticks in enumerate(ticks):
        ax.axvline(column, color="0.3", linewidth=0.8, zorder=1)
        for position, label in axis_ticks:
            # On an opaque white box above every line, so that no line runs through the text.
            ax.text(
                column - 0.04,
                position,
                label,
                ha="right",
                va="center",
                fontsize=7,
                zorder=LABEL_ZORDER,
                bbox={
                    "boxstyle": "round,pad=0.15",
                    "facecolor": "white",
                    "edgecolor": "0.6",
                    "linewidth": 0.5,
                },
            )
    ax.set_xticks(x, [*names, metric], rotation=20 if len(names) > 6 else 0)
    ax.set_xlim(-0.6, len(names) + 0.3)
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    best_index = order[-1]
    ax.set_title(
        f"{len(metric_values)} complete trials; best {metric} {metric_values[best_index]:.4f}"
    )
    figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=ax, label=metric, pad=0.01)
    return save_figure(figure, path)


def plot_metric_vs_time(
    started: Sequence[datetime.datetime],
    values: Sequence[float | None],
    states: Sequence[str],
    metric: str,
    goal: str,
    path: str | PathLike[str],
) -> Path:
    """The metric of every trial against its start time, with the best-so-far line.

    Times are shown as time since the first trial started, in seconds, minutes, hours or
    days (whichever suits the sweep's span); the axis label gives the unit and that start.

    Args:
        started: start time of each trial; values: its metric (None when not measured);
        states: "COMPLETE", "PRUNED" or "FAIL" (failed trials are marked on the time axis).
        metric: the metric's name; goal: "maximize" or "minimize".
        path: where to write the PNG.
    """
    first = min(started)
    seconds = [(time - first).total_seconds() for time in started]
    unit, size = next(
        (unit, size) for unit, size in TIME_UNITS if max(seconds) < 120 * size or unit == "days"
    )
    elapsed = [value / size for value in seconds]

    figure = new_figure(9.0, 4.5)
    ax = figure.subplots()
    styles = {
        "COMPLETE": {"marker": "o", "color": "tab:blue", "label": "complete"},
        "PRUNED": {
            "marker": "o",
            "color": "0.6",
            "label": "pruned (value when stopped)",
            "markerfacecolor": "none",
        },
    }
    for state, style in styles.items():
        points = [
            (t, v) for t, v, s in zip(elapsed, values, states) if s == state and v is not None
        ]
        if points:
            times, ys = zip(*points)
            ax.plot(times, ys, linestyle="none", markersize=6, **style)
    failed = [t for t, s in zip(elapsed, states) if s == "FAIL"]
    if failed:
        ax.plot(
            failed,
            [0.02] * len(failed),
            "x",
            color="tab:red",
            markersize=7,
            transform=ax.get_xaxis_transform(),
            label="failed",
        )

    complete = sorted(
        (t, v) for t, v, s in zip(elapsed, values, states) if s == "COMPLETE" and v is not None
    )
    if complete:
        times = [t for t, _ in complete]
        ys = np.array([v for _, v in complete], dtype=np.float64)
        best = np.maximum.accumulate(ys) if goal == "maximize" else np.minimum.accumulate(ys)
        ax.step(
            [*times, max(elapsed)],
            [*best, best[-1]],
            where="post",
            color="tab:orange",
            linewidth=2,
            label=f"best so far: {best[-1]:.4f}",
        )
    ax.set_xlabel(f"{unit} since the first trial started ({first:%Y-%m-%d %H:%M})")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every trial by start time")
    ax.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=4, frameon=False)  # clear of the points
    return save_figure(figure, path)


def plot_importance(
    importances: Mapping[str, float] | None,
    correlations: Sequence[tuple[str, float]],
    metric: str,
    path: str | PathLike[str],
    note: str = "",
    caution: str = "",
) -> Path:
    """Parameter importance (left) and each parameter's rank correlation with the metric.

    Args:
        importances: parameter -> importance (summing to 1), or None when there are too few
            trials (``note`` says so on the panel).
        correlations: (label, Spearman correlation in [-1, 1]); categorical parameters give
            one entry per value (``optimizer=adam``: being that value against the rest).
        metric: the metric's name.
        path: where to write the PNG.
        caution: why both panels mean little (too few trials), shown above them in red.
    """
    rows = max(len(importances or {}), len(correlations), 3)
    figure = new_figure(11.0, 1.5 + 0.28 * rows + (0.4 if caution else 0.0))
    if caution:
        figure.suptitle(f"Caution: {caution}", color="tab:red", fontsize=10, wrap=True)
    ax_importance, ax_correlation = figure.subplots(1, 2)

    if importances:
        names = list(importances)[::-1]
        ax_importance.barh(names, [importances[name] for name in names], color="tab:blue")
        ax_importance.set_xlim(0, 1)
        for y, name in enumerate(names):
            ax_importance.text(
                importances[name] + 0.01, y, f"{importances[name]:.2f}", va="center", fontsize=8
            )
    else:
        ax_importance.text(
            0.5, 0.5, note, ha="center", va="center", wrap=True, transform=ax_importance.transAxes
        )
        ax_importance.set_yticks([])
    ax_importance.set_title(f"importance for {metric} (fANOVA)")
    ax_importance.set_xlabel("share of the explained variance")

    if correlations:
        ordered = sorted(correlations, key=lambda item: abs(item[1]))
        labels = [label for label, _ in ordered]
        values = [value for _, value in ordered]
        colors = ["tab:green" if value >= 0 else "tab:red" for value in values]
        ax_correlation.barh(labels, values, color=colors)
        for y, value in enumerate(values):
            ax_correlation.text(
                value + (0.02 if value >= 0 else -0.02),
                y,
                f"{value:+.2f}",
                va="center",
                ha="left" if value >= 0 else "right",
                fontsize=8,
            )
    ax_correlation.axvline(0, color="0.3", linewidth=0.8)
    ax_correlation.set_xlim(-1.15, 1.15)
    ax_correlation.set_title(f"rank correlation with {metric}")
    ax_correlation.set_xlabel("Spearman correlation (categorical: value vs. the rest)")
    for ax in (ax_importance, ax_correlation):
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)
