"""The MLP: one flat parameter buffer, initialisation, validation, inference, checkpoints,
and that it actually learns with every optimizer."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import optim
from fastmlp.nn.checkpoint import CheckpointError

OPTIMIZERS = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]


def host(model, array):
    return model.backend.to_numpy(array)


def small_model(**overrides):
    kwargs = {"input_size": 5, "hidden_sizes": (7, 4), "output_size": 3, "seed": 0}
    kwargs.update(overrides)
    return fastmlp.MLP(**kwargs)


def blobs(n=400, classes=4, dim=20, spread=1.0, seed=0):
    """Gaussian blobs: a small classification problem a working MLP learns to ~100%."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.5, size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(0.0, spread, size=(n, dim))
    return x.astype(np.float32), y


# ----------------------------------------------------------------------- structure


def test_params_is_one_flat_buffer_with_weights_then_biases_as_views(device):
    model = small_model(device=device)
    sizes = [(5, 7), (7, 4), (4, 3)]
    assert model.params.ndim == 1
    assert model.num_params == model.params.size == sum(a * b + b for a, b in sizes)
    assert [tuple(w.shape) for w in model.weights] == sizes
    assert [tuple(b.shape) for b in model.biases] == [(7,), (4,), (3,)]
    # The documented layout: all weights (layer by layer, row-major), then all biases.
    flat = host(model, model.params)
    expected = np.concatenate(
        [host(model, w).ravel() for w in model.weights] + [host(model, b) for b in model.biases]
    )
    np.testing.assert_array_equal(flat, expected)


def test_writing_through_a_weight_or_bias_view_changes_params(device):
    model = small_model(device=device)
    model.weights[1][2, 3] = 42.0
    model.biases[2][1] = -7.0
    flat = host(model, model.params)
    assert flat[5 * 7 + 2 * 4 + 3] == 42.0
    assert flat[model.num_weights + 7 + 4 + 1] == -7.0


def test_grads_have_the_params_layout_with_their_own_views(device):
    model = small_model(device=device)
    assert model.grads.shape == model.params.shape and model.grads.dtype == model.params.dtype
    rng = np.random.default_rng(0)
    model.loss_and_grad(rng.normal(size=(6, 5)), rng.integers(0, 3, size=6))
    model.grad_weights[0][...] = 3.0
    model.grad_biases[0][...] = 5.0
    grads = host(model, model.grads)
    assert np.all(grads[: 5 * 7] == 3.0)
    assert np.all(grads[model.num_weights : model.num_weights + 7] == 5.0)
    assert [g.shape for g in model.grad_weights] == [w.shape for w in model.weights]


def test_empty_hidden_sizes_is_softmax_regression():
    model = small_model(hidden_sizes=())
    assert [w.shape for w in model.weights] == [(5, 3)]
    assert model.num_params == 5 * 3 + 3


def test_config_round_trips_through_the_constructor():
    model = small_model(
        activation="LeakyReLU", weight_init="he", loss="mse", weight_decay=0.01, dtype="float64",
        dropout=0.25, activation_options={"slope": 0.2},
    )  # fmt: skip
    assert model.config == {
        "input_size": 5,
        "hidden_sizes": [7, 4],
        "output_size": 3,
        "activation": "leaky_relu",
        "activation_options": {"slope": 0.2},
        "weight_init": "he",
        "loss": "mean_squared_error",
        "weight_decay": 0.01,
        "dropout": 0.25,
        "label_smoothing": 0.0,
        "dtype": "float64",
    }
    json.dumps(model.config)
    assert fastmlp.MLP(**model.config).config == model.config


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_params_and_grads_have_the_requested_dtype(dtype):
    model = small_model(dtype=dtype)
    assert model.params.dtype == np.dtype(dtype) == model.grads.dtype


# -------------------------------------------------------------------- initialisation


def test_xavier_weights_are_uniform_within_the_glorot_bound():
    model = fastmlp.MLP(
        input_size=400, hidden_sizes=(300,), output_size=100, weight_init="xavier", seed=1
    )
    for w in model.weights:
        fan_in, fan_out = w.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.99 * bound  # uniform: the bound is reached
        assert w.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.03)
        assert abs(w.mean()) < 0.01 * bound


