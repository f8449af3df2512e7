"""The leaky ReLU: a small slope for negative inputs instead of zero."""

from fastmlp.nn.activations.activation import Activation, register
from fastmlp.registry import Hyperparameter


def forward(z, *, slope):
    return z if z > 0 else slope * z


def backward(delta, a, *, slope):
    # f'(z) = 1 if z > 0 else slope; with slope >= 0, a > 0 exactly where z > 0
    return delta if a > 0 else slope * delta


LEAKY_RELU = register(
    Activation(
        "leaky_relu", forward, backward, maths="z if z > 0 else slope * z",
        aliases=("leakyrelu", "lrelu"),
        hyperparameters=(
            Hyperparameter("slope", 0.01, "slope of leaky_relu for negative inputs", low=0.0,
                           setting="leaky_relu_slope"),
        ),
        reference="torch.nn.LeakyReLU(negative_slope=slope)",
    )
)  # fmt: skip
