"""RMSProp."""

from __future__ import annotations

import math
from dataclasses import replace

from fastmlp.optim.optimizer import BETA, EPSILON, LEARNING_RATE, Optimizer


class RMSProp(Optimizer):
    """RMSProp, ``torch.optim.RMSprop(lr=lr, alpha=beta, eps=eps)``.

    Algorithm, with v = 0 before the first step::

        v = beta * v + (1 - beta) * g^2
        p = p - lr * g / (sqrt(v) + eps)
    """

    name = "rmsprop"
    summary = "gradient scaled by a running average of its square"
    hyperparameters = (replace(LEARNING_RATE, default=0.01), BETA, EPSILON)
    buffers = ("v",)

    @staticmethod
    def update(p, g, v, *, lr, beta, one_minus_beta, eps):
        # v = beta * v + (1 - beta) * g^2
        v = v * beta + (g * g) * one_minus_beta
        # p = p - lr * g / (sqrt(v) + eps)
        p = p - (g / (math.sqrt(v) + eps)) * lr
        return p, v

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        return {
            "lr": values["lr"],
            "beta": values["beta"],
            "one_minus_beta": 1.0 - values["beta"],
            "eps": values["eps"],
        }

    def decays(self, values: dict[str, float]) -> dict[str, float]:
        return {"v": values["beta"]}