def test_he_weights_have_std_sqrt_2_over_fan_in():
    model = fastmlp.MLP(
        input_size=400, hidden_sizes=(300,), output_size=100, weight_init="he", seed=1
    )
    for w in model.weights:
        assert w.std() == pytest.approx(math.sqrt(2.0 / w.shape[0]), rel=0.03)
        assert abs(w.mean()) < 0.02 * math.sqrt(2.0 / w.shape[0])


def test_random_weights_are_small_gaussians_with_std_0_01():
    model = fastmlp.MLP(
        input_size=400, hidden_sizes=(300,), output_size=100, weight_init="random", seed=1
    )
    for w in model.weights:
        assert w.std() == pytest.approx(0.01, rel=0.03)
        # Gaussian, not uniform: some weights lie beyond 3 sigma.
        assert np.abs(w).max() > 0.03


@pytest.mark.parametrize("weight_init", ["random", "xavier", "he", "Xavier", "HE"])
def test_biases_start_at_zero(weight_init):
    model = small_model(weight_init=weight_init)
    assert all(np.all(b == 0) for b in model.biases)
    assert all(np.any(w != 0) for w in model.weights)


def test_same_seed_gives_the_same_weights_and_another_seed_different_ones():
    a, b, c = small_model(seed=5), small_model(seed=5), small_model(seed=6)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_float32_and_float64_models_of_one_seed_start_from_the_same_weights():
    np.testing.assert_allclose(
        small_model(dtype="float32", seed=3).params,
        small_model(dtype="float64", seed=3).params,
        rtol=1e-7,
    )


@pytest.mark.parametrize("name", ["ReLU", "RELU", "relu", "Sigmoid", "TANH", "Identity"])
def test_activation_names_are_case_insensitive(name):
    assert small_model(activation=name).activation == name.lower()


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides,mentions",
    [
        ({"activation": "softplus"}, "activation"),
        ({"loss": "hinge"}, "loss"),
        ({"weight_init": "orthogonal"}, "init"),
        ({"dtype": "float16"}, "dtype"),
        ({"dtype": "int32"}, "dtype"),
        ({"hidden_sizes": (7, 0)}, "layer sizes"),
        ({"hidden_sizes": (-3,)}, "layer sizes"),
        ({"input_size": 0}, "layer sizes"),
        ({"hidden_sizes": (2.5,)}, "layer sizes"),
        ({"output_size": 1}, "output_size"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
    ],
)
def test_invalid_constructor_arguments_raise_value_error(overrides, mentions):
    with pytest.raises(ValueError, match=mentions):
        small_model(**overrides)


@pytest.mark.parametrize("shape", [(4, 6), (4,), (4, 3, 2), (5,)])
def test_inputs_of_the_wrong_shape_raise_value_error(shape):
    model = small_model()
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        model.forward(np.zeros(shape))
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        model.loss_and_grad(np.zeros(shape), np.zeros(4, dtype=int))


def test_image_shaped_inputs_are_flattened_like_in_training():
    model = small_model()
    x = np.random.default_rng(0).random((4, 5))
    np.testing.assert_array_equal(model.forward(x.reshape(4, 5, 1)), model.forward(x))


@pytest.mark.parametrize(
    "labels", [np.array([0.0, 1.0, 2.0, 0.0]), np.array([True, False, True, False])]
)
def test_non_integer_labels_raise_value_error(labels):
    with pytest.raises(ValueError, match="integer"):
        small_model().loss_and_grad(np.zeros((4, 5)), labels)


def test_evaluating_an_empty_dataset_raises_value_error():
    with pytest.raises(ValueError, match="empty"):
        small_model().evaluate(np.zeros((0, 5)), np.zeros(0, dtype=int))


def test_inputs_of_another_float_dtype_or_lists_are_cast_to_the_model_dtype():
    model = small_model(dtype="float32")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 5)), [0, 2, 1, 1]
    expected = float(model.loss_and_grad(x.astype(np.float32), np.array(y)))
    assert float(model.loss_and_grad(x, y)) == expected
    assert float(model.loss_and_grad(x.tolist(), y)) == expected
    assert model.forward(x).dtype == np.float32


