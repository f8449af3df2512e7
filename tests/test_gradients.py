"""Backpropagation is exact: analytic gradients equal central finite differences (float64)
and torch autograd.

The finite differences are taken on an independent NumPy forward pass written here from
the definitions in docs/ARCHITECTURE.md (a @ W + b, the hidden activation, the dropout
mask, softmax, the loss), plus the L2 term 0.5 * weight_decay * ||W||^2 over weights only,
so a wrong forward pass in the package cannot hide a wrong backward pass. With dropout the
masks the model drew are held fixed and applied by the reference too. Label smoothing is
checked the same way, on both CPU backends, against the cross-entropy of the smoothed
target written from its definition and against torch's ``label_smoothing``.
"""

import importlib.util
import itertools
import math

import numpy as np
import pytest

import fastmlp
from fastmlp.backends.base import Backend
from fastmlp.backends.numpy_backend import NumpyBackend
from fastmlp.nn.activations import ACTIVATIONS as REGISTERED
from fastmlp.nn.layers import Dropout

ACTIVATIONS = REGISTERED.names()
LOSSES = ["cross_entropy", "mean_squared_error"]

INPUT_SIZE = 6
HIDDEN_SIZES = (7, 5, 6)  # uneven on purpose: a transposed weight cannot go unnoticed
OUTPUT_SIZE = 4

STEP = 1e-6  # central-difference step
RELU_MARGIN = 1e-3  # no ReLU pre-activation may be closer than this to the kink at 0

# Both CPU backends by name: plain NumPy and Numba (what "cpu" means when it is installed).
_NUMBA = importlib.util.find_spec("numba") is not None
CPU_DEVICES = [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(not _NUMBA, reason="needs numba")),
]
LABEL_SMOOTHING = 0.2


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


