"""Figures for a trained classifier: confusion matrix, mistakes, class samples, curves.

The metrics they show come from :mod:`fastmlp.runs.metrics`. The plots need matplotlib
(``pip install "fastmlp[plot]"``), imported only when a plot is drawn. They draw on a
``matplotlib.figure.Figure`` with its own Agg canvas: no pyplot, no change to the user's
backend, nothing left open. Each plot writes a PNG atomically, creating the parent
directories, and returns the path written.

Arrays given to these functions must be NumPy arrays (use ``backend.to_numpy`` on device
arrays first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.errors import MissingDependencyError
from fastmlp.files import atomic_write
from fastmlp.runs.metrics import per_class_metrics, ratio

DPI = 150

# Confusion matrices of more classes than this get no per-cell numbers (they would not fit).
MAX_ANNOTATED_CLASSES = 30

# Class names in image titles are cut to this many characters.
_TITLE_NAME_CHARS = 16

_INSTALL_HINT = 'figures need matplotlib: pip install "fastmlp[plot]"'


def new_figure(width: float, height: float) -> Any:
    """A constrained-layout Figure (inches) on its own Agg canvas, away from pyplot."""
    try:
        import matplotlib.figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError as error:
        raise MissingDependencyError(_INSTALL_HINT) from error
    figure = matplotlib.figure.Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Any, path: str | PathLike[str]) -> Path:
    """Write ``figure`` as a PNG at ``DPI`` dots per inch, creating parent directories;
    atomically, so a full disk never leaves a half-written image."""
    path = Path(path)
    with atomic_write(path) as stream:
        figure.savefig(stream, dpi=DPI, format="png", facecolor="white")
    return path


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light colours, white on dark ones (relative luminance of the sRGB colour)."""
    red, green, blue = rgba[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "white"


def _percent(fraction: float) -> str:
    """A fraction as a percentage: 2 significant digits from 10%, 1 decimal below."""
    if fraction == 0:
        return "0%"
    if fraction < 0.001:
        return "<0.1%"
    return f"{100 * fraction:.0f}%" if fraction >= 0.0995 else f"{100 * fraction:.1f}%"


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | PathLike[str],
    title: str | None = None,
) -> Path:
    """Draw a confusion matrix, coloured by the fraction of each true class, as a PNG.

    Colours use a square-root scale so that small confusions stand out. Each cell shows its
    count and its share of the row (a dimmed "0" when empty; no numbers beyond
    ``MAX_ANNOTATED_CLASSES`` classes); the diagonal is outlined and its numbers are bold.
    The strip at the right gives each class's recall, the strip at the bottom its
    precision, the corner the overall accuracy (also in the title).

    Args:
        confusion: (K, K) counts, rows = true class, columns = predicted class.
        class_names: K names, in class order.
        path: where to write the PNG.
        title: shown before the accuracy (default "Confusion matrix").

    Returns:
        The path written.
    """
    confusion = np.asarray(confusion)
    k = len(class_names)
    if confusion.shape != (k, k):
        raise ValueError(f"confusion has shape {confusion.shape}, expected ({k}, {k})")
    metrics = per_class_metrics(confusion)
    fractions = ratio(confusion, confusion.sum(axis=1, keepdims=True))
    side = max(4.0, (0.62 if k <= 20 else 0.4) * k)  # inches
    figure = new_figure(side + 3.4, side + 2.6)
    from matplotlib import colormaps
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Rectangle

    cmap = colormaps["viridis"]
    # A square-root scale, so that confusions of a few percent stand out from zero.
    norm = PowerNorm(gamma=0.5, vmin=0, vmax=1)
    grid = figure.add_gridspec(
        2, 3, width_ratios=[side, 0.8, 0.22], height_ratios=[side, 0.6], wspace=0.02, hspace=0.02
    )
    ax = figure.add_subplot(grid[0, 0])
    ax_recall = figure.add_subplot(grid[0, 1], sharey=ax)
    ax_precision = figure.add_subplot(grid[1, 0], sharex=ax)
    ax_accuracy = figure.add_subplot(grid[1, 1])
    ax_colourbar = figure.add_subplot(grid[0, 2])
    font = 8 if k <= 12 else 6

    image = ax.imshow(fractions, cmap=cmap, norm=norm, aspect="auto")
    for i in range(k):
        for j in range(k if k <= MAX_ANNOTATED_CLASSES else 0):
            count = int(confusion[i, j])
            label = f"{count:,}\n{_percent(fractions[i, j])}" if count else "0"
            ax.text(
                j,
                i,
                label,
                ha="center",
                va="center",
                fontsize=font,
                color=_text_colour(cmap(norm(fractions[i, j]))),
                alpha=1 if count else 0.45,
                fontweight="bold" if i == j else "normal",
            )
        ax.add_patch(
            Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2.2)
        )
    for strip, values in (
        (ax_recall, metrics["recall"][:, None]),
        (ax_precision, metrics["precision"][None, :]),
        (ax_accuracy, np.array([[metrics["accuracy"]]])),
    ):
        strip.imshow(values, cmap=cmap, norm=norm, aspect="auto")
        for (row, col), value in np.ndenumerate(values):
            strip.text(
                col,
                row,
                f"{100 * value:.1f}%",
                ha="center",
                va="center",
                fontsize=font,
                color=_text_colour(cmap(norm(value))),
                fontweight="bold",
            )

    ticks = np.arange(k)
    ax.set_yticks(ticks, labels=class_names)
    ax.set_ylabel("true")
    ax.tick_params(axis="x", labelbottom=False, bottom=False)
    ax_precision.set_xticks(
        ticks, labels=class_names, rotation=40, ha="right", rotation_mode="anchor"
    )
    ax_precision.set_xlabel("predicted")
    ax_precision.set_yticks([0], labels=["precision"])
    ax_recall.tick_params(axis="y", labelleft=False, left=False)
    ax_recall.set_xticks([0], labels=["recall"])
    ax_recall.xaxis.tick_top()
    ax_recall.tick_params(axis="x", length=0)
    ax_precision.tick_params(axis="y", length=0)
    ax_accuracy.set_xticks([])
    ax_accuracy.set_yticks([])
    ax_accuracy.set_xlabel("accuracy", fontsize=font + 1)
    for spine_ax in (ax, ax_recall, ax_precision, ax_accuracy):
        spine_ax.spines[:].set_visible(False)

    colourbar = figure.colorbar(image, cax=ax_colourbar)
    ticks = [0, 0.01, 0.05, 0.2, 0.5, 1]
    colourbar.set_ticks(ticks, labels=[f"{tick:g}" for tick in ticks])
    colourbar.set_label("fraction of true class")
    total = int(confusion.sum())
    figure.suptitle(
        f"{title or 'Confusion matrix'}: accuracy {100 * metrics['accuracy']:.2f}% "
        f"on {total:,} samples",
        fontsize=12,
    )
    return save_figure(figure, path)