def test_labels_that_do_not_match_the_batch_raise_value_error():
    with pytest.raises(ValueError, match="labels"):
        small_model().loss_and_grad(np.zeros((4, 5)), np.zeros(3, dtype=int))


@pytest.mark.parametrize(
    "label_dtype", ["int8", "uint8", "int16", "int32", "uint32", "int64", "uint64"]
)
@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_every_integer_label_dtype_gives_the_same_loss(label_dtype, loss):
    """Labels pass validation for any integer dtype, so every one must work the same."""
    model = small_model(loss=loss)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 2, 1, 0])
    expected = float(model.loss_and_grad(x, y))
    assert float(model.loss_and_grad(x, y.astype(label_dtype))) == expected
    assert model.evaluate(x, y.astype(label_dtype))[0] == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------- inference


def test_forward_returns_probabilities_that_sum_to_one(device_dtype):
    device, dtype = device_dtype
    model = small_model(device=device, dtype=dtype)
    x = np.random.default_rng(0).normal(size=(9, 5))
    p = host(model, model.forward(x))
    assert p.shape == (9, 3) and p.dtype == np.dtype(dtype)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_predict_is_the_argmax_of_forward(device):
    model = small_model(device=device)
    x = np.random.default_rng(1).normal(size=(50, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        host(model, model.predict(x)), host(model, model.forward(x)).argmax(axis=1)
    )


def test_forward_predict_and_evaluate_agree_across_evaluation_chunks():
    """Inputs longer than one evaluation chunk give what one big batch gives."""
    model = small_model(dtype="float64")
    rng = np.random.default_rng(2)
    n = fastmlp.nn.mlp.EVAL_CHUNK + 123
    x, y = rng.normal(size=(n, 5)), rng.integers(0, 3, size=n)
    p = model.forward(x)
    np.testing.assert_array_equal(model.predict(x), p.argmax(axis=1))
    loss, accuracy = model.evaluate(x, y)
    assert loss == pytest.approx(float(model.loss_and_grad(x, y)), rel=1e-12)
    assert accuracy == np.mean(p.argmax(axis=1) == y)
    expected = -np.log(p[np.arange(n), y]).mean()
    assert loss == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_evaluate_returns_python_floats_consistent_with_loss_and_grad(loss, device_dtype):
    device, dtype = device_dtype
    model = small_model(loss=loss, device=device, dtype=dtype, weight_decay=0.3)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 5)), rng.integers(0, 3, size=20)
    value, accuracy = model.evaluate(x, y)
    assert type(value) is float and type(accuracy) is float
    assert value == pytest.approx(float(model.loss_and_grad(x, y)), rel=1e-6)
    predictions = host(model, model.predict(x))
    assert accuracy == np.mean(predictions == y)


def test_evaluate_does_not_touch_the_gradients():
    model = small_model()
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    model.loss_and_grad(x, y)
    grads = model.grads.copy()
    model.evaluate(rng.normal(size=(30, 5)), rng.integers(0, 3, size=30))
    model.forward(rng.normal(size=(30, 5)))
    np.testing.assert_array_equal(model.grads, grads)


def test_weight_decay_adds_wd_times_w_to_weight_gradients_only(device_dtype):
    device, dtype = device_dtype
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(10, 5)), rng.integers(0, 3, size=10)
    plain = small_model(device=device, dtype=dtype, seed=9)
    decayed = small_model(device=device, dtype=dtype, seed=9, weight_decay=0.25)
    plain_loss = float(plain.loss_and_grad(x, y))
    decayed_loss = float(decayed.loss_and_grad(x, y))
    assert decayed_loss == plain_loss, "the reported loss is the data loss alone"
    rtol = 1e-6 if dtype == "float32" else 1e-14
    for i in range(3):
        np.testing.assert_allclose(
            host(decayed, decayed.grad_weights[i]),
            host(plain, plain.grad_weights[i]) + 0.25 * host(plain, plain.weights[i]),
            rtol=rtol,
            atol=rtol,
        )
        np.testing.assert_array_equal(
            host(decayed, decayed.grad_biases[i]), host(plain, plain.grad_biases[i])
        )


