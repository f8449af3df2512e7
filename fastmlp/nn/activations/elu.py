"""The exponential linear unit."""

import math

from fastmlp.nn.activations.activation import Activation, register
from fastmlp.registry import Hyperparameter


def forward(z, *, alpha):
    return z if z > 0 else alpha * math.expm1(z)


def backward(delta, a, *, alpha):
    # f'(z) = 1 if z > 0 else alpha exp(z) = a + alpha; with alpha > 0, a > 0 iff z > 0
    return delta if a > 0 else delta * (a + alpha)


ELU = register(
    Activation(
        "elu", forward, backward, maths="z if z > 0 else alpha (exp(z) - 1)",
        hyperparameters=(
            Hyperparameter("alpha", 1.0, "alpha of elu (its value as z -> -inf is -alpha)",
                           low=0.0, low_open=True, setting="elu_alpha"),
        ),
        reference="torch.nn.ELU(alpha=alpha)",
    )
)  # fmt: skip
