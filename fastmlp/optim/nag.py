"""Nesterov accelerated gradient."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.optim.momentum import Momentum


class NAG(Momentum):
    """Nesterov momentum, ``torch.optim.SGD(lr=lr, momentum=momentum, nesterov=True)``.

    Hyperparameters and state are Momentum's; only the step differs.
    Algorithm, with b = 0 before the first step::

        b = momentum * b + g
        p = p - lr * (g + momentum * b)
    """

    name = "nag"
    aliases = ("nesterov",)

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        backend.nag_(params, grads, self.state["b"], self.lr, self.momentum)
