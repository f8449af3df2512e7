"""``load``: a data set as NumPy arrays, validated and split into train/validation/test.

Shapes: images ``(N, 28, 28)`` uint8 (0..255, as stored), labels ``(N,)`` int64 in
``0..9``. With the default ``val_fraction=0.1`` the 60000 official training examples
become 54000 train + 6000 validation; the 10000 test examples are never touched by the
split.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from fastmlp.data.errors import DataError
from fastmlp.data.idx import IMAGES_MAGIC, LABELS_MAGIC, load_idx
from fastmlp.data.locate import locate
from fastmlp.data.sources import get_source
from fastmlp.data.split import check_val_fraction, split_indices

IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded data set.

    name:        canonical name, ``"fashion_mnist"`` or ``"mnist"``.
    class_names: label k -> its name (10 entries).
    x_train, x_val, x_test: uint8 images, shape (N, 28, 28).
    y_train, y_val, y_test: int64 labels in 0..9, shape (N,).
    source:      where the files came from: a folder, or the mirror URL(s) just downloaded from.
    """

    name: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, image_shape={self.x_train.shape[1:]}, "
            f"source={self.source!r})"
        )


def read_images(path: Path) -> np.ndarray:
    """Images from an IDX file: uint8 (N, 28, 28), else DataError naming the file."""
    images = load_idx(path, magic=IMAGES_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{path}: wrong image shape {images.shape[1:]}: expected {IMAGE_SHAPE} "
            f"(array shape {images.shape})"
        )
    return images


def read_labels(path: Path, num_classes: int) -> np.ndarray:
    """Labels from an IDX file: int64 (N,) in 0..num_classes-1, else DataError naming it."""
    labels = load_idx(path, magic=LABELS_MAGIC)
    if labels.size and labels.max() >= num_classes:
        bad = int(np.count_nonzero(labels >= num_classes))
        raise DataError(
            f"{path}: labels out of range: {bad} labels up to {labels.max()}, "
            f"expected 0..{num_classes - 1}"
        )
    return labels.astype(np.int64)


def _read_pair(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    images = read_images(images_path)
    labels = read_labels(labels_path, num_classes)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path}: image/label count mismatch: {len(images)} images but "
            f"{labels_path} holds {len(labels)} labels"
        )
    return images, labels


def load(
    name: str,
    data_dir: str | PathLike[str] | None = None,
    download: bool = True,
    val_fraction: float = 0.1,
    seed: int | None = 0,
) -> Dataset:
    """Load ``"fashion_mnist"`` or ``"mnist"``, with a seeded validation split of train.

    name:         ``"fashion_mnist"`` (also ``"fashion-mnist"``) or ``"mnist"``, any case.
    data_dir:     a folder to look in first (see :mod:`fastmlp.data.locate` for the order).
    download:     fetch from the official mirrors into the user cache if not found locally.
    val_fraction: share of the official training set held out for validation,
                  ``0 <= val_fraction < 1`` (0 gives an empty validation set).
    seed:         seed of the split; the same seed always gives the same split.
    Raises :class:`DataError` when the data cannot be found, fetched or read.
    """
    source = get_source(name)
    check_val_fraction(val_fraction)
    located = locate(source, data_dir=data_dir, download=download)
    files, classes = located.files, len(source.class_names)
    x, y = _read_pair(files["train_images"], files["train_labels"], classes)
    x_test, y_test = _read_pair(files["test_images"], files["test_labels"], classes)
    train, val = split_indices(len(y), val_fraction, seed)
    return Dataset(
        name=source.name,
        class_names=tuple(source.class_names),
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x_test,
        y_test=y_test,
        source=located.where,
    )
