"""Stacks of K models (``MLP(n_models=K)``): each model computes what it alone computes.

The reference is K ordinary models, each built with that model's seed, weight decay and
dropout and stepped by an optimizer of that model's hyperparameters, on the same batches:
in float64 every parameter, loss and metric agrees to 1e-9 relative (in practice bit for
bit: the products are the same BLAS calls on the same numbers).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import optim, schedules
from fastmlp.backends import get_backend
from fastmlp.nn.activations import ACTIVATIONS
from fastmlp.optim import OPTIMIZERS, ParamGroup
from fastmlp.schedules import Schedule
from fastmlp.stack_training import StackHistory
from fastmlp.training import StopTraining

BACKENDS = ["numpy", "cpu"]  # the plain NumPy backend and the default CPU one (Numba)
K = 3
SEEDS = [11, 12, 13]
SHAPE = dict(input_size=20, hidden_sizes=(16, 12), output_size=5, dtype="float64")


def problem(n=96, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 20)), rng.integers(0, 5, n)


def per_model_hyperparameters(name):
    """Three different values of every hyperparameter of optimizer ``name``."""
    values = {}
    for parameter in OPTIMIZERS.get(name).hyperparameters:
        default = parameter.default
        values[parameter.name] = [default, default * 0.5, default * 0.25] if default else [0.0] * K
    values["lr"] = [1e-2, 3e-3, 1e-3]
    return values


def stack_and_singles(device, weight_decay=(0.0, 1e-3, 1e-2), dropout=0.0, **settings):
    stack = fastmlp.MLP(
        **SHAPE, **settings, device=device, n_models=K, seed=SEEDS,
        weight_decay=list(weight_decay), dropout=dropout,
    )  # fmt: skip
    rates = dropout if isinstance(dropout, list) else [dropout] * K
    singles = [
        fastmlp.MLP(
            **SHAPE, **settings, device=device, seed=seed, weight_decay=decay, dropout=rate
        )  # fmt: skip
        for seed, decay, rate in zip(SEEDS, weight_decay, rates)
    ]
    return stack, singles


def assert_same(stack, singles):
    for k, single in enumerate(singles):
        np.testing.assert_allclose(stack.select(k).params, single.params, rtol=1e-9, atol=1e-14)


def optimizers(stack, singles, optimizer_name):
    """(the per-model values, the stack's optimizer of them, each single model's own)."""
    values = per_model_hyperparameters(optimizer_name)
    stacked = optim.create(optimizer_name, stack.param_groups(), **values)
    alone = [
        optim.create(optimizer_name, single.param_groups(), **{k: v[i] for k, v in values.items()})
        for i, single in enumerate(singles)
    ]
    return values, stacked, alone


def step_both(stack, singles, optimizer_name, steps=5, max_grad_norm=None):
    """``steps`` steps of the stack and of each single model on the same batches; returns
    the stack's last losses and the singles'."""
    x, y = problem()
    _, stacked, alone = optimizers(stack, singles, optimizer_name)
    for step in range(steps):
        rows = slice(16 * step, 16 * step + 16)
        losses = stack.loss_and_grad(x[rows], y[rows], max_grad_norm=max_grad_norm)
        stacked.step(stack.params, stack.grads, stack.backend)
        single_losses = []
        for single, optimizer in zip(singles, alone):
            loss = single.loss_and_grad(x[rows], y[rows], max_grad_norm=max_grad_norm)
            single_losses.append(float(loss))
            optimizer.step(single.params, single.grads, single.backend)
    return np.asarray(losses), single_losses


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("optimizer_name", OPTIMIZERS.names())
def test_every_optimizer_steps_each_model_as_it_would_alone(device, optimizer_name):
    stack, singles = stack_and_singles(device)
    for k, single in enumerate(singles):  # initialised alike
        for stacked, alone in zip(stack.weights, single.weights):
            np.testing.assert_array_equal(stacked[k], alone)
    losses, single_losses = step_both(stack, singles, optimizer_name)
    np.testing.assert_allclose(losses, single_losses, rtol=1e-9)
    assert_same(stack, singles)


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("optimizer_name", ["adam", "nadam", "momentum"])
def test_hyperparameters_set_between_steps_reach_every_model(device, optimizer_name):
    """The stack's optimizer keeps its models' values from step to step until one changes
    (a schedule setting new rates, a user setting beta1): each step uses those set before
    it, per model or one for all."""
    stack, singles = stack_and_singles(device)
    x, y = problem()
    values, stacked, alone = optimizers(stack, singles, optimizer_name)
    changed = "beta1" if "beta1" in values else "momentum"
    for step in range(5):
        rates = [0.01 / (step + 1), 0.003, 0.02 * (step + 1)] if step % 2 else [0.004] * K
        stacked.lr = tuple(rates) if step % 2 else rates[0]
        if step == 3:
            setattr(stacked, changed, (0.5, 0.6, 0.7))
        rows = slice(16 * step, 16 * step + 16)
        stack.loss_and_grad(x[rows], y[rows])
        stacked.step(stack.params, stack.grads, stack.backend)
        for k, (single, optimizer) in enumerate(zip(singles, alone)):
            optimizer.lr = rates[k]
            if step == 3:
                setattr(optimizer, changed, (0.5, 0.6, 0.7)[k])
            single.loss_and_grad(x[rows], y[rows])
            optimizer.step(single.params, single.grads, single.backend)
    assert_same(stack, singles)


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS.names())
@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_every_activation_and_loss_with_per_model_dropout(device, activation, loss):
    stack, singles = stack_and_singles(
        device, activation=activation, loss=loss, dropout=[0.0, 0.2, 0.5]
    )
    losses, single_losses = step_both(stack, singles, "adam")
    np.testing.assert_allclose(losses, single_losses, rtol=1e-9)
    assert_same(stack, singles)


@pytest.mark.parametrize("device", BACKENDS)
def test_label_smoothing_and_per_model_gradient_clipping(device):
    stack, singles = stack_and_singles(device, label_smoothing=0.1)
    losses, single_losses = step_both(stack, singles, "sgd", max_grad_norm=0.05)
    np.testing.assert_allclose(losses, single_losses, rtol=1e-9)
    assert_same(stack, singles)


@pytest.mark.parametrize("device", BACKENDS)
def test_forward_predict_and_evaluate_have_a_model_axis(device):
    stack, singles = stack_and_singles(device)
    x, y = problem(50, seed=3)
    probabilities, predictions = stack.forward(x), stack.predict(x)
    assert probabilities.shape == (K, 50, 5) and predictions.shape == (K, 50)
    losses, accuracies = stack.evaluate(x, y)
    assert len(losses) == len(accuracies) == K
    for k, single in enumerate(singles):
        np.testing.assert_allclose(probabilities[k], single.forward(x), rtol=1e-12)
        np.testing.assert_array_equal(predictions[k], single.predict(x))
        loss, accuracy = single.evaluate(x, y)
        assert losses[k] == pytest.approx(loss, rel=1e-12) and accuracies[k] == accuracy


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_per_model_kernel_equals_the_reference_body_of_each_model(name):
    """One launch over a group viewed as (rows, K * width): model k's columns get exactly
    the formula's reference evaluation with model k's scalars."""
    rows, width = 4, 6
    rng = np.random.default_rng(0)
    values = per_model_hyperparameters(name)
    stacked = optim.create(name, [ParamGroup(0, rows * K * width, stack=(K, width))], **values)
    params = rng.standard_normal(rows * K * width)
    grads = rng.standard_normal(params.shape)
    references = [
        optim.create(name, **{key: value[k] for key, value in values.items()}) for k in range(K)
    ]
    blocks = [params.reshape(rows, K, width)[:, k].copy() for k in range(K)]
    buffers = [[np.zeros((rows, width)) for _ in stacked.buffers] for _ in range(K)]
    for _ in range(3):
        stacked.step(params, grads, get_backend("numpy"))
        for k, reference in enumerate(references):
            reference.steps += 1
            reference.advance()
            scalars = reference.scalars(reference.hyperparameter_values())
            gradient = grads.reshape(rows, K, width)[:, k]
            updated = reference.formula.evaluate(np, [blocks[k], gradient, *buffers[k]], scalars)
            blocks[k], buffers[k] = updated[0], list(updated[1:])
    for k in range(K):
        np.testing.assert_array_equal(params.reshape(rows, K, width)[:, k], blocks[k])


def test_stacked_optimizer_state_round_trips_and_resumes_exactly():
    stack, _ = stack_and_singles("cpu")
    x, y = problem()
    values = per_model_hyperparameters("nadam")
    first = optim.create("nadam", stack.param_groups(), **values)
    for rows in (slice(0, 16), slice(16, 32)):
        stack.loss_and_grad(x[rows], y[rows])
        first.step(stack.params, stack.grads, stack.backend)
    resumed = optim.create("nadam", **first.state_dict()["hyperparameters"])
    resumed.load_state_dict(first.state_dict())
    assert resumed.n_models == K and repr(resumed) == repr(first)
    twin = stack.select(0)  # any copy of the params will do: both continue from here
    params = stack.params.copy()
    stack.loss_and_grad(x[32:48], y[32:48])
    grads = stack.grads.copy()
    first.step(stack.params, stack.grads, stack.backend)
    resumed.step(params, grads, stack.backend)
    np.testing.assert_array_equal(params, stack.params)
    assert twin.n_models == 1


def train_both(device, lrs, epochs=4, **settings):
    """The stack and each model alone trained by ``fastmlp.train`` on the same data."""
    x, y = problem(300)
    x_val, y_val = problem(60, seed=2)
    stack, singles = stack_and_singles(device, weight_decay=(0.0, 1e-3, 0.0),
                                       dropout=[0.0, 0.3, 0.0])  # fmt: skip
    callbacks = settings.pop("callbacks", {})
    common = dict(epochs=epochs, batch_size=32, x_val=x_val, y_val=y_val, seed=7,
                  progress=False, verbose=False, **settings)  # fmt: skip
    optimizer = optim.create("sgd", stack.param_groups(), lr=lrs)
    stack_callbacks = [lambda k, metrics: callbacks.get(k, lambda m: None)(metrics)]
    # each model alone with its own of a schedule made with per-model values
    schedule = common.get("schedule")
    schedules = schedule.per_model() if isinstance(schedule, Schedule) else None
    history = fastmlp.train(stack, optimizer, x, y, callbacks=stack_callbacks, **common)
    alone = []
    for k, single in enumerate(singles):
        single_optimizer = optim.create("sgd", single.param_groups(), lr=lrs[k])
        own = [callbacks[k]] if k in callbacks else []
        if schedules is not None:
            common["schedule"] = schedules[k]
        alone.append(fastmlp.train(single, single_optimizer, x, y, callbacks=own, **common))
    return stack, singles, history, alone


def assert_same_histories(history, alone):
    assert isinstance(history, StackHistory) and len(history) == K
    for mine, theirs in zip(history, alone, strict=True):
        assert len(mine) == len(theirs)
        for a, b in zip(mine.epochs, theirs.epochs):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-9)
        assert (mine.diverged_at, mine.best_epoch, mine.restored_best) == (
            theirs.diverged_at, theirs.best_epoch, theirs.restored_best,
        )  # fmt: skip
        assert (mine.stopped is None) == (theirs.stopped is None)


@pytest.mark.parametrize("device", BACKENDS)
def test_training_a_stack_with_a_schedule_and_early_stopping(device):
    stack, singles, history, alone = train_both(
        device, [1e-2, 3e-3, 1.0], schedule="cosine", early_stopping=2
    )
    assert_same_histories(history, alone)
    assert_same(stack, singles)


@pytest.mark.parametrize("device", BACKENDS)
def test_schedule_hyperparameters_may_differ_per_model(device):
    schedule = schedules.create("step", step_epochs=[1, 2, 1], gamma=[0.5, 0.1, 0.9],
                                warmup_epochs=1, warmup_start_factor=[0.1, 0.5, 1.0])  # fmt: skip
    assert repr(schedule) == (
        "Step(step_epochs=[1, 2, 1], gamma=[0.5, 0.1, 0.9], warmup_epochs=1, "
        "warmup_start_factor=[0.1, 0.5, 1])"
    )
    stack, singles, history, alone = train_both(device, [1e-2, 3e-3, 0.5], schedule=schedule)
    assert_same_histories(history, alone)
    assert_same(stack, singles)


def test_per_model_schedule_values_need_a_stack_of_that_many_and_own_rates():
    x, y = problem(64)
    per_model = schedules.create("cosine", lr_min=[0.0, 1e-4, 1e-3])
    single = fastmlp.MLP(**SHAPE, seed=0)
    with pytest.raises(ValueError, match=r"trains a stack: fastmlp.train\(MLP\(n_models=3\)"):
        fastmlp.train(single, optim.SGD(lr=0.1), x, y, epochs=1, batch_size=32, schedule=per_model,
                      progress=False, verbose=False)  # fmt: skip
    pair = fastmlp.MLP(**SHAPE, seed=[0, 1], n_models=2)
    with pytest.raises(ValueError, match="one with 2 values per hyperparameter.*got 3"):
        fastmlp.train(pair, optim.SGD(pair.param_groups(), lr=[0.1, 0.2]), x, y, epochs=1,
                      batch_size=32, schedule=per_model, progress=False, verbose=False)  # fmt: skip
    stack = fastmlp.MLP(**SHAPE, seed=SEEDS, n_models=3)
    with pytest.raises(ValueError, match=r"schedules differ.*one lr per model \(lr=\[\.\.\.\]\)"):
        fastmlp.train(stack, optim.SGD(lr=0.1), x, y, epochs=1, batch_size=32,
                      schedule=per_model, progress=False, verbose=False)  # fmt: skip
    with pytest.raises(ValueError, match="one value per model, the same number for each"):
        schedules.create("step", step_epochs=[1, 2], gamma=[0.5, 0.1, 0.9])


@pytest.mark.parametrize("device", BACKENDS)
def test_a_diverging_model_is_frozen_and_the_others_go_on(device):
    stack, singles, history, alone = train_both(device, [1e-2, 1e308, 3e-3])
    assert history[1].diverged_at == 1 and alone[1].diverged_at == 1
    assert len(history[0]) == len(history[2]) == 4
    assert_same_histories(history, alone)
    assert_same(stack, singles)  # the diverged one holds its weights from before epoch 1


@pytest.mark.parametrize("device", BACKENDS)
def test_a_callback_stops_one_model_inside_its_stack(device):
    def prune(metrics):
        if metrics.epoch == 2:
            raise StopTraining("pruned")

    stack, singles, history, alone = train_both(device, [1e-2, 3e-3, 1e-1], callbacks={1: prune})
    assert history[1].stopped.status == "pruned" and len(history[1]) == 2
    assert len(history[0]) == len(history[2]) == 4
    assert_same_histories(history, alone)
    assert_same(stack, singles)


def test_save_load_and_select_keep_the_stack(tmp_path):
    stack, singles = stack_and_singles("cpu", dropout=[0.0, 0.1, 0.2])
    path = tmp_path / "stack.npz"
    stack.save(path)
    loaded = fastmlp.MLP.load(path)
    assert loaded.n_models == K and loaded.config == stack.config
    np.testing.assert_array_equal(loaded.params, stack.params)
    x, _ = problem(10)
    for k, single in enumerate(singles):
        chosen = loaded.select(k)
        assert chosen.n_models == 1 and chosen.config == single.config
        np.testing.assert_array_equal(chosen.predict(x), single.predict(x))
    assert stack.weights[1].shape == (K, 16, 12) and stack.biases[1].shape == (K, 12)


def test_one_seed_derives_one_per_model_and_one_model_is_todays_model():
    stack = fastmlp.MLP(**SHAPE, n_models=K, seed=5)
    derived = [int(s) for s in np.random.SeedSequence(5).generate_state(K)]
    assert stack.seeds == derived
    for k, seed in enumerate(derived):
        np.testing.assert_array_equal(
            stack.select(k).params, fastmlp.MLP(**SHAPE, seed=seed).params
        )
    one = fastmlp.MLP(**SHAPE, seed=5)
    assert one.n_models == 1 and "n_models" not in one.config
    assert one.weights[0].shape == (20, 16)
    np.testing.assert_array_equal(one.params, fastmlp.MLP(**SHAPE, n_models=1, seed=5).params)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fastmlp.MLP(**SHAPE, n_models=0), "n_models must be a whole number"),
        (lambda: fastmlp.MLP(**SHAPE, n_models=2, weight_decay=[0.1]), "one value or one per"),
        (lambda: fastmlp.MLP(**SHAPE, n_models=2, dropout=[0.1, 1.5]), "dropout must be in"),
        (lambda: fastmlp.MLP(**SHAPE, n_models=2, seed=[1, 2, 3]), "seed must be one int"),
        (lambda: optim.create("adam", lr=[1e-3, 1e-2], beta1=[0.9]), "the same number"),
        (lambda: optim.create("adam", [ParamGroup(0, 4)], lr=[1e-3, 1e-2]), "need parameter"),
    ],
)
def test_bad_stack_settings_say_what_is_wrong(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_select_outside_the_stack_and_per_model_rates_out_of_range():
    with pytest.raises(IndexError, match="not in this stack of 3"):
        fastmlp.MLP(**SHAPE, n_models=K).select(3)
    with pytest.raises(ValueError, match="lr"):
        optim.create("sgd", lr=[1e-3, -1.0])


@pytest.mark.parametrize("device", BACKENDS)
def test_loss_kernels_refuse_logits_they_would_copy(device):
    """A loss kernel that indexes the flat logits must not silently work on a copy."""
    backend = get_backend(device)
    logits = np.zeros((4, 10))[:, :5]
    if device == "numpy":
        with pytest.raises(ValueError, match="C-contiguous"):
            backend.cross_entropy_(logits, np.zeros(4, dtype=np.int64))
    else:  # Numba's kernel indexes by row and column: any layout is fine
        backend.cross_entropy_(logits, np.zeros(4, dtype=np.int64))
        np.testing.assert_allclose(logits, np.full((4, 5), 0.05) - [[0.25, 0, 0, 0, 0]] * 4)


@pytest.mark.parametrize(
    "start, rows, width, table",
    [(0, 2, 0, 0), (0, 3, 4, 0), (8, 2, 4, 0), (-1, 1, 4, 0), (0, 1, 4, 1), (0, 1, 4, -1),
     (0, -1, 4, 0)],
    ids=["no width", "rows beyond", "start beyond", "negative start", "no such table",
         "negative table", "negative rows"],
)  # fmt: skip
def test_the_compiled_per_model_kernel_checks_every_group(start, rows, width, table):
    """Numba's per-model loop reads group g's range [start, start + rows * K * width) and
    its scalars at values[table]: a group that does not fit is a ValueError before any
    access (a stack of K=3, arrays of 24 entries)."""
    pytest.importorskip("numba")
    from fastmlp.backends.numba_backend import _literals, _per_model_loop

    formula = OPTIMIZERS.get("adam").formula
    kernel = _per_model_loop(formula)
    literals = _literals(formula, np.dtype("float64"))
    arrays = [np.zeros(24) for _ in formula.arrays]
    values = np.ones((1, len(formula.scalars), 3))
    groups = [np.array([value]) for value in (start, rows, width, table)]
    with pytest.raises(ValueError, match="a group outside the arrays"):
        kernel(*groups, values, *literals, *arrays)
    fitting = [np.array([value]) for value in (0, 2, 4, 0)]
    kernel(*fitting, values, *literals, *arrays)  # 2 rows of 3 models of 4: it fits
    with pytest.raises(ValueError, match="mismatched shapes"):  # an array of another length
        kernel(*fitting, values, *literals, *arrays[:-1], np.zeros(23))
    with pytest.raises(ValueError, match="mismatched shapes"):  # descriptors of two lengths
        kernel(np.array([0, 0]), *fitting[1:], values, *literals, *arrays)


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("kernel", ["cross_entropy_", "mean_squared_error_"])
def test_loss_kernels_write_each_samples_loss_when_asked(device, kernel):
    """``sample_losses`` (what a stack's one loss call per step reads its models' losses
    from) holds the reference backend's per-sample losses; NaN for a label out of range."""
    from fastmlp.backends.base import Backend

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(9, 5)) * 3
    labels = rng.integers(0, 5, 9)
    labels[4] = 7
    mine, reference = np.full(9, -1.0), np.full(9, -1.0)
    getattr(get_backend(device), kernel)(logits.copy(), labels, sample_losses=mine)
    getattr(Backend(), kernel)(logits.copy(), labels, sample_losses=reference)
    np.testing.assert_allclose(mine, reference, rtol=1e-12)
    assert np.isnan(mine[4]) and np.isfinite(np.delete(mine, 4)).all()


def test_per_model_rates_without_the_stacks_groups_say_so():
    stack = fastmlp.MLP(**SHAPE, n_models=K, seed=SEEDS)
    x, y = problem(16)
    stack.loss_and_grad(x, y)
    optimizer = optim.create("adam", lr=[1e-3] * K)
    with pytest.raises(ValueError, match=r"need the parameter groups of a stack of 3"):
        optimizer.step(stack.params, stack.grads)
