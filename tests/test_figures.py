"""The figures module: confusion counts and metrics by hand, and PNGs that matplotlib reads.

Plots are checked for what can be checked without looking: a real PNG of the expected
size that is not blank, written where asked, without pyplot and without touching the
user's matplotlib backend; and, on the Figure each one saves, what a reader would see:
titles and labels inside the figure, their texts, tick values, what is drawn over what.
"""

import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fastmlp.runs import figures
from fastmlp.runs import metrics as classification
from fastmlp.runs.experiment import figure_title

matplotlib = pytest.importorskip("matplotlib")
matplotlib_image = pytest.importorskip("matplotlib.image")
Text = pytest.importorskip("matplotlib.text").Text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ONE_EPOCH = [
    {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": None, "val_accuracy": None}
]
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]  # fmt: skip
# A sweep trial's run name: with the rest of the title, wider than any of the figures.
LONG_NAME = "hl_5_sz_128_bs_16_ac_relu_o_nadam_lr_1e-3_wd_5e-4_wi_xavier_e_10"
LONG_TITLE = f"{LONG_NAME} on Fashion-MNIST test set"


def read_png(path):
    """The image at ``path`` as (H, W, channels) floats, after checking it is a PNG."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib_image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.std() > 0.01, "the figure is blank"
    return image


@pytest.fixture
def saved(monkeypatch):
    """The Figure of each PNG the plots write, by file name."""
    drawn = {}
    save = figures.save_figure

    def recording_save(figure, path):
        drawn[Path(path).name] = figure
        return save(figure, path)

    monkeypatch.setattr(figures, "save_figure", recording_save)
    return drawn


def assert_drawn_inside(figure):
    """Assert that the figure's title, and everything drawn, lies inside the figure."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    width, height = figure.get_size_inches()
    drawn = figure.get_tightbbox(renderer)  # inches; ticks out of view and hidden axes left out
    assert drawn.x0 >= -0.01 and drawn.x1 <= width + 0.01, f"cut at the side: {drawn}"
    assert drawn.y0 >= -0.01 and drawn.y1 <= height + 0.01, f"cut at the edge: {drawn}"
    if figure.get_suptitle():
        title = figure._suptitle.get_window_extent(renderer)  # pixels
        assert figure.bbox.x0 <= title.x0 and title.x1 <= figure.bbox.x1, title
        assert figure.bbox.y0 <= title.y0 and title.y1 <= figure.bbox.y1, title


def texts(figure):
    return [text.get_text() for text in figure.findobj(Text)]