def test_loss_and_grad_overwrites_gradients_instead_of_accumulating():
    model = small_model(dtype="float64")
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    model.loss_and_grad(x, y)
    first = model.grads.copy()
    model.loss_and_grad(rng.normal(size=(3, 5)), rng.integers(0, 3, size=3))  # another batch size
    model.loss_and_grad(x, y)
    np.testing.assert_array_equal(model.grads, first)


# --------------------------------------------------------------- property tests


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=2, max_size=5),
    output_size=st.integers(2, 20),
    batch=st.integers(1, 16),
    dtype=st.sampled_from(["float32", "float64"]),
    activation=st.sampled_from(["identity", "sigmoid", "tanh", "relu"]),
    loss=st.sampled_from(["cross_entropy", "mean_squared_error"]),
    seed=st.integers(0, 2**16),
)
def test_any_architecture_gives_well_shaped_finite_outputs(
    sizes, output_size, batch, dtype, activation, loss, seed
):
    """Random layer sizes 1..20, batch 1..16, both dtypes: shapes, dtypes and finiteness hold."""
    input_size, *hidden = sizes
    model = fastmlp.MLP(
        input_size, hidden, output_size, activation=activation, loss=loss, dtype=dtype, seed=seed
    )
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, input_size)).astype(dtype)
    y = rng.integers(0, output_size, size=batch)

    p = model.forward(x)
    assert p.shape == (batch, output_size) and p.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    predictions = model.predict(x)
    assert predictions.shape == (batch,) and predictions.dtype.kind in "iu"
    assert np.all((0 <= predictions) & (predictions < output_size))

    value = model.loss_and_grad(x, y)
    assert isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.dtype(dtype)
    assert np.isfinite(value) and value >= 0
    assert model.grads.dtype == np.dtype(dtype) and np.all(np.isfinite(model.grads))
    loss_value, accuracy = model.evaluate(x, y)
    assert math.isfinite(loss_value) and 0.0 <= accuracy <= 1.0


# ------------------------------------------------------------------- checkpoints


