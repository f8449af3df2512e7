"""The Gaussian error linear unit, in its exact form with erf (torch's default)."""

import math

from fastmlp.nn.activations.activation import Activation, register


def forward(z):
    # z Phi(z), Phi(z) = (1 + erf(z / sqrt(2))) / 2
    return z * 0.5 * (1.0 + math.erf(z * 0.7071067811865476))


def backward(delta, z):
    # f'(z) = Phi(z) + z phi(z), phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
    cdf = 0.5 * (1.0 + math.erf(z * 0.7071067811865476))
    pdf = math.exp(-0.5 * z * z) * 0.3989422804014327
    return delta * (cdf + z * pdf)


GELU = register(
    Activation(
        "gelu", forward, backward, maths="z Phi(z) = z (1 + erf(z / sqrt(2))) / 2",
        reference="torch.nn.GELU()",
    )
)  # fmt: skip
