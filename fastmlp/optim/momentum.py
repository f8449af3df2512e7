"""Heavy-ball momentum."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.optim.optimizer import Optimizer, check_decay


class Momentum(Optimizer):
    """Momentum SGD, ``torch.optim.SGD(lr=lr, momentum=momentum)`` (dampening 0).

    Algorithm, with b = 0 before the first step::

        b = momentum * b + g
        p = p - lr * b
    """

    name = "momentum"
    buffers = ("b",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = check_decay("momentum", momentum)

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "momentum": self.momentum}

    def _decay_rates(self) -> dict[str, float]:
        return {"b": self.momentum}

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        backend.momentum_(params, grads, self.state["b"], self.lr, self.momentum)
