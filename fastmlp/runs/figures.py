"""Figures for a trained classifier: confusion matrix, mistakes, confused pairs, per-class
scores, class samples, curves.

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
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fastmlp.data.errors import DataError
from fastmlp.data.sources import get_source
from fastmlp.errors import MissingDependencyError
from fastmlp.files import atomic_write
from fastmlp.runs.metrics import confusion_matrix, per_class_metrics, ratio

DPI = 150

# Confusion matrices of more classes than this get no per-cell numbers (they would not fit).
MAX_ANNOTATED_CLASSES = 30

# Class names in image titles are cut to this many characters.
_TITLE_NAME_CHARS = 16

# Figure titles shrink down to this font size (points) before long lines are wrapped.
_MIN_TITLE_FONT = 9.0

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


def dataset_title(name: str) -> str:
    """The name people write for the data set ``name`` (``Source.title``: "Fashion-MNIST" for
    ``fashion_mnist``); ``name`` itself when no registered data set has that name."""
    try:
        return get_source(name).title
    except DataError:
        return name


def _wrap(line: str, chars: int) -> list[str]:
    """``line`` broken into lines of about equal length, at most ``chars`` characters each,
    after spaces and after underscores (so that a long run name breaks too); an unbroken word
    longer than ``chars`` keeps a line of its own."""
    chars = math.ceil(len(line) / math.ceil(len(line) / max(chars, 1)))  # balanced lines
    lines = [""]
    for word in re.split(r"(?<=[ _])", line):
        if lines[-1] and len(lines[-1]) + len(word.rstrip()) > chars:
            lines.append("")
        lines[-1] += word
    return [text.rstrip() for text in lines]


def fit_title(figure: Any, text: str, fontsize: float = 12.0) -> Any:
    """Set ``text`` (lines separated by newlines) as the figure's centred title, fitted into
    the figure's width: the font shrinks towards ``_MIN_TITLE_FONT`` points, and lines still
    too long at that size are wrapped. Returns the title's ``Text``."""
    title = figure.suptitle(text, fontsize=fontsize)
    renderer = figure.canvas.get_renderer()
    room = 0.96 * figure.bbox.width
    width = title.get_window_extent(renderer).width
    if width > room:  # text widths do not scale exactly with the font: 2% to spare
        title.set_fontsize(max(_MIN_TITLE_FONT, 0.98 * fontsize * room / width))
        width = title.get_window_extent(renderer).width
    if width > room:
        lines = text.split("\n")
        chars = int(0.98 * max(len(line) for line in lines) * room / width)
        title.set_text("\n".join(part for line in lines for part in _wrap(line, chars)))
    return title


