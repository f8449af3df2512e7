"""Small, learnable IDX datasets that tests write themselves (MNIST cannot be downloaded here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastmlp.data import save_idx

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def make_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) uint8 images whose class k shows a bright bar in row band k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        top = 2 + 2 * int(label)
        images[index, top : top + 3, 4:24] = 220
    return images, labels


def write_idx_dataset(directory: Path, train: int = 600, test: int = 200, seed: int = 0) -> Path:
    """Write the four IDX files of a tiny MNIST-format dataset into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = make_images(train, seed)
    test_images, test_labels = make_images(test, seed + 1)
    save_idx(directory / FILES["train_images"], train_images)
    save_idx(directory / FILES["train_labels"], train_labels)
    save_idx(directory / FILES["test_images"], test_images)
    save_idx(directory / FILES["test_labels"], test_labels)
    return directory
