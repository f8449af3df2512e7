"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

import math
from dataclasses import replace

from fastmlp.optim.adam import Adam
from fastmlp.optim.optimizer import LEARNING_RATE
from fastmlp.registry import Hyperparameter


class Nadam(Adam):
    """NAdam, ``torch.optim.NAdam(lr=lr, betas=(beta1, beta2), eps=eps, momentum_decay=psi)``.

    Adam's hyperparameters and moments, plus the momentum schedule.
    Algorithm, with m = v = 0, t = 0 and prod = 1 before the first step::

        t = t + 1
        mu_t     = beta1 * (1 - 0.5 * 0.96^(t * psi))
        mu_{t+1} = beta1 * (1 - 0.5 * 0.96^((t + 1) * psi))
        prod     = prod * mu_t
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        denom = sqrt(v / (1 - beta2^t)) + eps
        p = p - lr * (1 - mu_t) / (1 - prod) * g / denom
              - lr * mu_{t+1} / (1 - prod * mu_{t+1}) * m / denom
    """

    name = "nadam"
    summary = "Adam with Nesterov momentum"
    hyperparameters = (
        replace(LEARNING_RATE, default=2e-3),
        *Adam.hyperparameters[1:],
        Hyperparameter("momentum_decay", 4e-3, "momentum decay psi", low=0.0),
    )

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.mu_product = 1.0

    @staticmethod
    def update(
        p, g, m, v, *, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bias_correction2,
        grad_step, momentum_step,
    ):  # fmt: skip
        # m = beta1 * m + (1 - beta1) * g
        m = m * beta1 + g * one_minus_beta1
        # v = beta2 * v + (1 - beta2) * g^2
        v = v * beta2 + (g * g) * one_minus_beta2
        # denom = sqrt(v / (1 - beta2^t)) + eps
        denom = math.sqrt(v / bias_correction2) + eps
        # p = p - lr (1 - mu_t) / (1 - prod_t) * g / denom
        p = p - (g / denom) * grad_step
        # p = p - lr mu_{t+1} / (1 - prod_t mu_{t+1}) * m / denom
        p = p - (m / denom) * momentum_step
        return p, m, v

    def _momentum_schedule(self, t: int) -> float:
        # mu_t = beta1 * (1 - 0.5 * 0.96^(t * psi))
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def advance(self) -> None:
        # prod_t = prod_{t-1} * mu_t
        self.mu_product *= self._momentum_schedule(self.steps)

    def scalars(self, values: dict[str, float]) -> dict[str, float]:
        t = self.steps
        mu_next = self._momentum_schedule(t + 1)
        mu = self._momentum_schedule(t)
        lr = values["lr"]
        return {
            "beta1": values["beta1"],
            "one_minus_beta1": 1.0 - values["beta1"],
            "beta2": values["beta2"],
            "one_minus_beta2": 1.0 - values["beta2"],
            "eps": values["eps"],
            "bias_correction2": 1.0 - values["beta2"] ** t,
            "grad_step": lr * (1.0 - mu) / (1.0 - self.mu_product),
            "momentum_step": lr * mu_next / (1.0 - self.mu_product * mu_next),
        }

    def _scalar_state(self) -> dict[str, float]:
        return {"mu_product": self.mu_product}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        self.mu_product = float(scalars["mu_product"])
