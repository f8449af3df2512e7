"""Nesterov accelerated gradient."""

from __future__ import annotations

from fastmlp.optim.momentum import Momentum


class NAG(Momentum):
    """Nesterov momentum, ``torch.optim.SGD(lr=lr, momentum=momentum, nesterov=True)``.

    Momentum's hyperparameters and buffer. Algorithm, with b = 0 before the first step::

        b = momentum * b + g
        p = p - lr * (g + momentum * b)
    """

    name = "nag"
    aliases = ("nesterov",)
    summary = "Nesterov accelerated gradient"

    @staticmethod
    def update(p, g, b, *, lr, momentum):
        # b = momentum * b + g
        b = b * momentum + g
        # p = p - lr * (g + momentum * b)
        p = p - (b * momentum + g) * lr
        return p, b
