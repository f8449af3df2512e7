"""AdamW: Adam with decoupled weight decay."""

from __future__ import annotations

import math

from fastmlp.optim.adam import Adam
from fastmlp.registry import Hyperparameter


class AdamW(Adam):
    """AdamW, ``torch.optim.AdamW(lr=lr, betas=(beta1, beta2), eps=eps,
    weight_decay=weight_decay)``.

    Adam's hyperparameters and moments; the weight decay shrinks the parameters directly
    instead of adding to the gradient. ``fastmlp train -o adamw -w_d W`` decays the weights
    and not the biases (a parameter group with ``weight_decay=0``). Algorithm, with
    m = v = 0 and t = 0 before the first step::

        t = t + 1
        p = p * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    name = "adamw"
    summary = "Adam with decoupled weight decay (weights only)"
    hyperparameters = (
        *Adam.hyperparameters,
        Hyperparameter(
            "weight_decay", 1e-2, "decoupled weight decay", low=0.0, flags=("-w_d",)
        ),  # fmt: skip
    )
    decoupled_weight_decay = True

    @staticmethod
    def update(
        p, g, m, v, *, decay_factor, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2,
        eps, bias_correction2_sqrt,
    ):  # fmt: skip
        # p = p * (1 - lr * weight_decay)
        p = p * decay_factor
        # m = beta1 * m + (1 - beta1) * g
        m = m * beta1 + g * one_minus_beta1
        # v = beta2 * v + (1 - beta2) * g^2
        v = v * beta2 + (g * g) * one_minus_beta2
        # p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        p = p - (m / (math.sqrt(v) / bias_correction2_sqrt + eps)) * step_size
        return p, m, v

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        return {
            **super().scalars(values),
            "decay_factor": 1.0 - values["lr"] * values["weight_decay"],
        }
