"""The hyperbolic tangent."""

import math

from fastmlp.nn.activations.activation import Activation, register


def forward(z):
    return math.tanh(z)


def backward(delta, a):
    # f'(z) = 1 - a^2
    return delta * (1.0 - a * a)


TANH = register(Activation("tanh", forward, backward, maths="tanh(z)", reference="torch.nn.Tanh"))
