"""The rectified linear unit."""

from fastmlp.nn.activations.activation import Activation, register


def forward(z):
    # max(z, 0), NaN propagating like np.maximum
    return 0.0 if z < 0 else z


def backward(delta, a):
    # f'(z) = [z > 0] = [a > 0]
    return 0.0 if a <= 0 else delta


RELU = register(Activation("relu", forward, backward, maths="max(z, 0)", reference="torch.nn.ReLU"))