def trained(name, dtype="float32", steps=7, device="cpu"):
    model = small_model(dtype=dtype, device=device, seed=4)
    optimizer = optim.create(name, lr=0.01)
    x, y = blobs(n=32, classes=3, dim=5, seed=4)
    for _ in range(steps):
        model.loss_and_grad(x, y)
        optimizer.step(model.params, model.grads)
    return model, optimizer, (x, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_checkpoint_restores_model_optimizer_epoch_and_extra_exactly(name, dtype, tmp_path):
    model, optimizer, (x, y) = trained(name, dtype)
    path = tmp_path / "run" / "model.npz"
    model.save(path, optimizer=optimizer, epoch=3, extra={"run": "blobs", "best": [0.5, 1]})

    loaded = fastmlp.MLP.load(path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.params, model.params)
    assert loaded.params.dtype == model.params.dtype

    checkpoint = fastmlp.load_checkpoint(path)
    np.testing.assert_array_equal(checkpoint.model.params, model.params)
    assert checkpoint.epoch == 3
    assert checkpoint.extra == {"run": "blobs", "best": [0.5, 1]}
    restored = checkpoint.optimizer
    assert type(restored) is type(optimizer)
    assert restored.hyperparameter_values() == optimizer.hyperparameter_values()
    assert restored.steps == optimizer.steps == 7
    saved_state, restored_state = optimizer.state_dict(), restored.state_dict()
    assert restored_state["scalars"] == saved_state["scalars"]
    assert saved_state["buffers"].keys() == restored_state["buffers"].keys()
    for key, buffer in saved_state["buffers"].items():
        np.testing.assert_array_equal(restored_state["buffers"][key], buffer)

    # Resuming continues the very same trajectory.
    resumed = checkpoint.model
    for _ in range(3):
        model.loss_and_grad(x, y)
        optimizer.step(model.params, model.grads)
        resumed.loss_and_grad(x, y)
        restored.step(resumed.params, resumed.grads)
    np.testing.assert_array_equal(resumed.params, model.params)


def test_checkpoint_without_optimizer_or_epoch_loads_them_as_none(tmp_path):
    model = small_model()
    model.save(tmp_path / "m.npz")
    checkpoint = fastmlp.load_checkpoint(tmp_path / "m.npz")
    assert checkpoint.optimizer is None and checkpoint.epoch is None and checkpoint.extra == {}


def test_saving_leaves_no_temporary_file_behind(tmp_path):
    small_model().save(tmp_path / "m.npz")
    small_model(seed=1).save(tmp_path / "m.npz")  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    np.testing.assert_array_equal(
        fastmlp.MLP.load(tmp_path / "m.npz").params, small_model(seed=1).params
    )


def test_checkpoint_holds_no_pickles(tmp_path):
    model, optimizer, _ = trained("nadam")
    model.save(tmp_path / "m.npz", optimizer=optimizer, epoch=1)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        for key in archive.files:
            archive[key]


def corrupt_files(directory):
    model, optimizer, _ = trained("adam")
    good = directory / "good.npz"
    model.save(good, optimizer=optimizer, epoch=2)
    data = good.read_bytes()
    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle : middle + 16] = bytes(b ^ 0xFF for b in flipped[middle : middle + 16])
    other = directory / "other.npz"
    np.savez(other, params=np.zeros(3))
    files = {
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
        "flipped.npz": bytes(flipped),
        "garbage.npz": np.random.default_rng(0).bytes(2000),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return [directory / name for name in files] + [other, directory / "missing.npz"]


@pytest.mark.parametrize(
    "loader", [fastmlp.load_checkpoint, fastmlp.MLP.load], ids=["load_checkpoint", "MLP.load"]
)
def test_bad_checkpoint_files_raise_checkpoint_error_naming_the_file(loader, tmp_path):
    for path in corrupt_files(tmp_path):
        with pytest.raises(CheckpointError) as error:
            loader(path)
        assert path.name in str(error.value), str(error.value)
    assert issubclass(CheckpointError, ValueError)


# ------------------------------------------------------------------------ learning

LEARNING_RATES = {
    "sgd": 0.5,
    "momentum": 0.1,
    "nag": 0.1,
    "rmsprop": 0.003,
    "adam": 0.005,
    "nadam": 0.005,
}


def train_accuracy(model, optimizer, x, y, steps=300, batch=64, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(x), size=batch)
        model.loss_and_grad(x[idx], y[idx])
        optimizer.step(model.params, model.grads)
    return model.evaluate(x, y)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_learns_gaussian_blobs_to_95_percent(name):
    x, y = blobs()
    model = fastmlp.MLP(20, (32,), 4, activation="relu", seed=0)
    initial_loss, _ = model.evaluate(x, y)
    loss, accuracy = train_accuracy(model, optim.create(name, lr=LEARNING_RATES[name]), x, y)
    assert accuracy >= 0.95
    assert loss < 0.5 * initial_loss


@pytest.mark.parametrize(
    "activation,loss,name,lr",
    [
        ("sigmoid", "cross_entropy", "adam", 0.01),
        ("tanh", "cross_entropy", "momentum", 0.1),
        ("tanh", "mean_squared_error", "adam", 0.01),
        ("sigmoid", "mean_squared_error", "nadam", 0.01),
        ("relu", "mean_squared_error", "sgd", 1.0),
        ("identity", "cross_entropy", "sgd", 0.1),
    ],
)
def test_other_activations_and_mse_loss_learn_gaussian_blobs(activation, loss, name, lr):
    x, y = blobs()
    model = fastmlp.MLP(20, (32, 16), 4, activation=activation, loss=loss, seed=1)
    _, accuracy = train_accuracy(model, optim.create(name, lr=lr), x, y, steps=400)
    assert accuracy >= 0.95


def test_float64_training_learns_too():
    x, y = blobs()
    model = fastmlp.MLP(20, (16,), 4, dtype="float64", seed=2)
    _, accuracy = train_accuracy(model, optim.create("adam", lr=0.01), x.astype(np.float64), y)
    assert accuracy >= 0.95
