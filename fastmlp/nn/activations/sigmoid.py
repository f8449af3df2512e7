"""The logistic sigmoid."""

import math

from fastmlp.nn.activations.activation import Activation, register


def forward(z):
    # exp(-z) overflows to inf only where the result is 0
    return 1.0 / (1.0 + math.exp(-z))


def backward(delta, a):
    # f'(z) = a (1 - a)
    return delta * (a * (1.0 - a))


SIGMOID = register(
    Activation(
        "sigmoid", forward, backward, maths="1 / (1 + exp(-z))", aliases=("logistic",),
        reference="torch.nn.Sigmoid",
    )
)  # fmt: skip