@pytest.fixture
def predictions():
    """Fashion-MNIST-like data: 300 uint8 images, labels, 15% wrong predictions."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    y_true = np.arange(300) % 10
    y_pred = y_true.copy()
    wrong = rng.random(300) < 0.15
    y_pred[wrong] = (y_true[wrong] + rng.integers(1, 10, wrong.sum())) % 10
    confidence = rng.uniform(0.1, 1.0, 300)
    return images, y_true, y_pred, confidence


# ------------------------------------------------------------------------ metrics


def test_confusion_matrix_counts_pairs_by_true_row_and_predicted_column():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])

    for dtype in (np.uint8, np.int32, np.int64):
        counts = classification.confusion_matrix(
            np.array(y_true, dtype=dtype), np.array(y_pred, dtype=dtype), 4
        )
        assert counts.dtype == np.int64
        np.testing.assert_array_equal(counts, expected)


def test_confusion_matrix_rejects_labels_outside_the_classes_and_non_integers():
    with pytest.raises(ValueError, match="y_pred must lie in"):
        classification.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="y_true must lie in"):
        classification.confusion_matrix([-1, 1], [0, 1], 3)
    with pytest.raises(ValueError, match="integers"):
        classification.confusion_matrix(np.array([0.0, 1.0]), [0, 1], 3)
    with pytest.raises(ValueError, match="differ in size"):
        classification.confusion_matrix([0, 1, 2], [0, 1], 3)


def test_per_class_metrics_match_hand_computed_values_with_a_never_predicted_class():
    # Class 2 is never predicted (precision 0/0) and class 3 neither occurs nor is
    # predicted (every ratio 0/0): all of these are 0, with no warning.
    confusion = np.array([[2, 1, 0, 0], [0, 3, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])

    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        metrics = classification.per_class_metrics(confusion)

    np.testing.assert_allclose(metrics["precision"], [2 / 3, 3 / 5, 0, 0])
    np.testing.assert_allclose(metrics["recall"], [2 / 3, 1, 0, 0])
    np.testing.assert_allclose(metrics["f1"], [2 / 3, 0.75, 0, 0])
    np.testing.assert_array_equal(metrics["support"], [3, 3, 2, 0])
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["macro_precision"] == pytest.approx((2 / 3 + 3 / 5) / 4)
    assert metrics["macro_recall"] == pytest.approx((2 / 3 + 1) / 4)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.75) / 4)


def test_per_class_metrics_of_an_empty_confusion_matrix_are_zero():
    metrics = classification.per_class_metrics(np.zeros((3, 3), dtype=np.int64))
    assert metrics["accuracy"] == 0.0
    assert not metrics["f1"].any()


# ------------------------------------------------------------------------ plots


def test_plot_confusion_matrix_writes_a_png_creating_parent_folders(tmp_path, predictions):
    _, y_true, y_pred, _ = predictions
    confusion = classification.confusion_matrix(y_true, y_pred, 10)
    path = tmp_path / "a" / "b" / "confusion.png"

    written = figures.plot_confusion_matrix(confusion, NAMES, path, title="Test set")

    assert written == path
    height, width, _ = read_png(path).shape
    assert height > 800 and width > 800


def test_plot_confusion_matrix_checks_the_number_of_class_names(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        figures.plot_confusion_matrix(np.eye(3, dtype=int), NAMES, tmp_path / "c.png")


def test_plot_confusion_matrix_handles_many_classes_and_empty_rows(tmp_path):
    confusion = np.zeros((31, 31), dtype=np.int64)
    confusion[:20, :20] = np.arange(400).reshape(20, 20)
    names = [f"class {c}" for c in range(31)]
    read_png(figures.plot_confusion_matrix(confusion, names, tmp_path / "c.png"))


def test_plot_confident_mistakes_writes_a_png(tmp_path, predictions):
    path = figures.plot_confident_mistakes(*predictions, NAMES, tmp_path / "mistakes.png")
    height, width, _ = read_png(path).shape
    assert width > height  # 16 tiles in 2 rows of 8


def test_plot_confident_mistakes_takes_flat_float_images_and_fewer_mistakes(tmp_path):
    images = np.random.default_rng(1).random((20, 784))
    y_true = np.arange(20) % 10
    y_pred = y_true.copy()
    y_pred[[3, 7, 11]] = 0
    confidence = np.linspace(0.3, 0.999, 20)

    path = figures.plot_confident_mistakes(
        images, y_true, y_pred, confidence, NAMES, tmp_path / "m.png", count=16
    )
    read_png(path)


def test_plot_confident_mistakes_with_no_mistakes_says_so(tmp_path, predictions):
    images, y_true, _, confidence = predictions
    path = figures.plot_confident_mistakes(
        images, y_true, y_true, confidence, NAMES, tmp_path / "none.png"
    )
    read_png(path)


def test_plot_class_samples_is_a_seeded_2_by_5_grid(tmp_path, predictions):
    images, labels, _, _ = predictions

    first = read_png(figures.plot_class_samples(images, labels, NAMES, tmp_path / "1.png"))
    again = read_png(figures.plot_class_samples(images, labels, NAMES, tmp_path / "2.png"))
    other = read_png(figures.plot_class_samples(images, labels, NAMES, tmp_path / "3.png", seed=1))

    height, width, _ = first.shape
    assert width > 1.5 * height
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_plot_class_samples_handles_other_class_counts_and_missing_classes(tmp_path):
    images = np.random.default_rng(2).random((50, 784))
    labels = np.arange(50) % 6  # classes 6 and 7 have no samples
    names = [f"class {c}" for c in range(8)]
    read_png(figures.plot_class_samples(images, labels, names, tmp_path / "s.png"))


def test_plot_training_curves_writes_a_png_with_and_without_validation(tmp_path):
    history = [
        {
            "epoch": epoch,
            "train_loss": 1 / epoch,
            "train_accuracy": 1 - 0.5 / epoch,
            "val_loss": 1.2 / epoch,
            "val_accuracy": 1 - 0.6 / epoch,
        }
        for epoch in range(1, 6)
    ]
    no_validation = [{**row, "val_loss": None, "val_accuracy": None} for row in history]

    for name, rows in (("with.png", history), ("without.png", no_validation)):
        height, width, _ = read_png(figures.plot_training_curves(rows, tmp_path / name)).shape
        assert width > height  # two panels side by side
    with pytest.raises(ValueError, match="empty"):
        figures.plot_training_curves([], tmp_path / "empty.png")


def test_plotting_leaves_the_backend_and_pyplot_alone(tmp_path, predictions):
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    open_figures = plt.get_fignums()
    images, y_true, y_pred, confidence = predictions
    figures.plot_confusion_matrix(
        classification.confusion_matrix(y_true, y_pred, 10), NAMES, tmp_path / "c.png"
    )
    figures.plot_confident_mistakes(images, y_true, y_pred, confidence, NAMES, tmp_path / "m.png")
    figures.plot_class_samples(images, y_true, NAMES, tmp_path / "s.png")
    figures.plot_training_curves(ONE_EPOCH, tmp_path / "t.png")

    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == open_figures


def test_plotting_keeps_a_users_backend_and_never_imports_pyplot(tmp_path):
    script = (
        "import sys, matplotlib, numpy as np\n"
        "matplotlib.use('svg')\n"
        "from fastmlp.runs import figures\n"
        "figures.plot_confusion_matrix(np.eye(2, dtype=int), ['a', 'b'], sys.argv[1])\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.png")], check=True)
    read_png(tmp_path / "c.png")


def test_plots_without_matplotlib_raise_an_import_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install \"fastmlp\[plot\]\""):
        figures.plot_training_curves(ONE_EPOCH, tmp_path / "t.png")


# ------------------------------------------------------------------ titles and labels


def titled_plots(tmp_path, predictions, title):
    """Each plot that takes a title, drawn with ``title``: file name -> path written."""
    images, y_true, y_pred, confidence = predictions
    confusion = classification.confusion_matrix(y_true, y_pred, 10)
    history = [{**ONE_EPOCH[0], "val_loss": 0.9, "val_accuracy": 0.6}]
    return {
        "c.png": figures.plot_confusion_matrix(confusion, NAMES, tmp_path / "c.png", title=title),
        "m.png": figures.plot_confident_mistakes(
            images, y_true, y_pred, confidence, NAMES, tmp_path / "m.png", title=title
        ),
        "n.png": figures.plot_confident_mistakes(
            images, y_true, y_true, confidence, NAMES, tmp_path / "n.png", title=title
        ),
        "p.png": figures.plot_confused_pairs(
            images, y_true, y_pred, NAMES, tmp_path / "p.png", title=title
        ),
        "s.png": figures.plot_per_class_metrics(confusion, NAMES, tmp_path / "s.png", title=title),
        "t.png": figures.plot_training_curves(history, tmp_path / "t.png", title=title),
    }


@pytest.mark.parametrize("title", [LONG_TITLE, f"{LONG_NAME}_{LONG_NAME}_{LONG_NAME}"])
def test_a_long_title_is_wrapped_or_shrunk_to_fit_inside_every_figure(
    tmp_path, predictions, saved, title
):
    for name, path in titled_plots(tmp_path, predictions, title).items():
        read_png(path)
        figure = saved[name]
        assert figure.get_suptitle().replace("\n", "").startswith(title)
        assert_drawn_inside(figure)


def test_a_wrapped_title_breaks_a_run_name_at_its_underscores(tmp_path, predictions, saved):
    name = f"{LONG_NAME}_{LONG_NAME}_{LONG_NAME}"
    titled_plots(tmp_path, predictions, name)
    lines = saved["c.png"].get_suptitle().split("\n")
    assert len(lines) >= 3  # the name on two or more lines, then the accuracy
    assert "".join(lines[:-1]) == name
    assert all(line.endswith("_") for line in lines[:-2])
    assert lines[-1].startswith("accuracy ")


def test_figures_name_the_data_set_as_people_write_it():
    assert figures.dataset_title("fashion_mnist") == "Fashion-MNIST"
    assert figures.dataset_title("FashionMNIST") == "Fashion-MNIST"
    assert figures.dataset_title("mnist") == "MNIST"
    assert figures.dataset_title("made_up") == "made_up"
    dataset = SimpleNamespace(name="fashion_mnist")
    assert figure_title("my_run", dataset) == "my_run on Fashion-MNIST test set"


def test_confident_mistakes_near_certainty_get_distinct_labels_never_100_percent(tmp_path, saved):
    confidence = np.array(
        [0.9991, 0.9995, 0.9997, 0.99971, 0.99979, 0.99999, 0.999994, 0.999996, 0.99999989, 1.0]
    )
    y_true = np.arange(10)
    y_pred = (y_true + 1) % 10  # all wrong
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    figures.plot_confident_mistakes(images, y_true, y_pred, confidence, NAMES, tmp_path / "m.png")

    labels = [
        line.removeprefix("p = ")
        for text in texts(saved["m.png"])
        for line in text.split("\n")
        if line.startswith("p = ")
    ]
    # The most confident first: the first two lie within 1e-6 of 1 (as float32 holds them).
    assert labels[:2] == [">99.9999%", ">99.9999%"]
    assert labels[2:] == [
        "99.9996%", "99.9994%", "99.999%", "99.979%", "99.971%", "99.97%", "99.95%", "99.91%"
    ]  # fmt: skip
    assert not any(label.startswith("100") for label in labels)


def visible_ticks(ax):
    low, high = ax.get_xlim()
    return [tick for tick in ax.get_xticks() if low <= tick <= high]


def curve_history(epochs):
    return [
        {
            "epoch": epoch,
            "train_loss": 1 / epoch,
            "train_accuracy": 1 - 0.5 / epoch,
            "val_loss": 1.2 / epoch,
            "val_accuracy": 0.8,
        }
        for epoch in range(1, epochs + 1)
    ]


def test_one_epoch_of_training_curves_has_a_single_whole_epoch_tick(tmp_path, saved):
    figures.plot_training_curves(curve_history(1), tmp_path / "t.png")
    for ax in saved["t.png"].axes:
        saved["t.png"].canvas.draw()
        assert visible_ticks(ax) == [1.0]
        low, high = ax.get_xlim()
        assert low <= 0.6 and high >= 1.4  # room either side, not 0.945 to 1.05


def test_training_curves_tick_whole_epochs_only(tmp_path, saved):
    for epochs in (2, 3, 7, 40):
        figures.plot_training_curves(curve_history(epochs), tmp_path / f"{epochs}.png")
        figure = saved[f"{epochs}.png"]
        figure.canvas.draw()
        for ax in figure.axes:
            ticks = visible_ticks(ax)
            assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks
            assert min(ticks) >= 0 and max(ticks) <= epochs


def test_the_best_epoch_rings_the_validation_point_and_is_named_in_the_legend(tmp_path, saved):
    figures.plot_training_curves(curve_history(1), tmp_path / "t.png")
    ax_accuracy = saved["t.png"].axes[1]
    (validation,) = [line for line in ax_accuracy.lines if line.get_label() == "validation"]
    (best,) = [line for line in ax_accuracy.lines if line.get_label().startswith("best")]
    assert best.get_label() == "best validation: 80.00% at epoch 1"
    assert best.get_markerfacecolor() == "none"  # a ring: the point inside stays visible
    assert best.get_markersize() > validation.get_markersize()
    assert best.get_zorder() > validation.get_zorder()
    legend = [text.get_text() for text in ax_accuracy.get_legend().get_texts()]
    assert best.get_label() in legend


@pytest.mark.parametrize(
    "loss, label", [("cross_entropy", "cross-entropy"), ("mean_squared_error", "squared error")]
)
def test_the_loss_axis_names_the_loss(tmp_path, saved, loss, label):
    figures.plot_training_curves(curve_history(3), tmp_path / "t.png", loss_name=loss)
    ax_loss = saved["t.png"].axes[0]
    assert ax_loss.get_ylabel() == f"{label} (mean over the samples)"
    assert label in ax_loss.get_title()


def test_the_loss_axis_names_cross_entropy_by_default(tmp_path, saved):
    figures.plot_training_curves(curve_history(3), tmp_path / "t.png")
    assert "cross-entropy" in saved["t.png"].axes[0].get_ylabel()


# ------------------------------------------------------------------ new figures


def confused(counts):
    """Labels with ``counts[(true, predicted)]`` samples of each pair, 20 of each class right."""
    pairs = [(c, c) for c in range(10) for _ in range(20)]
    pairs += [pair for pair, count in counts.items() for _ in range(count)]
    y_true, y_pred = np.array(pairs).T
    images = np.random.default_rng(3).integers(0, 256, (len(pairs), 28, 28), dtype=np.uint8)
    return images, y_true, y_pred


def test_confused_pairs_show_the_most_frequent_confusions_with_their_counts(tmp_path, saved):
    images, y_true, y_pred = confused({(6, 0): 5, (4, 2): 3, (2, 4): 3, (3, 1): 1, (9, 7): 2})

    path = figures.plot_confused_pairs(
        images, y_true, y_pred, NAMES, tmp_path / "pairs.png", pairs=3, examples=4
    )

    read_png(path)
    figure = saved["pairs.png"]
    rows = figure.subfigs
    assert [row.get_suptitle() for row in rows] == [
        "true Shirt → predicted T-shirt/top: 5 (20.0% of Shirt)",  # 5 of 25 Shirts
        "true Pullover → predicted Coat: 3 (13.0% of Pullover)",  # ties in class order
        "true Coat → predicted Pullover: 3 (13.0% of Coat)",
    ]
    shown = [[ax.get_title() for ax in row.axes if ax.images] for row in rows]
    shirts = np.flatnonzero((y_true == 6) & (y_pred == 0))
    assert shown[0] == [f"#{index}" for index in shirts[:4]]  # at most 4 examples
    assert len(shown[1]) == len(shown[2]) == 3
    assert "The 3 most frequent confusions (of 14 mistakes in 214 samples)" in texts(figure)
    assert_drawn_inside(figure)


def test_confused_pairs_with_fewer_pairs_than_asked_show_only_real_mistakes(tmp_path, saved):
    images, y_true, y_pred = confused({(1, 2): 1})
    figures.plot_confused_pairs(images, y_true, y_pred, NAMES, tmp_path / "p.png", pairs=5)
    (row,) = saved["p.png"].subfigs
    assert row.get_suptitle() == "true Trouser → predicted Pullover: 1 (4.8% of Trouser)"


def test_confused_pairs_without_mistakes_say_so(tmp_path, saved):
    images, y_true, _ = confused({})
    read_png(figures.plot_confused_pairs(images, y_true, y_true, NAMES, tmp_path / "p.png"))
    assert "No mistakes: all 200 predictions are correct." in texts(saved["p.png"])
    with pytest.raises(ValueError, match="same length"):
        figures.plot_confused_pairs(images, y_true[:5], y_true[:5], NAMES, tmp_path / "x.png")


def test_per_class_metrics_are_bars_sorted_worst_f1_first_with_percentages(tmp_path, saved):
    images, y_true, y_pred = confused({(6, 0): 5, (4, 2): 3, (2, 4): 3, (9, 7): 2})
    confusion = classification.confusion_matrix(y_true, y_pred, 10)
    scores = classification.per_class_metrics(confusion)

    read_png(figures.plot_per_class_metrics(confusion, NAMES, tmp_path / "s.png"))

    figure = saved["s.png"]
    (ax,) = figure.axes
    classes = [label.get_text().split(" (n=")[0] for label in ax.get_yticklabels()]
    # F1 20/23 for Pullover and Coat (tied: in class order), 8/9 for T-shirt/top and Shirt
    assert classes[:4] == ["Pullover", "Coat", "T-shirt/top", "Shirt"]
    f1 = [scores["f1"][NAMES.index(name)] for name in classes]
    assert f1 == sorted(f1)
    assert ax.yaxis_inverted()  # the first (worst) class at the top
    drawn = texts(figure)
    for key in ("precision", "recall", "f1"):
        for value in scores[key]:
            assert f"{100 * value:.1f}%" in drawn
    assert {"precision", "recall", "F1"} <= set(drawn)  # the legend
    assert_drawn_inside(figure)
    with pytest.raises(ValueError, match="expected"):
        figures.plot_per_class_metrics(confusion[:3, :3], NAMES, tmp_path / "x.png")


def test_per_class_metrics_of_perfect_predictions_are_all_100_percent(tmp_path, saved):
    confusion = np.diag(np.arange(1, 11))
    read_png(figures.plot_per_class_metrics(confusion, NAMES, tmp_path / "s.png"))
    (ax,) = saved["s.png"].axes
    assert [text.get_text() for text in ax.texts] == ["100.0%"] * 30  # 3 bars per class
    assert ax.get_xlim()[1] > 1.05  # room for the labels of full bars