def reference_loss(logits, y, loss, label_smoothing=0.0):
    """Mean over the batch of the loss on the softmax output (log-sum-exp form); for
    cross-entropy, against the target q = (1 - eps) onehot(y) + eps / K (torch's
    label_smoothing): mean_n -sum_k q_nk log p_nk."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    if loss == "cross_entropy":
        classes = logits.shape[1]
        target = np.full(logits.shape, label_smoothing / classes)
        target[rows, y] += 1.0 - label_smoothing
        return float(-(target * log_probabilities).sum(axis=1).mean())
    probabilities = np.exp(log_probabilities)
    onehot = np.zeros_like(probabilities)
    onehot[rows, y] = 1.0
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def reference_objective(model, x, y, masks=()):
    """Data loss + 0.5 * weight_decay * sum ||W_i||^2 (weights only, not biases)."""
    logits, _ = reference_forward(model.weights, model.biases, x, model.activation, masks)
    penalty = 0.5 * model.weight_decay * sum(float((w * w).sum()) for w in model.weights)
    return reference_loss(logits, y, model.loss, model.label_smoothing) + penalty


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
    activation,
    loss,
    weight_decay,
    batch_size,
    hidden_sizes=HIDDEN_SIZES,
    dropout=0.0,
    device="cpu",
    label_smoothing=0.0,
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
            device=device,
            label_smoothing=label_smoothing,
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


# ------------------------------------------------------------------ label smoothing


def test_reference_smoothed_cross_entropy_matches_its_definition_on_a_hand_computed_case():
    """The oracle: with q = (1 - eps) onehot(y) + eps / K, the loss is -sum_k q_k log p_k."""
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0]])  # p = [1/4, 3/4], [4/5, 1/5]
    y = np.array([1, 1])
    # eps = 0.2, K = 2: q = [0.1, 0.9] for both rows
    expected = -(0.1 * np.log(0.25) + 0.9 * np.log(0.75) + 0.1 * np.log(0.8) + 0.9 * np.log(0.2))
    actual = reference_loss(logits, y, "cross_entropy", label_smoothing=0.2)
    assert actual == pytest.approx(expected / 2, rel=1e-14)


SMOOTHING_CASES = list(itertools.product(ACTIVATIONS, [0.0, 0.1], [1, 5]))


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize(
    "activation,weight_decay,batch_size",
    SMOOTHING_CASES,
    ids=[f"{a}-wd{w}-n{n}" for a, w, n in SMOOTHING_CASES],
)
def test_label_smoothing_gradient_matches_central_differences(
    device, activation, weight_decay, batch_size
):
    """grads == d(smoothed cross-entropy + 0.5 wd ||W||^2)/dparams, layer by layer."""
    model, x, y = smooth_problem(activation, "cross_entropy", weight_decay, batch_size,
                                 device=device, label_smoothing=LABEL_SMOOTHING)  # fmt: skip
    model.loss_and_grad(x, y)
    grad_weights = [g.copy() for g in model.grad_weights]
    grad_biases = [g.copy() for g in model.grad_biases]
    numeric_weights, numeric_biases = numerical_gradient(model, x, y)
    assert (
        relative_error(flat(grad_weights + grad_biases), flat(numeric_weights + numeric_biases))
        < 1e-6
    )
    for i in range(len(grad_weights)):
        assert relative_error(grad_weights[i], numeric_weights[i]) < 1e-6, f"weights of layer {i}"
        assert relative_error(grad_biases[i], numeric_biases[i]) < 1e-6, f"biases of layer {i}"


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_label_smoothing_gradient_with_dropout_matches_central_differences(device, activation):
    model, x, y = smooth_problem(activation, "cross_entropy", 0.05, 5, dropout=0.3,
                                 device=device, label_smoothing=LABEL_SMOOTHING)  # fmt: skip
    model.reseed(11)
    model.loss_and_grad(x, y)
    masks = drawn_masks(model)
    assert any((mask == 0).any() for mask in masks)
    analytic = flat([*model.grad_weights, *model.grad_biases]).copy()
    numeric_weights, numeric_biases = numerical_gradient(model, x, y, masks)
    assert relative_error(analytic, flat(numeric_weights + numeric_biases)) < 1e-6


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_label_smoothing_gradient_and_loss_match_torch_autograd(
    device, activation, dropout, weight_decay
):
    """torch.nn.functional.cross_entropy(..., label_smoothing=eps) (+ 0.5 wd ||W||^2) on
    the same network, weights and masks: the loss and every gradient agree to ~1e-12."""
    torch = pytest.importorskip("torch")
    functions = torch_functions(torch)
    if activation not in functions:
        pytest.skip(f"no torch counterpart listed for {activation}")
    model, x, y = smooth_problem(activation, "cross_entropy", weight_decay, 6, dropout=dropout,
                                 device=device, label_smoothing=LABEL_SMOOTHING)  # fmt: skip
    model.reseed(5)
    loss = float(model.loss_and_grad(x, y))
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
    data_loss = torch.nn.functional.cross_entropy(
        a, torch.tensor(y), label_smoothing=LABEL_SMOOTHING
    )
    penalty = 0.5 * weight_decay * sum((w * w).sum() for w in weights)
    (data_loss + penalty).backward()
    assert loss == pytest.approx(data_loss.item(), rel=1e-12)  # the data loss, no L2 term
    for i in range(len(weights)):
        np.testing.assert_allclose(model.grad_weights[i], weights[i].grad.numpy(), rtol=1e-10,
                                   atol=1e-13, err_msg=f"weights {i}")  # fmt: skip
        np.testing.assert_allclose(model.grad_biases[i], biases[i].grad.numpy(), rtol=1e-10,
                                   atol=1e-13, err_msg=f"biases {i}")  # fmt: skip


@pytest.mark.parametrize("device", CPU_DEVICES)
def test_training_loss_is_smoothed_and_evaluate_reports_the_plain_cross_entropy(device):
    """loss_and_grad (train or eval mode) returns the smoothed loss; evaluate the data
    cross-entropy without smoothing, so validation losses compare across runs."""
    model, x, y = smooth_problem("tanh", "cross_entropy", 0.1, 8, dropout=0.3, device=device,
                                 label_smoothing=LABEL_SMOOTHING)  # fmt: skip
    logits, _ = reference_forward(model.weights, model.biases, x, "tanh")
    smoothed = reference_loss(logits, y, "cross_entropy", LABEL_SMOOTHING)
    plain = reference_loss(logits, y, "cross_entropy")
    assert smoothed != pytest.approx(plain, rel=1e-3)
    model.eval()
    assert float(model.loss_and_grad(x, y)) == pytest.approx(smoothed, rel=1e-12)
    loss, _accuracy = model.evaluate(x, y)
    assert loss == pytest.approx(plain, rel=1e-12)


def smoothed_kernel_backends():
    backends = {"numpy": NumpyBackend}
    if _NUMBA:
        from fastmlp.backends.numba_backend import NumbaBackend

        backends["numba"] = NumbaBackend
    return backends


KERNEL_BACKENDS = smoothed_kernel_backends()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5, 0.9])
def test_smoothed_cross_entropy_kernel_equals_the_reference_body(backend, dtype, label_smoothing):
    """Each fast kernel computes what the reference Backend body computes (to rounding),
    extreme logits included, and leaves each row's gradient summing to zero."""
    rng = np.random.default_rng(7)
    z = (rng.normal(size=(64, 10)) * 5).astype(dtype)
    z[0] = [1000, -1000, 0, 0, 0, 0, 0, 0, 0, 3]  # extreme logits stay finite
    y = rng.integers(0, 10, size=64)
    expected = z.copy()
    expected_loss = Backend().cross_entropy_(expected, y, label_smoothing=label_smoothing)
    loss = KERNEL_BACKENDS[backend]().cross_entropy_(z, y, label_smoothing=label_smoothing)
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    assert np.isfinite(loss) and np.isfinite(z).all()
    np.testing.assert_allclose(loss, expected_loss, rtol=tolerance)
    np.testing.assert_allclose(z, expected, rtol=tolerance, atol=tolerance / 64)
    np.testing.assert_allclose(z.sum(axis=1), 0.0, atol=tolerance)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_cross_entropy_kernel_without_smoothing_is_the_eps_zero_kernel(backend):
    """label_smoothing=0 is the plain kernel, bit for bit (it takes the same path)."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=(33, 7)).astype("float32") * 4
    y = rng.integers(0, 7, size=33)
    plain, smoothed_zero = z.copy(), z.copy()
    kernels = KERNEL_BACKENDS[backend]()
    plain_loss = kernels.cross_entropy_(plain, y)
    zero_loss = kernels.cross_entropy_(smoothed_zero, y, label_smoothing=0.0)
    np.testing.assert_array_equal(plain, smoothed_zero)
    assert plain_loss == zero_loss


def test_smoothing_keeps_the_chance_loss_of_a_uniform_prediction():
    """Equal logits: -log p_k = log K for every k, so the smoothed loss is log K too (the
    chance level the training loop compares against), and the gradient is (1/K - q) / N."""
    z, y = np.zeros((4, 5)), np.array([0, 1, 2, 4])
    loss = NumpyBackend().cross_entropy_(z, y, label_smoothing=0.3)
    assert float(loss) == pytest.approx(math.log(5), rel=1e-15)
    q = np.full((4, 5), 0.3 / 5)
    q[np.arange(4), y] += 0.7
    np.testing.assert_allclose(z, (0.2 - q) / 4, rtol=1e-15, atol=1e-17)