def _confidence(probability: float) -> str:
    """A probability as a percentage; near 1 it is truncated to 99.9%, never rounded to 100%
    ("?" when it is not a number)."""
    if not math.isfinite(probability):
        return "?"
    if probability < 0.995:
        return f"{100 * probability:.0f}%"
    return f"{math.floor(1000 * probability) / 10:.1f}%"


def _short(name: str) -> str:
    """``name`` cut to ``_TITLE_NAME_CHARS`` characters, with an ellipsis if cut."""
    return name if len(name) <= _TITLE_NAME_CHARS else name[: _TITLE_NAME_CHARS - 1] + "…"


def _square_images(images: Any) -> tuple[np.ndarray, float]:
    """(N, H, W) images and the value of white: 255 for uint8, 1 for floats in [0, 1].

    Accepts (N, H, W) or flat (N, H * W) square images.
    """
    images = np.asarray(images)
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"flat images of {images.shape[1]} pixels are not square")
        images = images.reshape(-1, side, side)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W) or (N, H*W), got {images.shape}")
    return images, 255.0 if images.dtype == np.uint8 else 1.0


def _tile_grid(figure: Any, count: int, columns: int) -> list[Any]:
    """``count`` axes without ticks in a grid of ``columns`` columns."""
    rows = math.ceil(count / columns)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    return list(axes[:count])


