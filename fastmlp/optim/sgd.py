"""Plain stochastic gradient descent."""

from __future__ import annotations

from dataclasses import replace

from fastmlp.optim.optimizer import LEARNING_RATE, Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD(lr=lr)``.

    Algorithm, for each step with gradient g::

        p = p - lr * g
    """

    name = "sgd"
    summary = "plain gradient descent"
    hyperparameters = (replace(LEARNING_RATE, default=0.01),)

    @staticmethod
    def update(p, g, *, lr):
        # p = p - lr * g
        p = p - g * lr
        return p

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        return {"lr": values["lr"]}
