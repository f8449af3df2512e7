"""Backpropagation is exact: analytic gradients equal central finite differences (float64)
and torch autograd.

The finite differences are taken on an independent NumPy forward pass written here from
the definitions in docs/ARCHITECTURE.md (a @ W + b, the hidden activation, the dropout
mask, softmax, the loss), plus the L2 term 0.5 * weight_decay * ||W||^2 over weights only,
so a wrong forward pass in the package cannot hide a wrong backward pass. With dropout the
masks the model drew are held fixed and applied by the reference too.
"""

import itertools
import math

import numpy as np
import pytest

import fastmlp
from fastmlp.nn.activations import ACTIVATIONS as REGISTERED
from fastmlp.nn.layers import Dropout

ACTIVATIONS = REGISTERED.names()
LOSSES = ["cross_entropy", "mean_squared_error"]

INPUT_SIZE = 6
HIDDEN_SIZES = (7, 5, 6)  # uneven on purpose: a transposed weight cannot go unnoticed
OUTPUT_SIZE = 4

STEP = 1e-6  # central-difference step
RELU_MARGIN = 1e-3  # no ReLU pre-activation may be closer than this to the kink at 0


# ------------------------------------------------------------ independent reference


_ERF = np.vectorize(math.erf)


def reference_activation(z, activation):
    if activation == "identity":
        return z
    if activation == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-z) = inf gives the exact limit 0
            return 1.0 / (1.0 + np.exp(-z))
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if activation == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if activation == "gelu":
        return 0.5 * z * (1 + _ERF(z / np.sqrt(2)))
    if activation == "silu":
        with np.errstate(over="ignore"):
            return z / (1 + np.exp(-z))
    raise AssertionError(activation)


KINKED = {"relu", "leaky_relu"}  # not differentiable at 0