def _checked_confusion(confusion: Any, class_names: Sequence[str]) -> tuple[np.ndarray, int]:
    """``confusion`` as a (K, K) array for K class names, and K; a ValueError otherwise."""
    confusion = np.asarray(confusion)
    k = len(class_names)
    if confusion.shape != (k, k):
        raise ValueError(f"confusion has shape {confusion.shape}, expected ({k}, {k})")
    return confusion, k


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
        title: the title's first line, above the accuracy (default "Confusion matrix"); a
            long one is shrunk or wrapped to fit.

    Returns:
        The path written.
    """
    confusion, k = _checked_confusion(confusion, class_names)
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
    fit_title(
        figure,
        f"{title or 'Confusion matrix'}\naccuracy {100 * metrics['accuracy']:.2f}% "
        f"on {int(confusion.sum()):,} samples",
    )
    return save_figure(figure, path)


def _confidence(probability: float) -> str:
    """A probability as a percentage, never rounded up to 100%: "97%" below 99.5%, above that
    with the shortfall from 100% to 2 significant digits ("99.97%", "99.9994%"; 0.99971 and
    0.99979 are "99.971%" and "99.979%"), and ">99.9999%" within 1e-6 of 1 (where float32
    probabilities stop telling values apart). "?" when it is not a number."""
    if not math.isfinite(probability):
        return "?"
    if probability < 0.995:
        return f"{100 * probability:.0f}%"
    shortfall = 100 * (1 - probability)  # percentage points below 100%
    if shortfall < 1e-4:
        return ">99.9999%"
    decimals = 1 - math.floor(math.log10(shortfall))
    text = f"{100 - round(shortfall, decimals):.{decimals}f}".rstrip("0").rstrip(".")
    return f"{text}%"


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


def _same_length(images: np.ndarray, **columns: Any) -> list[np.ndarray]:
    """The per-image ``columns`` as flat arrays, each with one entry per image; a
    ValueError naming them all otherwise."""
    flat = [np.asarray(column).ravel() for column in columns.values()]
    if any(column.size != len(images) for column in flat):
        *most, last = ["images", *columns]
        raise ValueError(f"{', '.join(most)} and {last} must have the same length")
    return flat


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
    title: str | None = None,
) -> Path:
    """Draw the ``count`` wrong predictions made with the highest confidence, as a PNG.

    Tiles are ordered from the most confident mistake, titled ``pred X`` / ``p = 97%`` /
    ``true Y``. With fewer mistakes, all are shown; with none, the figure says so.

    Args:
        images: (N, H, W) uint8 or (N, H*W) floats in [0, 1]; drawn in grayscale.
        y_true, y_pred: (N,) integer labels.
        confidence: (N,) probability given to the predicted class.
        class_names: names indexed by label.
        path: where to write the PNG.
        count: at most this many tiles.
        title: a first line above the figure's own title (e.g. the run and data set).

    Returns:
        The path written.
    """
    images, white = _square_images(images)
    y_true, y_pred, confidence = _same_length(
        images, y_true=y_true, y_pred=y_pred, confidence=np.asarray(confidence, np.float64)
    )
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]

    if shown.size == 0:
        return _no_mistakes(y_true.size, path, title)

    columns = min(shown.size, 8)
    rows = math.ceil(shown.size / columns)
    figure = new_figure(max(6.5, 1.55 * columns), 2.0 * rows + 0.7)
    for ax, index in zip(_tile_grid(figure, shown.size, columns), shown, strict=True):
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=white)
        ax.set_title(
            f"pred {_short(class_names[y_pred[index]])}\n"
            f"p = {_confidence(confidence[index])}\n"
            f"true {_short(class_names[y_true[index]])}",
            fontsize=8,
        )
    fit_title(
        figure,
        _title_lines(
            title,
            f"The {shown.size} most confident mistakes "
            f"(of {wrong.size:,} mistakes in {y_true.size:,} samples)",
        ),
        fontsize=11,
    )
    return save_figure(figure, path)


def _title_lines(title: str | None, what: str) -> str:
    """A figure title: ``title`` (when given) above the line saying what the figure shows."""
    return f"{title}\n{what}" if title else what


def _no_mistakes(samples: int, path: str | PathLike[str], title: str | None) -> Path:
    """A figure that says that all ``samples`` predictions are correct, as a PNG."""
    figure = new_figure(8, 1.6)
    figure.text(
        0.5,
        0.4,
        f"No mistakes: all {samples:,} predictions are correct.",
        ha="center",
        va="center",
        fontsize=12,
    )
    if title:
        fit_title(figure, title, fontsize=11)
    return save_figure(figure, path)


def plot_confused_pairs(
    images: Any,
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    path: str | PathLike[str],
    pairs: int = 5,
    examples: int = 6,
    title: str | None = None,
) -> Path:
    """Draw the ``pairs`` most frequent confusions with example images, one row each, as a PNG.

    The (true, predicted) pairs of different classes are ranked by count (ties: in class
    order). Each row is labelled ``true Shirt → predicted T-shirt/top: 123 (12.3% of Shirt)``
    and shows the first ``examples`` such images, each titled with its index in the data.
    With no mistakes, the figure says so.

    Args:
        images: (N, H, W) uint8 or (N, H*W) floats in [0, 1]; drawn in grayscale.
        y_true, y_pred: (N,) integer labels in [0, K).
        class_names: K names, in class order.
        path: where to write the PNG.
        pairs: at most this many rows.
        examples: at most this many images per row.
        title: a first line above the figure's own title (e.g. the run and data set).

    Returns:
        The path written.
    """
    images, white = _square_images(images)
    y_true, y_pred = _same_length(images, y_true=y_true, y_pred=y_pred)
    confusion = confusion_matrix(y_true, y_pred, len(class_names))
    mistakes = confusion - np.diag(np.diag(confusion))
    ranked = np.argsort(-mistakes, axis=None, kind="stable")[:pairs]
    ranked = ranked[mistakes.ravel()[ranked] > 0]
    if ranked.size == 0:
        return _no_mistakes(y_true.size, path, title)

    columns = max(examples, 1)
    figure = new_figure(max(8.5, 1.25 * columns), 1.75 * ranked.size + 0.7)
    rows = figure.subfigures(ranked.size, 1, squeeze=False).ravel()
    for row, pair in zip(rows, ranked, strict=True):
        true, predicted = divmod(int(pair), len(class_names))
        count = int(mistakes[true, predicted])
        share = 100 * count / int(confusion[true].sum())
        row.suptitle(
            f"true {class_names[true]} → predicted {class_names[predicted]}: "
            f"{count:,} ({share:.1f}% of {class_names[true]})",
            x=0.01,
            ha="left",
            fontsize=10,
        )
        shown = np.flatnonzero((y_true == true) & (y_pred == predicted))[:examples]
        for ax, index in zip(_tile_grid(row, columns, columns), shown):
            ax.imshow(images[index], cmap="gray", vmin=0, vmax=white)
            ax.set_title(f"#{index}", fontsize=7)
    fit_title(
        figure,
        _title_lines(
            title,
            f"The {ranked.size} most frequent confusions "
            f"(of {int(mistakes.sum()):,} mistakes in {y_true.size:,} samples)",
        ),
        fontsize=11,
    )
    return save_figure(figure, path)


def plot_per_class_metrics(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | PathLike[str],
    title: str | None = None,
) -> Path:
    """Draw each class's precision, recall and F1 as grouped horizontal bars, as a PNG.

    Classes are sorted by F1, the worst at the top (ties: in class order); each bar is
    labelled with its percentage and each class with its support.

    Args:
        confusion: (K, K) counts, rows = true class, columns = predicted class.
        class_names: K names, in class order.
        path: where to write the PNG.
        title: a first line above the figure's own title (e.g. the run and data set).

    Returns:
        The path written.
    """
    confusion, k = _checked_confusion(confusion, class_names)
    from matplotlib.ticker import PercentFormatter

    metrics = per_class_metrics(confusion)
    order = np.argsort(metrics["f1"], kind="stable")  # worst first, drawn at the top
    figure = new_figure(8.0, 0.62 * k + 1.9)
    ax = figure.subplots()
    height = 0.26
    y = np.arange(k)
    for offset, (key, label, colour) in zip(
        (-height, 0.0, height),
        (
            ("precision", "precision", "tab:blue"),
            ("recall", "recall", "tab:orange"),
            ("f1", "F1", "tab:green"),
        ),
        strict=True,
    ):
        values = metrics[key][order]
        bars = ax.barh(y + offset, values, height=height, color=colour, label=label)
        ax.bar_label(
            bars, labels=[f"{100 * value:.1f}%" for value in values], padding=2, fontsize=7
        )
    ax.set_yticks(y, labels=[f"{class_names[c]} (n={int(metrics['support'][c]):,})" for c in order])
    ax.set_ylim(k - 0.5, -0.5)  # the first class (the worst) at the top
    ax.set_xlim(0, 1.13)  # room for the labels of bars at 100%
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    figure.legend(loc="outside lower center", ncols=3, frameon=False)
    fit_title(
        figure,
        _title_lines(
            title,
            f"Per-class scores, worst F1 at the top: macro F1 {100 * metrics['macro_f1']:.1f}%, "
            f"accuracy {100 * metrics['accuracy']:.1f}%",
        ),
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


def _loss_label(loss_name: str) -> str:
    """How a loss of ``fastmlp.nn.losses.LOSSES`` reads on an axis ("cross-entropy")."""
    from fastmlp.nn.losses import LOSSES

    return LOSSES.get(loss_name).title if loss_name in LOSSES else loss_name.replace("_", " ")


def plot_training_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | PathLike[str],
    loss_name: str = "cross_entropy",
    title: str | None = None,
) -> Path:
    """Draw loss and accuracy against epoch, training and validation, as a PNG.

    Epoch ticks are whole numbers (one epoch: a single tick). The epoch of the best
    validation accuracy is ringed, the ring named in the legend.

    Args:
        history: one mapping per epoch with ``epoch``, ``train_loss``, ``train_accuracy``
            (in [0, 1]), ``val_loss`` and ``val_accuracy`` (None when not measured); e.g.
            ``[m.to_dict() for m in training_history.epochs]``.
        path: where to write the PNG.
        loss_name: the run's ``loss`` setting, a canonical name of
            ``fastmlp.nn.losses.LOSSES``; it names the loss axis.
        title: the figure's title (e.g. the run's name); none by default.

    Returns:
        The path written.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    figure = new_figure(10, 4.4 if title else 4)
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
            ax.plot(epochs, values, style, marker=marker, markersize=4, label=label, zorder=2)
            if split == "val" and quantity == "accuracy":
                best = int(np.nanargmax(values))
                # A ring around the validation point, drawn over it, so that both stay visible.
                ax.plot(
                    epochs[best],
                    values[best],
                    "o",
                    markersize=13,
                    markerfacecolor="none",
                    markeredgecolor="black",
                    markeredgewidth=1.5,
                    zorder=3,
                    label=f"best validation: {100 * values[best]:.2f}% at epoch {epochs[best]:g}",
                )
        ax.set_xlabel("epoch")
        # Whole epochs only, with at least half an epoch of room each side (one epoch: one tick).
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        pad = max(0.5, 0.04 * (epochs.max() - epochs.min()))
        ax.set_xlim(epochs.min() - pad, epochs.max() + pad)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title(f"loss: {_loss_label(loss_name)}")
    ax_loss.set_ylabel(f"{_loss_label(loss_name)} (mean over the samples)")
    ax_accuracy.set_title("accuracy")
    ax_accuracy.set_ylabel("accuracy")
    ax_accuracy.yaxis.set_major_formatter(PercentFormatter(1.0))
    if title:
        fit_title(figure, title)
    return save_figure(figure, path)
