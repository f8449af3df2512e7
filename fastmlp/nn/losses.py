"""Losses on the softmax output: one registry entry each, with its fused backend kernel.

Both are computed by fused backend kernels that return the mean loss over the batch and
leave dLoss/dlogits in the logits buffer:

* ``cross_entropy``: mean_n -log softmax(z_n)[y_n], gradient (softmax(z) - onehot(y)) / N;
  with label smoothing eps (torch's ``CrossEntropyLoss(label_smoothing=eps)``) the target
  onehot(y) becomes q = (1 - eps) onehot(y) + eps / K over K classes: the loss is
  mean_n [(1 - eps) (-log p_n,y_n) + eps mean_k (-log p_nk)], the gradient (p - q) / N;
* ``mean_squared_error``: mean_n sum_k (softmax(z_n)_k - onehot(y_n)_k)^2, back-propagated
  through the softmax Jacobian.

A new loss is a new :class:`Loss` entry naming its kernel, a method of every backend
(reference body in ``fastmlp.backends.base``, fast bodies in the backends beside it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastmlp.registry import Registry


@dataclass(frozen=True)
class Loss:
    """A loss on the softmax output.

    ``kernel``: the backend method ``kernel_(logits, labels, sample_losses=None,
    correct=None) -> mean loss`` that also leaves dLoss/dlogits in the logits (and adds
    the number of rows classified correctly to ``correct``); ``chance``: the loss of
    predicting the uniform distribution over ``classes`` (for spotting a diverging run;
    label smoothing does not change it);
    ``maths``: the formula, for help texts; ``title``: its name in prose and on figure
    axes ("cross-entropy"); ``label_smoothing``: whether the kernel also
    takes ``label_smoothing=eps`` (a smoothed target, see the module docstring).
    """

    name: str
    kernel: str
    chance: Callable[[int], float]
    maths: str
    title: str
    aliases: tuple[str, ...] = ()
    label_smoothing: bool = False


LOSSES: Registry[Loss] = Registry("loss")

for _loss in (
    Loss(
        "cross_entropy",
        "cross_entropy_",
        chance=math.log,
        maths="mean_n -log softmax(z_n)[y_n]",
        title="cross-entropy",
        aliases=("ce", "crossentropy", "categorical_crossentropy"),
        label_smoothing=True,
    ),
    Loss(
        "mean_squared_error",
        "mean_squared_error_",
        chance=lambda classes: 1.0 - 1.0 / classes,
        maths="mean_n sum_k (softmax(z_n)_k - onehot(y_n)_k)^2",
        title="squared error",
        aliases=("mse", "squared_error", "mean_squared"),
    ),
):
    LOSSES.register(_loss.name, _loss, _loss.aliases)


def canonical_loss(name: Any) -> str:
    """The canonical loss name, accepting any case and the aliases (``ce``, ``mse``...)."""
    return LOSSES.canonical(name)


def chance_loss(loss: str, classes: int) -> float:
    """The loss of a model that predicts the uniform distribution over ``classes``:
    ln(classes) for cross-entropy, 1 - 1/classes for squared error on the softmax."""
    return LOSSES.get(loss).chance(classes)


def smoothable_losses() -> list[str]:
    """The losses that take label smoothing (``Loss.label_smoothing``): cross_entropy."""
    return [name for name in LOSSES.names() if LOSSES.get(name).label_smoothing]
