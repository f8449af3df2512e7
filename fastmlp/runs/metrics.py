"""Classification metrics of a test set: the confusion matrix and per-class scores.

Plain NumPy on host arrays (use ``backend.to_numpy`` on device arrays first).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true, y_pred: (N,) integer labels in [0, num_classes), any integer dtype.
        num_classes: K.

    Returns:
        (K, K) int64; entry [i, j] counts samples of true class i predicted as class j.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in size: {y_true.size} and {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integers, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}]"
            )
    pairs = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    counts = np.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise as float64, with 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    return np.divide(numerator, denominator, out=out, where=np.asarray(denominator) != 0)


def per_class_metrics(confusion: np.ndarray) -> dict[str, Any]:
    """Precision, recall and F1 of each class, their macro averages, and accuracy.

    A ratio with a zero denominator is 0 (a class never predicted has precision 0, a class
    absent from the data has recall 0), without a warning.

    Args:
        confusion: (K, K) counts, rows = true class, columns = predicted class.

    Returns:
        ``precision``, ``recall``, ``f1``: (K,) float64 in [0, 1]; ``support``: (K,) int64
        samples per true class; ``macro_precision``, ``macro_recall``, ``macro_f1``: their
        unweighted means over the K classes; ``accuracy``: trace / total.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}")
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)
    precision = ratio(correct, confusion.sum(axis=0))
    recall = ratio(correct, support)
    # f1 = 2 p r / (p + r)
    f1 = ratio(2 * precision * recall, precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support.astype(np.int64),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "accuracy": float(ratio(correct.sum(), confusion.sum())),
    }
