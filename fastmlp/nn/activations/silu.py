"""The sigmoid linear unit, also known as swish."""

import math

from fastmlp.nn.activations.activation import Activation, register


def forward(z):
    # z sigmoid(z)
    return z / (1.0 + math.exp(-z))


def backward(delta, z):
    # f'(z) = s (1 + z (1 - s)), s = sigmoid(z)
    s = 1.0 / (1.0 + math.exp(-z))
    return delta * (s * (1.0 + z * (1.0 - s)))


SILU = register(
    Activation(
        "silu", forward, backward, maths="z sigmoid(z)", aliases=("swish",),
        reference="torch.nn.SiLU()",
    )
)  # fmt: skip
