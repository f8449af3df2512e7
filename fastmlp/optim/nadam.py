"""NAdam: Adam with Nesterov momentum and a momentum-decay schedule."""

from __future__ import annotations

from typing import Any

from fastmlp.backends import Backend
from fastmlp.optim.adam import Adam
from fastmlp.optim.optimizer import check_non_negative


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

    def __init__(
        self,
        lr: float = 2e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        momentum_decay: float = 4e-3,
    ) -> None:
        super().__init__(lr, beta1, beta2, eps)
        self.momentum_decay = check_non_negative("momentum_decay", momentum_decay)
        self.mu_product = 1.0

    def hyperparameters(self) -> dict[str, float]:
        return {**super().hyperparameters(), "momentum_decay": self.momentum_decay}

    def _scalar_state(self) -> dict[str, float]:
        return {"mu_product": self.mu_product}

    def _load_scalar_state(self, scalars: dict[str, float]) -> None:
        self.mu_product = float(scalars["mu_product"])

    def _momentum_schedule(self, t: int) -> float:
        # mu_t = beta1 * (1 - 0.5 * 0.96^(t * psi))
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _update(self, backend: Backend, params: Any, grads: Any) -> None:
        mu = self._momentum_schedule(self.steps)
        mu_next = self._momentum_schedule(self.steps + 1)
        # prod_t = prod_{t-1} * mu_t
        self.mu_product *= mu
        backend.nadam_(
            params,
            grads,
            self.state["m"],
            self.state["v"],
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.steps,
            mu,
            mu_next,
            self.mu_product,
        )
