"""RMSProp."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.optim.optimizer import Optimizer, check_decay, check_positive


class RMSProp(Optimizer):
    """RMSProp, ``torch.optim.RMSprop(lr=lr, alpha=beta, eps=eps)``.

    Algorithm, with v = 0 before the first step::

        v = beta * v + (1 - beta) * g^2
        p = p - lr * g / (sqrt(v) + eps)
    """

    name = "rmsprop"
    buffers = ("v",)

    def __init__(self, lr: float = 0.01, beta: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta = check_decay("beta", beta)
        self.eps = check_positive("eps", eps)

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "beta": self.beta, "eps": self.eps}

    def _decay_rates(self) -> dict[str, float]:
        return {"v": self.beta}

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        backend.rmsprop_(params, grads, self.state["v"], self.lr, self.beta, self.eps)
