"""Plain stochastic gradient descent."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.optim.optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD(lr=lr)``.

    Algorithm, for each step with gradient g::

        p = p - lr * g
    """

    name = "sgd"

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr}

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        backend.sgd_(params, grads, self.lr)
