"""Losses on the softmax output: names and aliases.

Both are computed by fused backend kernels that return the mean loss over the batch and
leave dLoss/dlogits in the logits buffer:

* ``cross_entropy``: mean_n -log softmax(z_n)[y_n], gradient (softmax(z) - onehot(y)) / N;
* ``mean_squared_error``: mean_n sum_k (softmax(z_n)_k - onehot(y_n)_k)^2, back-propagated
  through the softmax Jacobian.
"""

from __future__ import annotations

import math

LOSSES = ("cross_entropy", "mean_squared_error")

_ALIASES = {"ce": "cross_entropy", "mse": "mean_squared_error"}


def canonical_loss(name: str) -> str:
    """The canonical loss name, accepting any case and the aliases ``ce`` and ``mse``."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose cross_entropy or mean_squared_error (mse)")
    return key


def chance_loss(loss: str, classes: int) -> float:
    """The loss of a model that predicts the uniform distribution over ``classes``:
    ln(classes) for cross-entropy, 1 - 1/classes for squared error on the softmax."""
    if canonical_loss(loss) == "cross_entropy":
        return math.log(classes)
    return 1.0 - 1.0 / classes
