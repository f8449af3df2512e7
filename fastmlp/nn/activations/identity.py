"""The identity: a linear layer (useful for ablations, and as the output layer's)."""

from fastmlp.nn.activations.activation import Activation, register


def forward(z):
    return z


def backward(delta, a):
    return delta


IDENTITY = register(
    Activation(
        "identity", forward, backward, maths="z", aliases=("linear", "none"),
        reference="torch.nn.Identity",
    )
)  # fmt: skip