def reference_forward(weights, biases, x, activation, masks=()):
    """Logits and the hidden pre-activations of an MLP, in float64 NumPy; ``masks`` (one
    per hidden layer, or none) multiply each hidden layer's output (inverted dropout)."""
    a = np.asarray(x, dtype=np.float64)
    pre_activations = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = a @ np.asarray(w, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        if i == len(weights) - 1:
            return z, pre_activations
        pre_activations.append(z)
        a = reference_activation(z, activation)
        if masks:
            a = a * masks[i]
    raise AssertionError("a network has at least one layer")


def reference_loss(logits, y, loss):
    """Mean over the batch of the loss on the softmax output (log-sum-exp form)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    if loss == "cross_entropy":
        return float(-log_probabilities[rows, y].mean())
    probabilities = np.exp(log_probabilities)
    onehot = np.zeros_like(probabilities)
    onehot[rows, y] = 1.0
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def reference_objective(model, x, y, masks=()):
    """Data loss + 0.5 * weight_decay * sum ||W_i||^2 (weights only, not biases)."""
    logits, _ = reference_forward(model.weights, model.biases, x, model.activation, masks)
    penalty = 0.5 * model.weight_decay * sum(float((w * w).sum()) for w in model.weights)
    return reference_loss(logits, y, model.loss) + penalty


def relative_error(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def numerical_gradient(model, x, y, masks=()):
    """Central differences of reference_objective, as (weight grads, bias grads) per layer.

    Each entry is perturbed through the model's weight/bias views (so this also relies on
    the views aliasing ``model.params``, which test_model checks directly).
    """
    result = []
    for tensors in (model.weights, model.biases):
        grads = []
        for tensor in tensors:
            gradient = np.empty(tensor.shape, dtype=np.float64)
            for index in np.ndindex(tensor.shape):
                original = tensor[index]
                tensor[index] = original + STEP
                plus = reference_objective(model, x, y, masks)
                tensor[index] = original - STEP
                minus = reference_objective(model, x, y, masks)
                tensor[index] = original
                gradient[index] = (plus - minus) / (2 * STEP)
            grads.append(gradient)
        result.append(grads)
    return result


def flat(tensors):
    return np.concatenate([np.ravel(t) for t in tensors])


def smooth_problem(
    activation, loss, weight_decay, batch_size, hidden_sizes=HIDDEN_SIZES, dropout=0.0
):
    """A float64 model and batch; for a kinked activation, re-seeded until no
    pre-activation is near the kink."""
    for seed in range(100):
        model = fastmlp.MLP(
            input_size=INPUT_SIZE,
            hidden_sizes=hidden_sizes,
            output_size=OUTPUT_SIZE,
            activation=activation,
            loss=loss,
            weight_decay=weight_decay,
            dtype="float64",
            seed=seed,
            dropout=dropout,
        )
        rng = np.random.default_rng(1000 + seed)
        # Non-zero biases, so their gradients flow through every activation regime.
        for bias in model.biases:
            bias[...] = rng.normal(0.0, 0.3, size=bias.shape)
        x = rng.normal(size=(batch_size, INPUT_SIZE))
        y = rng.integers(0, OUTPUT_SIZE, size=batch_size)
        if activation not in KINKED:
            return model, x, y
        _, pre_activations = reference_forward(model.weights, model.biases, x, activation)
        if all(np.abs(z).min() > RELU_MARGIN for z in pre_activations):
            return model, x, y
    raise AssertionError(f"no kink-free {activation} problem found in 100 seeds")


def drawn_masks(model):
    """The dropout masks the model used in its last training step (copies)."""
    return [layer._mask.copy() for layer in model.layers if isinstance(layer, Dropout)]


# ------------------------------------------------------------------------- tests

GRADIENT_CASES = list(itertools.product(ACTIVATIONS, LOSSES, [0.0, 0.1], [1, 5]))


@pytest.mark.parametrize(
    "activation,loss,weight_decay,batch_size",
    GRADIENT_CASES,
    ids=[f"{a}-{loss}-wd{w}-n{n}" for a, loss, w, n in GRADIENT_CASES],
)
def test_backprop_gradient_matches_central_differences(activation, loss, weight_decay, batch_size):
    """model.grads after loss_and_grad == d(data loss + 0.5 wd ||W||^2)/dparams."""
    model, x, y = smooth_problem(activation, loss, weight_decay, batch_size)
    model.loss_and_grad(x, y)
    grad_weights = [g.copy() for g in model.grad_weights]
    grad_biases = [g.copy() for g in model.grad_biases]
    numeric_weights, numeric_biases = numerical_gradient(model, x, y)

    assert (
        relative_error(flat(grad_weights + grad_biases), flat(numeric_weights + numeric_biases))
        < 1e-6
    )
    # Layer by layer too, so a small layer's error is not drowned by a large one's.
    for i in range(len(grad_weights)):
        assert relative_error(grad_weights[i], numeric_weights[i]) < 1e-6, f"weights of layer {i}"
        assert relative_error(grad_biases[i], numeric_biases[i]) < 1e-6, f"biases of layer {i}"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_backprop_gradient_with_dropout_matches_central_differences(activation, loss):
    """With dropout the gradient is that of the network with the drawn masks held fixed."""
    model, x, y = smooth_problem(activation, loss, 0.05, 5, dropout=0.3)
    model.reseed(11)
    model.loss_and_grad(x, y)
    masks = drawn_masks(model)
    assert len(masks) == len(HIDDEN_SIZES)
    assert any((mask == 0).any() for mask in masks) and all(
        np.isin(mask, [0.0, 1 / 0.7]).all() for mask in masks
    )
    analytic = flat([*model.grad_weights, *model.grad_biases]).copy()
    numeric_weights, numeric_biases = numerical_gradient(model, x, y, masks)
    assert relative_error(analytic, flat(numeric_weights + numeric_biases)) < 1e-6


def torch_functions(torch):
    functional = torch.nn.functional
    return {
        "identity": lambda z: z,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda z: functional.leaky_relu(z, 0.01),
        "elu": lambda z: functional.elu(z, 1.0),
        "gelu": functional.gelu,
        "silu": functional.silu,
    }


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_backprop_gradient_matches_torch_autograd(activation, loss, dropout):
    """The same network, weights and dropout masks in torch (float64): every gradient
    agrees to ~1e-12."""
    torch = pytest.importorskip("torch")
    functions = torch_functions(torch)
    if activation not in functions:
        pytest.skip(f"no torch counterpart listed for {activation}")
    model, x, y = smooth_problem(activation, loss, 0.0, 6, dropout=dropout)
    model.reseed(5)
    model.loss_and_grad(x, y)
    masks = drawn_masks(model)
    weights = [torch.tensor(w.copy(), requires_grad=True) for w in model.weights]
    biases = [torch.tensor(b.copy(), requires_grad=True) for b in model.biases]
    a = torch.tensor(x)
    for i, (w, b) in enumerate(zip(weights, biases)):
        a = a @ w + b
        if i < len(weights) - 1:
            a = functions[activation](a)
            if masks:
                a = a * torch.tensor(masks[i])
    labels = torch.tensor(y)
    if loss == "cross_entropy":
        value = torch.nn.functional.cross_entropy(a, labels)
    else:
        onehot = torch.nn.functional.one_hot(labels, OUTPUT_SIZE).double()
        value = ((torch.softmax(a, dim=1) - onehot) ** 2).sum(dim=1).mean()
    value.backward()
    for i in range(len(weights)):
        np.testing.assert_allclose(model.grad_weights[i], weights[i].grad.numpy(), rtol=1e-10,
                                   atol=1e-13, err_msg=f"weights {i}")  # fmt: skip
        np.testing.assert_allclose(model.grad_biases[i], biases[i].grad.numpy(), rtol=1e-10,
                                   atol=1e-13, err_msg=f"biases {i}")  # fmt: skip


def test_dropout_is_off_in_eval_mode_and_at_inference():
    model, x, y = smooth_problem("tanh", "cross_entropy", 0.0, 8, dropout=0.5)
    model.eval()
    model.loss_and_grad(x, y)
    without = model.grads.copy()
    plain, _, _ = smooth_problem("tanh", "cross_entropy", 0.0, 8)
    plain.params[...] = model.params
    plain.loss_and_grad(x, y)
    np.testing.assert_array_equal(without, plain.grads)
    np.testing.assert_array_equal(model.forward(x), plain.forward(x))
    model.train()
    model.loss_and_grad(x, y)
    assert not np.array_equal(model.grads, without)


@pytest.mark.parametrize("loss", LOSSES)
def test_backprop_gradient_of_softmax_regression_without_hidden_layers(loss):
    """An empty hidden_sizes (softmax regression) also back-propagates exactly."""
    model, x, y = smooth_problem("tanh", loss, 0.05, 3, hidden_sizes=())
    model.loss_and_grad(x, y)
    analytic = flat([*model.grad_weights, *model.grad_biases]).copy()
    numeric_weights, numeric_biases = numerical_gradient(model, x, y)
    assert relative_error(analytic, flat(numeric_weights + numeric_biases)) < 1e-6


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_loss_is_a_0d_backend_array_equal_to_the_reference_data_loss(
    activation, loss, weight_decay
):
    """loss_and_grad returns the mean data loss (no L2 term) as a 0-d np.ndarray on the CPU."""
    model, x, y = smooth_problem(activation, loss, weight_decay, 8)
    value = model.loss_and_grad(x, y)
    assert isinstance(value, np.ndarray)
    assert value.ndim == 0
    assert value.dtype == np.float64
    logits, _ = reference_forward(model.weights, model.biases, x, activation)
    np.testing.assert_allclose(float(value), reference_loss(logits, y, loss), rtol=1e-12)


def test_reference_losses_match_their_definitions_on_a_hand_computed_case():
    """The test oracle itself: CE = -log p_y, MSE = sum_k (p_k - onehot_k)^2, batch mean."""
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0]])  # p = [1/4, 3/4], [4/5, 1/5]
    y = np.array([1, 1])
    expected_ce = -(np.log(0.75) + np.log(0.2)) / 2
    expected_mse = ((0.25**2 + 0.25**2) + (0.8**2 + 0.8**2)) / 2
    assert reference_loss(logits, y, "cross_entropy") == pytest.approx(expected_ce, rel=1e-14)
    assert reference_loss(logits, y, "mean_squared_error") == pytest.approx(expected_mse, rel=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_extreme_logits_give_finite_loss_and_gradients(dtype, activation, loss):
    """Inputs scaled by 1e4 saturate every unit, yet loss and gradients stay finite."""
    model = fastmlp.MLP(
        input_size=INPUT_SIZE,
        hidden_sizes=HIDDEN_SIZES,
        output_size=OUTPUT_SIZE,
        activation=activation,
        loss=loss,
        weight_decay=0.01,
        dtype=dtype,
        seed=3,
    )
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(16, INPUT_SIZE)) * 1e4).astype(dtype)
    y = rng.integers(0, OUTPUT_SIZE, size=16)
    with np.errstate(over="ignore", under="ignore"):
        loss_value = model.loss_and_grad(x, y)
        probabilities = model.forward(x)
    assert np.isfinite(loss_value)
    assert np.all(np.isfinite(model.grads))
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The loss still is what the log-sum-exp reference says it is.
    logits, _ = reference_forward(model.weights, model.biases, x, activation)
    expected = reference_loss(logits, y, loss)
    assert float(loss_value) == pytest.approx(expected, rel=1e-4 if dtype == "float32" else 1e-9)
