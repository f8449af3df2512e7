"""Adam."""

from __future__ import annotations

import math

from fastmlp.optim.optimizer import BETA1, BETA2, EPSILON, LEARNING_RATE, Optimizer


class Adam(Optimizer):
    """Adam, ``torch.optim.Adam(lr=lr, betas=(beta1, beta2), eps=eps)``.

    Algorithm, with m = v = 0 and t = 0 before the first step::

        t = t + 1
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    name = "adam"
    summary = "adaptive moments"
    hyperparameters = (LEARNING_RATE, BETA1, BETA2, EPSILON)
    buffers = ("m", "v")

    @staticmethod
    def update(
        p, g, m, v, *, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
        bias_correction2_sqrt,
    ):  # fmt: skip
        # m = beta1 * m + (1 - beta1) * g
        m = m * beta1 + g * one_minus_beta1
        # v = beta2 * v + (1 - beta2) * g^2
        v = v * beta2 + (g * g) * one_minus_beta2
        # p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        p = p - (m / (math.sqrt(v) / bias_correction2_sqrt + eps)) * step_size
        return p, m, v

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        t = self.steps
        return {
            "step_size": values["lr"] / (1.0 - values["beta1"] ** t),
            "beta1": values["beta1"],
            "one_minus_beta1": 1.0 - values["beta1"],
            "beta2": values["beta2"],
            "one_minus_beta2": 1.0 - values["beta2"],
            "eps": values["eps"],
            "bias_correction2_sqrt": math.sqrt(1.0 - values["beta2"] ** t),
        }

    def decays(self, values: dict[str, float]) -> dict[str, float]:
        return {"m": values["beta1"], "v": values["beta2"]}
