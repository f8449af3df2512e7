"""Runs and sweep trials trained as one stack: each keeps its own run, and its own results.

docs/ARCHITECTURE.md ("Stacks"): K runs that differ only in per-model settings train as one
``MLP(n_models=K)``; each run directory is that of a run trained alone, with the same
numbers to float rounding (float64 here: within 1e-9 relative).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.runs.config import ConfigError
from fastmlp.runs.experiment import run_experiment
from fastmlp.runs.stack_experiment import (
    PER_MODEL_SETTINGS,
    build_stack,
    run_stacked_experiments,
    stack_key,
)
from tests.datasets import write_idx_dataset

BASE = {"epochs": 3, "batch_size": 32, "num_layers": 1, "hidden_size": 12, "device": "cpu",
        "dataset": "mnist", "seed": 3, "dtype": "float64"}  # fmt: skip
QUIET = {"wandb_mode": "disabled", "progress": False, "figures": False, "verbose": False}


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return write_idx_dataset(tmp_path_factory.mktemp("data"))


def close(a, b, tolerance=1e-9):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = np.maximum(np.abs(b), 1e-6)
    assert np.max(np.abs(a - b) / scale, initial=0.0) < tolerance


def same_run(stacked, alone):
    """Two run directories hold the same run: metrics, checkpoint, best epoch, summary."""
    assert stacked.status == alone.status
    rows, expected = stacked.run_dir.read_metrics(), alone.run_dir.read_metrics()
    assert [row["epoch"] for row in rows] == [row["epoch"] for row in expected]
    for row, want in zip(rows, expected):
        for key in ("train_loss", "val_loss", "learning_rate"):
            close(row[key], want[key])
        assert row["val_accuracy"] == want["val_accuracy"]
    mine = fastmlp.load_checkpoint(stacked.run_dir.checkpoint_path)
    theirs = fastmlp.load_checkpoint(alone.run_dir.checkpoint_path)
    close(mine.model.params, theirs.model.params)
    assert mine.epoch == theirs.epoch and mine.optimizer.steps == theirs.optimizer.steps
    assert mine.optimizer.hyperparameter_values() == pytest.approx(
        theirs.optimizer.hyperparameter_values()
    )
    for key, buffer in theirs.optimizer.state.items():
        close(mine.optimizer.state[key], buffer, 1e-7)
    schedule, expected_schedule = mine.extra["schedule"], theirs.extra["schedule"]
    assert {**schedule, "state": None} == {**expected_schedule, "state": None}
    state, expected_state = schedule["state"], expected_schedule["state"]
    assert state.keys() == expected_state.keys()
    for key, value in expected_state.items():  # a plateau's best metric to float rounding
        if isinstance(value, float):
            assert state[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert state[key] == value, key
    for key in ("best_epoch", "evaluated_epoch", "epochs_completed", "test_accuracy"):
        assert stacked.summary.get(key) == alone.summary.get(key), key


@pytest.mark.parametrize(
    "shared, per_model",
    [
        ({"optimizer": "nadam", "lr_schedule": "cosine"},
         [{"learning_rate": 1e-2}, {"learning_rate": 3e-3, "weight_decay": 5e-4},
          {"learning_rate": 2e-2, "beta1": 0.8}]),
        ({"optimizer": "adamw", "restore_best": True, "monitor": "val_loss"},
         [{"learning_rate": 1e-2, "weight_decay": 0.1}, {"learning_rate": 5e-2}]),
        ({"optimizer": "momentum", "dropout": 0.2, "lr_schedule": "reduce_on_plateau",
          "lr_patience": 0},
         [{"learning_rate": 0.05, "momentum": 0.5},
          {"learning_rate": 0.1, "dropout": 0.4, "lr_patience": 1}]),
        ({"optimizer": "adam", "lr_schedule": "step", "lr_step_epochs": 1},
         [{"learning_rate": 1e-2, "lr_gamma": 0.5},
          {"learning_rate": 1e-2, "lr_gamma": 0.1, "warmup_epochs": 1},
          {"learning_rate": 3e-3, "lr_step_epochs": 2, "warmup_epochs": 1,
           "warmup_start_factor": 0.5}]),
    ],
)  # fmt: skip
def test_each_run_of_a_stack_is_the_run_trained_alone(idx_dir, tmp_path, shared, per_model):
    settings = [{**BASE, **shared, **one} for one in per_model]
    names = [f"run{k}" for k in range(len(settings))]
    stacked = run_stacked_experiments(
        settings, out=tmp_path / "stack", names=names, data_dir=idx_dir, **QUIET
    )
    for result, one, name in zip(stacked, settings, names):
        alone = run_experiment(one, out=tmp_path / "alone", name=name, data_dir=idx_dir, **QUIET)
        same_run(result, alone)
        assert result.summary["stack"] == {"models": len(settings),
                                           "index": names.index(name), "runs": names}  # fmt: skip
        config = json.loads(result.run_dir.file("config.json").read_text())
        assert config["learning_rate"] == one["learning_rate"]


def test_a_diverging_run_and_an_early_stopped_run_end_alone_and_the_others_go_on(idx_dir, tmp_path):
    shared = {**BASE, "epochs": 12, "optimizer": "sgd", "activation": "identity",
              "early_stopping": 1}  # fmt: skip
    settings = [{**shared, "learning_rate": lr} for lr in (1e9, 0.3, 1e-3)]
    stacked = run_stacked_experiments(settings, out=tmp_path / "stack", data_dir=idx_dir, **QUIET)
    statuses = [result.status for result in stacked]
    assert statuses[0] == "diverged" and stacked[0].summary["diverged_at"] == 1
    diverged = run_experiment(settings[0], out=tmp_path / "alone", data_dir=idx_dir, **QUIET)
    assert diverged.status == "diverged" and diverged.summary["diverged_at"] == 1
    assert stacked[0].summary["test_accuracy"] == diverged.summary["test_accuracy"]
    for result, one in zip(stacked[1:], settings[1:]):
        alone = run_experiment(one, out=tmp_path / "alone", data_dir=idx_dir, **QUIET)
        same_run(result, alone)
    assert "early_stopped" in statuses[1:]


def test_a_stacked_run_interrupted_resumes_alone_to_the_same_end(idx_dir, tmp_path):
    settings = [{**BASE, "epochs": 4, "optimizer": "adam", "learning_rate": lr}
                for lr in (1e-2, 3e-3)]  # fmt: skip

    def stop_after_two(metrics):
        if metrics.epoch == 2:
            raise KeyboardInterrupt

    stacked = run_stacked_experiments(
        settings, out=tmp_path / "stack", data_dir=idx_dir,
        callbacks=[[], [stop_after_two]], **QUIET,
    )  # fmt: skip
    assert [result.status for result in stacked] == ["interrupted", "interrupted"]
    assert all(result.interrupt is not None for result in stacked)
    for result, one in zip(stacked, settings):
        assert [row["epoch"] for row in result.run_dir.read_metrics()] == [1, 2]
        resumed = run_experiment({}, resume=result.run_dir.path, data_dir=idx_dir, **QUIET)
        alone = run_experiment(one, out=tmp_path / "alone", data_dir=idx_dir, **QUIET)
        assert resumed.summary["resumed_from_epoch"] == 2
        same_run(resumed, alone)


def test_runs_that_differ_in_a_shared_setting_cannot_share_a_stack(idx_dir, tmp_path):
    settings = [{**BASE, "batch_size": 16}, {**BASE, "hidden_size": 8, "learning_rate": 0.1}]
    with pytest.raises(ConfigError, match="these differ: batch_size, hidden_size"):
        run_stacked_experiments(settings, out=tmp_path, data_dir=idx_dir, **QUIET)
    assert not any(tmp_path.iterdir())
    assert stack_key({**BASE, "learning_rate": 0.1, "dropout": 0.3, "momentum": 0.5}) == (
        stack_key(BASE)
    )
    assert stack_key({**BASE, "batch_size": 16}) != stack_key(BASE)
    step = {**BASE, "lr_schedule": "step"}
    assert stack_key({**step, "lr_gamma": 0.5, "warmup_epochs": 1}) == stack_key(step)
    assert stack_key({**BASE, "lr_schedule": "cosine"}) != stack_key(step)
    assert {
        "learning_rate",
        "weight_decay",
        "dropout",
        "beta2",
        "momentum",
        "lr_gamma",
        "lr_step_epochs",
        "lr_min",
        "lr_patience",
        "warmup_epochs",
    } <= PER_MODEL_SETTINGS


def test_a_stack_with_no_seed_shares_one_drawn_seed(idx_dir, tmp_path):
    settings = [{**BASE, "seed": None, "epochs": 1, "learning_rate": lr} for lr in (0.01, 0.02)]
    stacked = run_stacked_experiments(settings, out=tmp_path, data_dir=idx_dir, **QUIET)
    seeds = {json.loads(r.run_dir.file("config.json").read_text())["seed"] for r in stacked}
    assert len(seeds) == 1 and None not in seeds


def test_the_stack_built_from_configs_starts_as_each_run_alone(idx_dir):
    from fastmlp.runs.experiment import build_model_and_optimizer

    dataset = fastmlp.data.load("mnist", data_dir=idx_dir)
    configs = [{**BASE, "optimizer": "adam", "learning_rate": lr, "beta2": b2, "seed": seed}
               for lr, b2, seed in ((0.01, 0.99, 1), (0.02, 0.999, 2))]  # fmt: skip
    from fastmlp.backends import get_backend

    model, optimizer = build_stack(configs, get_backend("cpu"), dataset)
    assert optimizer.lr == (0.01, 0.02) and optimizer.beta2 == (0.99, 0.999)
    assert optimizer.beta1 == 0.9  # shared values stay one value
    for k, config in enumerate(configs):
        alone, _ = build_model_and_optimizer(config, get_backend("cpu"), dataset)
        np.testing.assert_array_equal(model.select(k).params, alone.params)


def test_optimizer_select_is_the_stack_members_state(rng):
    model = fastmlp.MLP(input_size=6, hidden_sizes=(5,), output_size=3, n_models=3, seed=4,
                        dtype="float64")  # fmt: skip
    optimizer = fastmlp.optim.create("nadam", lr=[0.1, 0.2, 0.3], param_groups=model.param_groups())
    x, y = rng.random((16, 6)), rng.integers(0, 3, 16)
    for _ in range(3):
        model.loss_and_grad(x, y)
        optimizer.step(model.params, model.grads)
    single = model.select(1)
    chosen = optimizer.select(
        1, lambda buffer: model.copy_model_entries(buffer, 1, single, np.empty_like(single.params))
    )
    assert chosen.lr == 0.2 and chosen.steps == 3
    assert chosen.state_dict()["scalars"] == optimizer.state_dict()["scalars"]["models"][1]
    for key, buffer in chosen.state.items():
        views = model.parameter_views(optimizer.state[key])
        for mine, theirs in zip(views, single.parameter_views(buffer)):
            np.testing.assert_array_equal(mine[1], theirs)


# --- sweeps ----------------------------------------------------------------------------------

optuna = pytest.importorskip("optuna")
pytest.importorskip("yaml")

from fastmlp.sweep import parse_sweep_config, run_local_sweep  # noqa: E402
from fastmlp.sweep.study import SweepDirectory, load_study, open_storage  # noqa: E402

TINY = {"dataset": {"value": "mnist"}, "num_layers": {"value": 1}, "batch_size": {"value": 32},
        "device": {"value": "cpu"}, "dtype": {"value": "float64"}}  # fmt: skip


def sweep(method, name, early_terminate=None, **parameters):
    raw = {"name": name, "method": method,
           "metric": {"name": "val_accuracy", "goal": "maximize"},
           "parameters": {**TINY, **parameters}}  # fmt: skip
    if early_terminate:
        raw["early_terminate"] = early_terminate
    return parse_sweep_config(raw)


def run_sweep(config, out, idx_dir, **options):
    return run_local_sweep(config, out=out, data_dir=idx_dir, wandb_mode="disabled",
                           figures=False, **options)  # fmt: skip


def trials_of(out: Path, name: str) -> list:
    return load_study(name, open_storage(SweepDirectory(out / name))).get_trials(deepcopy=False)


def by_params(trials):
    return {tuple(sorted(trial.params.items())): trial for trial in trials}


def metrics_of(out, name, trial):
    path = out / name / trial.user_attrs["run_dir"] / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# the shape-determining hidden_size last: grid points that can share a stack are not neighbours
GRID = {"epochs": {"value": 3}, "learning_rate": {"values": [3e-2, 1e-2, 1e-3]},
        "weight_decay": {"values": [0, 5e-4]}, "hidden_size": {"values": [8, 16]}}  # fmt: skip


def test_a_stacked_grid_sweep_records_every_trial_once_with_the_unstacked_results(
    idx_dir, tmp_path, capsys
):
    alone = run_sweep(sweep("grid", "alone", **GRID), tmp_path, idx_dir)
    stacked = run_sweep(sweep("grid", "stacked", **GRID), tmp_path, idx_dir, stack=3)
    assert alone.progress.complete == stacked.progress.complete == 12
    plain = by_params(trials_of(tmp_path, "alone"))
    together = by_params(trials_of(tmp_path, "stacked"))
    trials = trials_of(tmp_path, "stacked")
    assert len(trials) == len(together) == 12 and set(plain) == set(together)  # each point once
    assert not any("repeat_of" in trial.user_attrs for trial in trials)
    sizes = []
    for params, trial in together.items():
        assert trial.value == plain[params].value
        assert trial.user_attrs["epochs"] == 3
        sizes.append(trial.user_attrs.get("stack_size", 1))
        for row, want in zip(metrics_of(tmp_path, "stacked", trial),
                             metrics_of(tmp_path, "alone", plain[params])):  # fmt: skip
            close(row["val_loss"], want["val_loss"])
    # 6 grid points share each hidden size: two stacks of 3 for each
    assert sizes == [3] * 12
    runs = list((tmp_path / "stacked" / "runs").iterdir())
    assert len(runs) == 12 and all((run / "summary.json").exists() for run in runs)
    assert "3 in its stack" in capsys.readouterr().out


def test_a_pruned_trial_stops_inside_its_stack_and_its_epochs_match_the_unstacked_run(
    idx_dir, tmp_path
):
    hyperband = {"type": "hyperband", "min_iter": 1, "eta": 2}
    parameters = {"epochs": {"value": 4}, "hidden_size": {"values": [8, 16]},
                  "learning_rate": {"values": [3e-2, 1e-2, 1e-7, 1e-8]},
                  "weight_decay": {"values": [0, 5e-4]}}  # fmt: skip
    run_sweep(sweep("grid", "alone", hyperband, **parameters), tmp_path, idx_dir)
    run_sweep(sweep("grid", "stacked", hyperband, **parameters), tmp_path, idx_dir, stack=8)
    plain = by_params(trials_of(tmp_path, "alone"))
    together = by_params(trials_of(tmp_path, "stacked"))
    pruned = [trial for trial in together.values() if trial.state.name == "PRUNED"]
    assert pruned and set(plain) == set(together)
    for trial in pruned:
        rows = metrics_of(tmp_path, "stacked", trial)
        summary = json.loads(
            (tmp_path / "stacked" / trial.user_attrs["run_dir"] / "summary.json").read_text()
        )
        assert summary["status"] == "pruned" and len(rows) == summary["epochs_completed"]
    assert min(trial.user_attrs["epochs"] for trial in pruned) < 4  # its model stopped early
    for params, trial in together.items():  # the epochs both ran are the same epochs
        for row, want in zip(metrics_of(tmp_path, "stacked", trial),
                             metrics_of(tmp_path, "alone", plain[params])):  # fmt: skip
            close(row["train_loss"], want["train_loss"])
            assert row["val_accuracy"] == want["val_accuracy"]


def test_a_stacked_random_sweep_keeps_its_count_and_stacks_share_their_shape(idx_dir, tmp_path):
    config = sweep("random", "random", epochs={"values": [1, 2]}, hidden_size={"values": [8, 16]},
                   learning_rate={"distribution": "log_uniform_values", "min": 1e-3, "max": 0.1},
                   dropout={"values": [0.0, 0.2]})  # fmt: skip
    summary = run_sweep(config, tmp_path, idx_dir, count=7, stack=3)
    trials = sorted(trials_of(tmp_path, "random"), key=lambda trial: trial.number)
    assert len(trials) == 7 and summary.progress.complete == 7
    for start in (0, 3):  # asked three at a time: the companions share epochs and size
        batch = trials[start : start + 3]
        assert len({(t.params["epochs"], t.params["hidden_size"]) for t in batch}) == 1
        assert len({t.params["learning_rate"] for t in batch}) == 3
    assert "stack_size" not in trials[6].user_attrs  # the last, alone


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_companions_from_listed_per_model_values_never_repeat_a_point(idx_dir, tmp_path, method):
    """With learning rates and weight decays from lists (as in the classic sweep), a
    stack's companions are the points of that product not yet tried for its network, so no
    companion is a repeat and a stack of 4 covers 2 x 2 values at once."""
    config = sweep(method, "listed", hidden_size={"values": [8, 16]},
                   learning_rate={"values": [1e-2, 3e-3]},
                   weight_decay={"values": [0, 1e-3]})  # fmt: skip
    assert run_sweep(config, tmp_path, idx_dir, count=4, stack=4).progress.complete == 4
    trials = trials_of(tmp_path, "listed")
    assert len({trial.params["hidden_size"] for trial in trials}) == 1
    assert len(by_params(trials)) == 4 and all("repeat_of" not in t.user_attrs for t in trials)
    assert all(trial.user_attrs["stack_size"] == 4 for trial in trials)


def test_ctrl_c_in_a_stack_requeues_its_trials_and_the_sweep_finishes(
    idx_dir, tmp_path, monkeypatch
):
    from fastmlp.sweep import stacked_trials
    from fastmlp.sweep.trial import metric_reporter
    from tests.reporters import interrupting_at

    config = sweep("grid", "stopped", **GRID)
    monkeypatch.setattr(stacked_trials, "metric_reporter", interrupting_at(2, metric_reporter))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, tmp_path, idx_dir, stack=4)
    trials = trials_of(tmp_path, "stopped")
    stopped = [trial for trial in trials if trial.state.name == "FAIL"]
    assert len(stopped) == 4 and all(trial.user_attrs.get("interrupted") for trial in stopped)
    assert [trial.state.name for trial in trials if trial not in stopped] == ["WAITING"] * 4
    monkeypatch.undo()
    summary = run_sweep(config, tmp_path, idx_dir, stack=4)
    trials = trials_of(tmp_path, "stopped")
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert summary.progress.complete == 12 == len(by_params(counted)) == len(counted)
    # each retry continued its interrupted run alone, from the run's checkpoint
    retries = [t for t in counted if t.user_attrs.get("retry_of") is not None]
    assert len(retries) == 4
    for retry in retries:
        cut = trials[retry.user_attrs["retry_of"]]
        assert retry.user_attrs["run_dir"] == cut.user_attrs["run_dir"]
        assert "stack_size" not in retry.user_attrs
        assert [row["epoch"] for row in metrics_of(tmp_path, "stopped", retry)] == [1, 2, 3]
        assert sorted(retry.intermediate_values) == [1, 2, 3]


def test_sweep_stack_on_the_command_line(idx_dir, tmp_path, capsys):
    config = tmp_path / "grid.yaml"
    config.write_text(
        "method: grid\nmetric: {name: val_accuracy, goal: maximize}\nparameters:\n"
        "  dataset: {value: mnist}\n  num_layers: {value: 1}\n  epochs: {value: 1}\n"
        "  hidden_size: {values: [8, 16]}\n  learning_rate: {values: [0.01, 0.03]}\n"
    )
    assert main(["sweep", str(config), "--stack", "4", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "stacks: up to 4 trials sharing hidden_size trained as one stack" in out
    assert "learning_rate differ per model" in out and "companions: the grid points" in out
    listed = "learning_rate: {values: [0.01, 0.03]}"
    continuous = "learning_rate: {distribution: log_uniform_values, min: 0.001, max: 0.1}"
    other = tmp_path / "other.yaml"
    for method, rates, companions in [
        ("random", listed, "the 2 points of learning_rate that the first trial's network"),
        ("bayes", listed, "the 2 points of learning_rate"),
        ("random", continuous, "the sampler's proposals"),
    ]:
        other.write_text(config.read_text().replace("method: grid", f"method: {method}")
                         .replace(listed, rates))  # fmt: skip
        assert main(["sweep", str(other), "--stack", "4", "--count", "4", "--dry_run"]) == 0
        assert f"companions: {companions}" in capsys.readouterr().out
    assert main(["sweep", str(config), "--stack", "2", "--engine", "wandb"]) == 2
    assert "--stack is for --engine local" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(config), "--stack", "0"])
    assert exit_info.value.code == 2
    assert "--stack: must be a positive integer" in capsys.readouterr().err
    status = main(["sweep", str(config), "--stack", "2", "--out", str(tmp_path / "sweeps"),
                   "--data_dir", str(idx_dir), "--wandb_mode", "disabled"])  # fmt: skip
    assert status == 0
    trials = trials_of(tmp_path / "sweeps", "grid")
    assert len(trials) == 4 and {t.user_attrs.get("stack_size") for t in trials} == {2}
