"""Heavy-ball momentum."""

from __future__ import annotations

from dataclasses import replace

from fastmlp.optim.optimizer import LEARNING_RATE, MOMENTUM, Optimizer


class Momentum(Optimizer):
    """Momentum SGD, ``torch.optim.SGD(lr=lr, momentum=momentum)`` (dampening 0).

    Algorithm, with b = 0 before the first step::

        b = momentum * b + g
        p = p - lr * b
    """

    name = "momentum"
    summary = "gradient descent with heavy-ball momentum"
    hyperparameters = (replace(LEARNING_RATE, default=0.01), MOMENTUM)
    buffers = ("b",)

    @staticmethod
    def update(p, g, b, *, lr, momentum):
        # b = momentum * b + g
        b = b * momentum + g
        # p = p - lr * b
        p = p - b * lr
        return p, b

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        return {"lr": values["lr"], "momentum": values["momentum"]}

    def decays(self, values: dict[str, float]) -> dict[str, float]:
        return {"b": values["momentum"]}
