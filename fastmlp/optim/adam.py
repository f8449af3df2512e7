"""Adam."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.optim.optimizer import Optimizer, check_decay, check_positive


class Adam(Optimizer):
    """Adam, ``torch.optim.Adam(lr=lr, betas=(beta1, beta2), eps=eps)``.

    Algorithm, with m = v = 0 and t = 0 before the first step::

        t = t + 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    name = "adam"
    buffers = ("m", "v")

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        self.beta1 = check_decay("beta1", beta1)
        self.beta2 = check_decay("beta2", beta2)
        self.eps = check_positive("eps", eps)

    def hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _decay_rates(self) -> dict[str, float]:
        return {"m": self.beta1, "v": self.beta2}

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        backend.adam_(
            params,
            grads,
            self.state["m"],
            self.state["v"],
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.steps,
        )
