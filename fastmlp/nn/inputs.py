"""What the model accepts as inputs and labels, checked and converted the same way everywhere.

``MLP.forward``, ``predict``, ``evaluate``, ``loss_and_grad`` and ``fastmlp.train`` all take

* inputs: ``(N, features)`` or ``(N, H, W, ...)`` (flattened to ``(N, H*W*...)``) of any real
  dtype; uint8 images are scaled to [0, 1] (x / 255) on the device, other dtypes are cast;
* labels: ``(N,)`` integer class indices in ``[0, classes)``.

A label outside ``[0, classes)`` is a ValueError saying how many and which range. Checking
the range reads the labels back on a GPU (a host sync), so the training loop checks once
per dataset upload (:func:`to_device_labels`) and not per step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastmlp.backends import Backend


def to_device_inputs(backend: Backend, x: Any, dtype: str, features: int | None = None) -> Any:
    """Inputs as a flat ``(N, features)`` array of ``dtype`` on the device.

    uint8 images are uploaded as bytes and scaled on the device; other real dtypes are cast
    (no copy when ``x`` already is such an array). ``features``: the number each row must
    have (the model's input size), checked after flattening.
    """
    x = backend.asarray(x)
    if x.ndim < 2:
        expected = f"(N, {features})" if features is not None else "(N, features)"
        raise ValueError(
            f"inputs must have shape {expected} or be images (N, H, W), got {tuple(x.shape)}"
        )
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if features is not None and x.shape[1] != features:
        raise ValueError(
            f"inputs have {x.shape[1]} features per sample, the model expects {features}: "
            f"shape (N, {features}) or images of {features} pixels"
        )
    if x.dtype == np.uint8:
        scaled = backend.empty(x.shape, dtype=dtype)
        # x = x / 255
        backend.xp.divide(x, 255, out=scaled)
        return scaled
    if x.dtype.kind not in "fiu":
        raise ValueError(f"inputs must be real numbers, got dtype {x.dtype}")
    return x.astype(dtype, copy=False)


def as_labels(backend: Backend, y: Any, n: int | None = None) -> Any:
    """Labels as a 1-D integer array of the backend (no copy), shape and dtype checked."""
    y = backend.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be a 1-D array of integer class indices, got {y.dtype} {tuple(y.shape)}"
        )
    if n is not None and y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match the inputs, got {y.shape}")
    return y


def check_label_range(y: Any, classes: int) -> None:
    """Raise a ValueError unless every label lies in ``[0, classes)`` (a host sync on a GPU)."""
    if not y.size:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        bad = int(((y < 0) | (y >= classes)).sum())
        raise ValueError(
            f"{bad} of {y.size} labels lie outside [0, {classes}) (range [{low}, {high}]): "
            f"the model has {classes} output classes"
        )


def to_device_labels(backend: Backend, y: Any, classes: int) -> Any:
    """Labels as an int64 (N,) array on the device, checked to lie in [0, classes)."""
    y = as_labels(backend, y)
    check_label_range(y, classes)
    return y.astype("int64", copy=False)
