"""Gradient-norm clipping and label smoothing as torch defines them, on both CPU backends.

Clipping (``max_grad_norm``) is ``torch.nn.utils.clip_grad_norm_(max_norm)`` on every
gradient entry, weights and biases: total_norm = sqrt(sum g^2), coef = max_norm /
(total_norm + 1e-6), g = g * min(coef, 1); it scales the data-loss gradient, before the L2
weight-decay term, which torch adds inside ``optimizer.step``. The trajectories below are
those of torch's SGD and Adam with ``weight_decay`` and ``clip_grad_norm_`` (and
``cross_entropy(label_smoothing=eps)``), step by step, in float64. The gradient of the
smoothed loss itself is checked in ``tests/test_gradients.py``.
"""

import importlib.util
import json

import numpy as np
import pytest

import fastmlp
from fastmlp import optim

_NUMBA = importlib.util.find_spec("numba") is not None
CPU_DEVICES = [
    "numpy",
    pytest.param("numba", marks=pytest.mark.skipif(not _NUMBA, reason="needs numba")),
]

INPUT_SIZE, HIDDEN_SIZES, CLASSES = 6, (7, 5), 4
WEIGHT_DECAY = 0.05
STEPS = 6


def small_model(device, dtype="float64", weight_decay=WEIGHT_DECAY, **options):
    """A tanh network with non-zero biases (so their gradients count in the norm)."""
    model = fastmlp.MLP(
        INPUT_SIZE, HIDDEN_SIZES, CLASSES, activation="tanh", weight_decay=weight_decay,
        dtype=dtype, seed=0, device=device, **options,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    for bias in model.biases:
        bias[...] = rng.normal(0.0, 0.3, size=bias.shape)
    return model


def batches(steps=STEPS, size=8, dtype="float64"):
    rng = np.random.default_rng(2)
    return [
        (rng.normal(size=(size, INPUT_SIZE)).astype(dtype), rng.integers(0, CLASSES, size=size))
        for _ in range(steps)
    ]


def flat_grads(model):
    return np.asarray(model.grads, dtype=np.float64).copy()


# ----------------------------------------------------------------- against torch


def torch_optimizer(torch, name, weights, biases):
    """torch's SGD or Adam with L2 weight decay on the weights only (fastmlp's L2 term)."""
    groups = [{"params": weights, "weight_decay": WEIGHT_DECAY},
              {"params": biases, "weight_decay": 0.0}]  # fmt: skip
    if name == "sgd":
        return torch.optim.SGD(groups, lr=0.3)
    return torch.optim.Adam(groups, lr=0.02, betas=(0.9, 0.999), eps=1e-8)


def fastmlp_optimizer(name):
    if name == "sgd":
        return optim.create("sgd", lr=0.3)
    return optim.create("adam", lr=0.02, beta1=0.9, beta2=0.999, eps=1e-8)


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("max_grad_norm", [0.05, 1e3], ids=["clipping", "not-clipping"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_steps_match_torch_clip_grad_norm_then_optimizer_with_weight_decay(
    device, name, max_grad_norm, label_smoothing
):
    """Each step: fastmlp's loss_and_grad(max_grad_norm) + step against torch's backward,
    clip_grad_norm_, step (weight_decay in the optimizer): the parameters agree to ~1e-12
    after every step, and the clipping engaged exactly when torch's norm exceeded the bound."""
    torch = pytest.importorskip("torch")
    model = small_model(device, label_smoothing=label_smoothing)
    optimizer = fastmlp_optimizer(name)
    weights = [torch.tensor(w.copy(), requires_grad=True) for w in model.weights]
    biases = [torch.tensor(b.copy(), requires_grad=True) for b in model.biases]
    reference = torch_optimizer(torch, name, weights, biases)
    clipped = []
    for step, (x, y) in enumerate(batches(), 1):
        loss = float(model.loss_and_grad(x, y, max_grad_norm=max_grad_norm))
        optimizer.step(model.params, model.grads)

        reference.zero_grad()
        a = torch.tensor(x)
        for i, (w, b) in enumerate(zip(weights, biases)):
            a = a @ w + b
            if i < len(weights) - 1:
                a = torch.tanh(a)
        expected_loss = torch.nn.functional.cross_entropy(
            a, torch.tensor(y), label_smoothing=label_smoothing
        )
        expected_loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([*weights, *biases], max_grad_norm)
        clipped.append(float(norm) > max_grad_norm)
        reference.step()

        assert loss == pytest.approx(expected_loss.item(), rel=1e-12), f"loss at step {step}"
        # model.params: every weight, layer by layer, then every bias
        expected = np.concatenate([t.detach().numpy().ravel() for t in (*weights, *biases)])
        np.testing.assert_allclose(model.params, expected, rtol=1e-12, atol=1e-14,
                                   err_msg=f"parameters after step {step}")  # fmt: skip
    assert all(clipped) if max_grad_norm < 1 else not any(clipped)


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clipping_scales_the_data_gradient_then_adds_weight_decay(device, dtype):
    """grads = g * min(1, c / (||g|| + 1e-6)) + weight_decay * W, g the data gradient (of
    the same model without weight decay), ||g|| over weights and biases."""
    x, y = batches(steps=1, dtype=dtype)[0]
    plain = small_model(device, dtype, weight_decay=0.0)
    plain.loss_and_grad(x, y)
    g = flat_grads(plain)
    norm = np.sqrt(np.dot(g, g))
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    for bound in (norm / 3, norm * 3):
        decayed = small_model(device, dtype)
        decayed.loss_and_grad(x, y, max_grad_norm=bound)
        expected = g * min(1.0, bound / (norm + 1e-6))
        expected[: decayed.num_weights] += WEIGHT_DECAY * np.asarray(
            decayed.params[: decayed.num_weights], dtype=np.float64
        )
        np.testing.assert_allclose(flat_grads(decayed), expected, rtol=tolerance,
                                   atol=tolerance * np.abs(expected).max())  # fmt: skip
        unclipped = small_model(device, dtype, weight_decay=0.0)
        unclipped.loss_and_grad(x, y, max_grad_norm=bound)
        # the bound, less the 1e-6 torch adds to the norm
        clipped_norm = np.linalg.norm(flat_grads(unclipped))
        assert clipped_norm == pytest.approx(min(norm, bound * norm / (norm + 1e-6)), rel=tolerance)


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize("poison", [np.nan, np.inf])
def test_a_non_finite_gradient_is_scaled_as_torch_scales_it(device, poison):
    """torch's clip_grad_norm_(error_if_nonfinite=False): a NaN norm makes every entry NaN;
    an infinite one gives the coefficient 0 (finite entries 0, infinite ones NaN). Either
    way the parameters turn NaN at the next step, which the training loop detects."""
    torch = pytest.importorskip("torch")
    model = small_model(device)
    gradient = np.random.default_rng(3).normal(size=model.num_params)
    gradient[5] = poison
    model.grads[...] = gradient
    with np.errstate(invalid="ignore", over="ignore"):
        model._clip_gradient_norm(1.0)
    parameter = torch.zeros(model.num_params, dtype=torch.float64, requires_grad=True)
    parameter.grad = torch.tensor(gradient)
    torch.nn.utils.clip_grad_norm_([parameter], 1.0, error_if_nonfinite=False)
    np.testing.assert_array_equal(model.grads, parameter.grad.numpy())
    assert np.isnan(model.grads[5])


@pytest.mark.parametrize("bound", [0, -1.0, float("nan"), float("inf"), True])
def test_max_grad_norm_must_be_a_positive_finite_number(bound):
    model = small_model("numpy")
    x, y = batches(steps=1)[0]
    with pytest.raises(ValueError, match="max_grad_norm must be a positive finite number"):
        model.loss_and_grad(x, y, max_grad_norm=bound)


# ---------------------------------------------------------- label smoothing, the model


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, float("nan"), True])
def test_label_smoothing_must_lie_in_zero_one(eps):
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        small_model("numpy", label_smoothing=eps)


def test_label_smoothing_applies_to_cross_entropy_only():
    with pytest.raises(ValueError, match="label smoothing applies to cross_entropy only"):
        small_model("numpy", loss="mse", label_smoothing=0.1)
    assert small_model("numpy", loss="mse", label_smoothing=0.0).label_smoothing == 0.0


def test_label_smoothing_is_in_the_config_and_round_trips_through_checkpoints(tmp_path):
    model = small_model("numpy", label_smoothing=0.15)
    assert model.label_smoothing == 0.15 and model.config["label_smoothing"] == 0.15
    json.dumps(model.config)
    assert fastmlp.MLP(**model.config).config == model.config
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastmlp.MLP.load(path)
    assert loaded.label_smoothing == 0.15 and loaded.config == model.config
    x, y = batches(steps=1)[0]
    assert float(loaded.loss_and_grad(x, y)) == float(model.loss_and_grad(x, y))


def test_a_checkpoint_written_before_label_smoothing_loads_without_it(tmp_path):
    """Older checkpoints hold no label_smoothing key: they load with 0 (no smoothing)."""
    model = small_model("numpy")
    path, older = tmp_path / "model.npz", tmp_path / "older.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    config = json.loads(str(entries["config"]))
    del config["label_smoothing"]
    entries["config"] = np.array(json.dumps(config))
    np.savez(older, **entries)
    loaded = fastmlp.MLP.load(older)
    assert loaded.label_smoothing == 0.0
    np.testing.assert_array_equal(loaded.params, model.params)
