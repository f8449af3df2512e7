"""Learning-rate schedules: the torch.optim.lr_scheduler sequences, resume, early stopping.

Each schedule's sequence of learning rates (per step or per epoch, as it defines) equals the
one of the corresponding torch scheduler to 1e-12 relative in float64; the warm-up is
LinearLR per step followed by the schedule proper (SequentialLR's semantics). The tables
are the schedule registry: a schedule added in a new file needs its torch counterpart here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import schedules
from fastmlp.monitor import Monitor
from fastmlp.runs.config import ConfigError, TrainConfig

torch = pytest.importorskip("torch")

EPOCHS, STEPS_PER_EPOCH, BASE_LR = 9, 7, 0.05


def torch_scheduler(name, optimizer, hp, epochs, steps):
    """The torch scheduler of a fastmlp schedule (stepped per epoch, or per step)."""
    lr_scheduler = torch.optim.lr_scheduler
    if name == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=hp["step_epochs"], gamma=hp["gamma"])
    if name == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=hp["gamma"])
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=hp["lr_min"])
    if name == "one_cycle":
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=BASE_LR, total_steps=epochs * steps, pct_start=hp["pct_start"],
            div_factor=hp["div_factor"], final_div_factor=hp["final_div_factor"],
            anneal_strategy="cos", cycle_momentum=False,
        )  # fmt: skip
    raise KeyError(name)


CASES = {
    "constant": [{}],
    "step": [{}, {"step_epochs": 2, "gamma": 0.5}],
    "exponential": [{}, {"gamma": 0.7}],
    "cosine": [{}, {"lr_min": 1e-3}],
    "one_cycle": [{}, {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}],
}


def test_every_registered_schedule_has_a_torch_oracle_here():
    assert set(schedules.names()) == {*CASES, "reduce_on_plateau"}


def fastmlp_sequence(schedule, epochs=EPOCHS, steps=STEPS_PER_EPOCH):
    """The rate of every step, in the order training takes them."""
    schedule.start(BASE_LR, epochs, steps)
    return [schedule.learning_rate(step) for step in range(epochs * steps)]


def torch_sequence(name, hp, epochs, steps, per_step, warmup_epochs=0, warmup_start=0.1):
    """The rate of every step under torch: LinearLR warm-up per step, then the scheduler."""
    parameter = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([parameter], lr=BASE_LR)
    rates = []
    if warmup_epochs:
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=warmup_start, total_iters=warmup_epochs * steps
        )
        for _ in range(warmup_epochs * steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            warmup.step()
        optimizer.param_groups[0]["lr"] = BASE_LR
        optimizer.param_groups[0]["initial_lr"] = BASE_LR
    main_epochs = epochs - warmup_epochs
    scheduler = torch_scheduler(name, optimizer, hp, main_epochs, steps)
    for _ in range(main_epochs):
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_step:
                scheduler.step()
        if not per_step:
            scheduler.step()
    return rates


@pytest.mark.parametrize("name,hp", [(name, hp) for name, cases in CASES.items() for hp in cases])
def test_a_schedule_equals_its_torch_scheduler(name, hp):
    schedule = schedules.create(name, **hp)
    values = schedule.hyperparameter_values()
    expected = torch_sequence(name, values, EPOCHS, STEPS_PER_EPOCH, schedule.per_step)
    np.testing.assert_allclose(fastmlp_sequence(schedule), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["constant", "step", "exponential", "cosine"])
def test_a_warmup_is_linearlr_per_step_then_the_schedule_over_the_remaining_epochs(name):
    schedule = schedules.create(name, warmup_epochs=2, warmup_start_factor=0.25)
    values = schedule.hyperparameter_values()
    expected = torch_sequence(name, values, EPOCHS, STEPS_PER_EPOCH, False, 2, 0.25)
    np.testing.assert_allclose(fastmlp_sequence(schedule), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode,monitor", [("min", "val_loss"), ("max", "val_accuracy")])
def test_reduce_on_plateau_follows_torch_on_a_scripted_metric(mode, monitor):
    rng = np.random.default_rng(3)
    metric = np.round(rng.uniform(0.5, 0.6, size=40), 2)  # ties and plateaus on purpose
    parameter = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([parameter], lr=BASE_LR)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=0.5, patience=2, min_lr=1e-3
    )
    schedule = schedules.create("reduce_on_plateau", patience=2, gamma=0.5, lr_min=1e-3)
    schedule.set_mode(mode)
    schedule.start(BASE_LR, len(metric), 1)
    ours, theirs = [], []
    for epoch, value in enumerate(metric):
        ours.append(schedule.learning_rate(epoch))
        theirs.append(optimizer.param_groups[0]["lr"])
        schedule.epoch_ended(epoch, float(value))
        reference.step(float(value))
    assert len(set(theirs)) > 2  # the script does reduce the rate
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


def test_a_schedules_state_round_trips_through_json():
    schedule = schedules.create("reduce_on_plateau", patience=0)
    schedule.set_mode("min")
    schedule.start(0.1, 5, 3)
    for epoch, value in enumerate([1.0, 1.0, 1.0]):
        schedule.epoch_ended(epoch, value)
    again = schedules.create("reduce_on_plateau", patience=0)
    again.load_state_dict(json.loads(json.dumps(schedule.state_dict())))
    again.start(0.5, 5, 3)  # the stored base rate wins over the optimizer's
    assert again.base_lr == 0.1 and again.current == schedule.current < 0.1
    assert again.best == schedule.best and again.bad_epochs == schedule.bad_epochs


def test_one_cycle_refuses_a_warmup_and_too_few_steps():
    with pytest.raises(ConfigError, match="own warm-up"):
        TrainConfig.from_settings({"lr_schedule": "one_cycle", "warmup_epochs": 1})
    with pytest.raises(ValueError, match="more steps"):
        schedules.create("one_cycle").start(0.1, 1, 2)


def test_settings_that_need_validation_say_so_without_a_split():
    for settings in ({"early_stopping": 3}, {"restore_best": True},
                     {"lr_schedule": "plateau"}):  # fmt: skip
        with pytest.raises(ConfigError, match="needs a validation split"):
            TrainConfig.from_settings({**settings, "val_fraction": 0})


# ------------------------------------------------------------ training with a schedule


def small_problem(n=96, features=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float64)
    y = rng.integers(0, classes, size=n)
    return x, y


def make_model(device="numpy"):
    return fastmlp.MLP(input_size=12, hidden_sizes=(8,), output_size=3, device=device,
                       dtype="float64", seed=1)  # fmt: skip


@pytest.mark.parametrize("name", ["step", "cosine", "one_cycle"])
def test_training_uses_the_schedules_rate_at_every_step(name):
    """SGD's update is lr * g: recording each step's lr through the optimizer shows the
    rate the kernel received."""
    x, y = small_problem()
    model = make_model()
    optimizer = fastmlp.optim.create("sgd", lr=0.1)
    seen = []
    original = optimizer.step

    def step(params, grads, backend=None):
        seen.append(optimizer.lr)
        original(params, grads, backend)

    optimizer.step = step
    schedule = schedules.create(name, step_epochs=1, gamma=0.5)
    history = fastmlp.train(model, optimizer, x, y, epochs=4, batch_size=32, seed=0,
                            progress=False, verbose=False, schedule=schedule)  # fmt: skip
    expected = schedules.create(name, step_epochs=1, gamma=0.5)
    expected.start(0.1, 4, 3)
    assert seen == [expected.learning_rate(step) for step in range(12)]
    assert [epoch.learning_rate for epoch in history.epochs] == seen[2::3]


@pytest.mark.parametrize("name", ["cosine", "one_cycle", "reduce_on_plateau"])
def test_resuming_mid_schedule_is_bit_identical(name):
    x, y = small_problem()
    xv, yv = small_problem(n=40, seed=5)
    options = dict(batch_size=32, seed=4, progress=False, verbose=False, x_val=xv, y_val=yv)
    whole = make_model()
    adam = fastmlp.optim.create("adam", lr=0.01)
    fastmlp.train(whole, adam, x, y, epochs=6, schedule=schedules.create(name, patience=0),
                  **options)  # fmt: skip

    part = make_model()
    adam = fastmlp.optim.create("adam", lr=0.01)
    schedule = schedules.create(name, patience=0)
    monitor = Monitor("val_accuracy")
    first = fastmlp.train(part, adam, x, y, epochs=6, schedule=schedule, monitor=monitor,
                          callbacks=[_stop_after(3)], **options)  # fmt: skip
    assert len(first) == 3
    state = json.loads(json.dumps(schedule.state_dict()))
    optimizer_state = adam.state_dict()
    resumed_adam = fastmlp.optim.create("adam", lr=0.01)
    resumed_adam.load_state_dict(optimizer_state)
    resumed_schedule = schedules.create(name, patience=0)
    resumed_schedule.load_state_dict(state)
    fastmlp.train(part, resumed_adam, x, y, epochs=3, start_epoch=3, schedule=resumed_schedule,
                  **options)  # fmt: skip
    np.testing.assert_array_equal(part.params, whole.params)


def _stop_after(epochs):
    def callback(metrics):
        if metrics.epoch == epochs:
            raise fastmlp.StopTraining("paused")

    return callback


# ------------------------------------------------------- early stopping and the best epoch


def test_the_monitor_follows_keras_early_stopping_on_a_scripted_sequence():
    accuracies = [0.50, 0.60, 0.605, 0.61, 0.59, 0.60, 0.58, 0.7]
    monitor = Monitor("val_accuracy", patience=3, min_delta=0.01)
    stopped_at = None
    for epoch, value in enumerate(accuracies, 1):
        monitor.update(epoch, {"val_accuracy": value})
        if monitor.should_stop:
            stopped_at = epoch
            break
    # 0.605 and 0.61 do not beat 0.60 by more than 0.01: epochs 3, 4, 5 do not improve
    assert (monitor.best_epoch, monitor.best, stopped_at) == (2, 0.60, 5)
    loss = Monitor("val_loss", patience=2)
    for epoch, value in enumerate([1.0, 0.8, 0.8, 0.9], 1):
        loss.update(epoch, {"val_loss": value})
    assert (loss.best_epoch, loss.should_stop) == (2, True)


def test_early_stopping_stops_and_restores_the_best_epoch():
    x, y = small_problem()
    xv, yv = small_problem(n=40, seed=5)
    model = make_model()
    optimizer = fastmlp.optim.create("sgd", lr=0.5)
    snapshots = {}

    def keep(metrics):
        snapshots[metrics.epoch] = model.params.copy()

    history = fastmlp.train(model, optimizer, x, y, epochs=60, batch_size=16, x_val=xv,
                            y_val=yv, seed=0, progress=False, verbose=False,
                            monitor="val_loss", early_stopping=3, callbacks=[keep])  # fmt: skip
    losses = [epoch.val_loss for epoch in history.epochs]
    best = int(np.argmin(losses)) + 1
    assert history.stopped is not None and history.stopped.status == "early_stopped"
    assert len(history) == best + 3 and history.best_epoch == best
    assert history.restored_best
    np.testing.assert_array_equal(model.params, snapshots[best])


def test_early_stopping_without_validation_data_says_what_it_needs():
    x, y = small_problem()
    with pytest.raises(ValueError, match="needs a validation set"):
        fastmlp.train(make_model(), fastmlp.optim.create("sgd"), x, y, epochs=2, batch_size=8,
                      early_stopping=2, progress=False, verbose=False)  # fmt: skip


def test_a_warm_up_rate_is_finite_and_rises():
    schedule = schedules.create("constant", warmup_epochs=1, warmup_start_factor=0.5)
    rates = fastmlp_sequence(schedule, epochs=2, steps=4)
    expected = [0.025, 0.03125, 0.0375, 0.04375, BASE_LR, BASE_LR, BASE_LR, BASE_LR]
    np.testing.assert_allclose(rates, expected, rtol=1e-15)
    assert all(math.isfinite(rate) for rate in rates)
