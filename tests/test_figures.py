"""The figures module: confusion counts and metrics by hand, and PNGs that matplotlib reads.

Plots are checked for what can be checked without looking: a real PNG of the expected
size that is not blank, written where asked, without pyplot and without touching the
user's matplotlib backend.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from fastmlp.runs import figures
from fastmlp.runs import metrics as classification

matplotlib = pytest.importorskip("matplotlib")
matplotlib_image = pytest.importorskip("matplotlib.image")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ONE_EPOCH = [
    {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": None, "val_accuracy": None}
]
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]  # fmt: skip


def read_png(path):
    """The image at ``path`` as (H, W, channels) floats, after checking it is a PNG."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib_image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.std() > 0.01, "the figure is blank"
    return image


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