def plot_confident_mistakes(
    images: Any,
    y_true: Any,
    y_pred: Any,
    confidence: Any,
    class_names: Sequence[str],
    path: str | PathLike[str],
    count: int = 16,
) -> Path:
    """Draw the ``count`` wrong predictions made with the highest confidence, as a PNG.

    Tiles are ordered from the most confident mistake, titled ``pred X (97%)`` / ``true Y``.
    With fewer mistakes, all are shown; with none, the figure says so.

    Args:
        images: (N, H, W) uint8 or (N, H*W) floats in [0, 1]; drawn in grayscale.
        y_true, y_pred: (N,) integer labels.
        confidence: (N,) probability given to the predicted class.
        class_names: names indexed by label.
        path: where to write the PNG.
        count: at most this many tiles.

    Returns:
        The path written.
    """
    images, white = _square_images(images)
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    if not len(images) == y_true.size == y_pred.size == confidence.size:
        raise ValueError("images, y_true, y_pred and confidence must have the same length")
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]

    if shown.size == 0:
        figure = new_figure(5, 1.6)
        figure.text(
            0.5,
            0.5,
            f"No mistakes: all {y_true.size:,} predictions are correct.",
            ha="center",
            va="center",
            fontsize=12,
        )
        return save_figure(figure, path)

    columns = min(shown.size, 8)
    rows = math.ceil(shown.size / columns)
    figure = new_figure(max(6.5, 1.55 * columns), 1.85 * rows + 0.45)
    for ax, index in zip(_tile_grid(figure, shown.size, columns), shown, strict=True):
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=white)
        ax.set_title(
            f"pred {_short(class_names[y_pred[index]])} ({_confidence(confidence[index])})\n"
            f"true {_short(class_names[y_true[index]])}",
            fontsize=8,
        )
    figure.suptitle(
        f"The {shown.size} most confident mistakes "
        f"(of {wrong.size:,} mistakes in {y_true.size:,} samples)",
        fontsize=11,
    )
    return save_figure(figure, path)


def plot_class_samples(
    images: Any,
    labels: Any,
    class_names: Sequence[str],
    path: str | PathLike[str],
    seed: int = 0,
) -> Path:
    """Draw one randomly chosen image of each class, titled with the class name, as a PNG.

    Ten classes fill 2 rows of 5; K classes use max(5, ceil(sqrt(2 K))) columns.

    Args:
        images: (N, H, W) uint8 or (N, H*W) floats in [0, 1]; drawn in grayscale.
        labels: (N,) integer labels; class c's tile says "no samples" if no label is c.
        class_names: K names, in class order.
        path: where to write the PNG.
        seed: seeds the choice of each class's sample.

    Returns:
        The path written.
    """
    images, white = _square_images(images)
    labels = np.asarray(labels).ravel()
    if labels.size != len(images):
        raise ValueError(f"got {len(images)} images but {labels.size} labels")
    k = len(class_names)
    rng = np.random.default_rng(seed)
    columns = min(k, max(5, math.ceil(math.sqrt(2 * k))))
    rows = math.ceil(k / columns)
    figure = new_figure(max(5.0, 1.6 * columns), 1.75 * rows + 0.2)
    for c, ax in enumerate(_tile_grid(figure, k, columns)):
        members = np.flatnonzero(labels == c)
        ax.set_title(_short(class_names[c]), fontsize=10)
        if members.size:
            ax.imshow(images[rng.choice(members)], cmap="gray", vmin=0, vmax=white)
        else:
            ax.text(
                0.5, 0.5, "no samples", ha="center", va="center", fontsize=8, transform=ax.transAxes
            )
    return save_figure(figure, path)


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | PathLike[str]) -> Path:
    """Draw loss and accuracy against epoch, training and validation, as a PNG.

    Args:
        history: one mapping per epoch with ``epoch``, ``train_loss``, ``train_accuracy``
            (in [0, 1]), ``val_loss`` and ``val_accuracy`` (None when not measured); e.g.
            ``[m.to_dict() for m in training_history.epochs]``.
        path: where to write the PNG.

    Returns:
        The path written.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    figure = new_figure(10, 4)
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = np.array([row["epoch"] for row in history], dtype=np.float64)
    marker = "o" if len(history) <= 30 else None
    ax_loss, ax_accuracy = figure.subplots(1, 2)
    for ax, quantity in ((ax_loss, "loss"), (ax_accuracy, "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = np.array(
                [
                    np.nan if row[f"{split}_{quantity}"] is None else row[f"{split}_{quantity}"]
                    for row in history
                ],
                dtype=np.float64,
            )
            if np.isnan(values).all():
                continue
            label = "training" if split == "train" else "validation"
            ax.plot(epochs, values, style, marker=marker, markersize=4, label=label)
            if split == "val" and quantity == "accuracy":
                best = int(np.nanargmax(values))
                ax.plot(
                    epochs[best],
                    values[best],
                    "*",
                    color="black",
                    markersize=11,
                    label=f"best: {100 * values[best]:.2f}% at epoch {epochs[best]:g}",
                )
        ax.set_xlabel("epoch")
        ax.set_title(quantity)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_ylabel("mean loss")
    ax_accuracy.set_ylabel("accuracy")
    ax_accuracy.yaxis.set_major_formatter(PercentFormatter(1.0))
    return save_figure(figure, path)
