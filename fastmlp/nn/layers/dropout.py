"""Inverted dropout: during training, zero each unit with probability p, scale the rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fastmlp.backends import Backend
from fastmlp.backends.formulas import formula
from fastmlp.nn.layers.layer import BufferCache, Layer


def keep_scale(mask, *, rate, scale):
    # mask = 0 where u < p, else 1 / (1 - p), for u uniform in [0, 1)
    mask = 0.0 if mask < rate else scale
    return mask


def masked(x, mask, out):
    # out = x * mask
    out = x * mask
    return out


def mask_in_place(delta, mask):
    # delta = delta * mask
    delta = delta * mask
    return delta


KEEP_SCALE = formula(keep_scale)
MASKED = formula(masked)
MASK_IN_PLACE = formula(mask_in_place)


class Dropout(Layer):
    """Training: y = x * m with m = 0 (probability ``rate``) or 1 / (1 - rate), into this
    layer's buffer (x stays intact: the activation before it may need its output for its
    gradient); backward: delta * m, in place. Inference (``training`` False): the identity,
    so no rescaling is ever needed at test time. Masks are drawn on the device from
    ``generator`` (see :meth:`reseed`), so a seeded run draws the same masks every time."""

    def __init__(self, rate: float, units: int, backend: Backend, dtype: str) -> None:
        super().__init__(backend, dtype)
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.units = units
        self.generator: Any = backend.rng(0)
        # the masks, and the outputs (a stack's models write into the stack's own instead)
        self._masks = BufferCache(lambda n: {"mask": backend.empty((n, units), dtype=dtype)})
        self._outputs = BufferCache(lambda n: {"out": backend.empty((n, units), dtype=dtype)})
        self._mask: Any = None
        scale = float(np.float64(1.0) / (1.0 - self.rate))
        # the kernels, bound once: the mask from uniform draws, y = x * m, delta = delta * m
        self._keep_scale = backend.bind_formula(
            KEEP_SCALE, {"rate": self.rate, "scale": scale}, dtype, 2
        )
        self._masked = backend.bind_formula(MASKED, {}, dtype, 2)
        self._mask_in_place = backend.bind_formula(MASK_IN_PLACE, {}, dtype, 2)

    def reseed(self, seed: int) -> None:
        """Draw the masks from now on from a generator seeded with ``seed``."""
        self.generator = self.backend.rng(seed)

    def forward(self, x: Any, training: bool) -> Any:
        if not training or self.rate == 0:
            self._mask = None
            return x
        out = self._outputs(x.shape[0])["out"]
        self.forward_into(x, out)
        return out

    def forward_into(self, x: Any, out: Any) -> None:
        """The training forward pass into ``out`` (N, units), which may be a view."""
        mask = self._masks(x.shape[0])["mask"]
        self.backend.uniform_(mask, self.generator)
        # mask = 0 where u < p, else 1 / (1 - p)
        self._keep_scale(mask)
        # out = x * mask
        self._masked(x, mask, out)
        self._mask = mask

    def backward(self, delta: Any) -> Any:
        if self._mask is not None:
            # delta = delta * m
            self._mask_in_place(delta, self._mask)
        return delta


class StackedDropout(Layer):
    """Dropout for a stack of K models: x (N, K * units), model k's block of columns
    [k * units, (k + 1) * units) dropped at its own rate with masks from its own generator,
    exactly as that model's :class:`Dropout` alone would drop them (``rates[k]`` 0: kept
    as it is)."""

    def __init__(self, rates: Sequence[float], units: int, backend: Backend, dtype: str) -> None:
        super().__init__(backend, dtype)
        self.rates = tuple(float(rate) for rate in rates)
        self.units = units
        self.models = [Dropout(rate, units, backend, dtype) for rate in self.rates]
        models = len(self.rates)
        self._buffers = BufferCache(
            lambda n: {"out": backend.empty((n, models * units), dtype=dtype)}
        )
        self._dropped = False

    def reseed(self, seeds: Sequence[int]) -> None:
        """Seed each model's masks (``seeds[k]`` as :meth:`Dropout.reseed` for model k)."""
        for model, seed in zip(self.models, seeds):
            model.reseed(seed)

    def _columns(self, k: int) -> slice:
        return slice(k * self.units, (k + 1) * self.units)

    def forward(self, x: Any, training: bool) -> Any:
        self._dropped = training and any(self.rates)
        if not self._dropped:
            return x
        out = self._buffers(x.shape[0])["out"]
        for k, model in enumerate(self.models):
            columns = self._columns(k)
            if model.rate:
                model.forward_into(x[:, columns], out[:, columns])
            else:
                out[:, columns] = x[:, columns]
        return out

    def backward(self, delta: Any) -> Any:
        if self._dropped:
            for k, model in enumerate(self.models):
                if model.rate:
                    model.backward(delta[:, self._columns(k)])
        return delta
