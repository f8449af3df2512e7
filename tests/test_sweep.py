"""Sweeps: W&B configs translated for Optuna, shared and resumable local sweeps, the report."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("yaml")

from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from fastmlp.cli import main  # noqa: E402
from fastmlp.runs.config import normalize_config, settings  # noqa: E402
from fastmlp.sweep import (  # noqa: E402
    SweepConfigError,
    SweepError,
    parse_sweep_config,
    read_sweep_config,
    run_local_sweep,
    run_wandb_sweep,
    write_report,
)
from fastmlp.sweep.local import make_pruner, make_sampler  # noqa: E402
from fastmlp.sweep.study import SweepDirectory, load_study, open_storage  # noqa: E402
from tests.datasets import write_idx_dataset  # noqa: E402
from tests.reporters import interrupting_at  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# A one-hidden-layer network, one epoch on the tiny generated dataset: about 0.3 s a trial.
TINY = {
    "dataset": {"value": "mnist"},
    "epochs": {"value": 1},
    "num_layers": {"value": 1},
    "batch_size": {"value": 32},
    "device": {"value": "cpu"},
}


def sweep_config(method="random", name="test", **parameters):
    """A sweep of TINY trials plus ``parameters`` (W&B specs), maximising val_accuracy."""
    return parse_sweep_config(
        {
            "name": name,
            "method": method,
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {**TINY, **parameters},
        }
    )


def trials_of(out: Path, name: str) -> list:
    directory = SweepDirectory(out / name)
    return load_study(name, open_storage(directory)).get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return write_idx_dataset(tmp_path_factory.mktemp("data"))


def run(config, out, idx_dir, **options):
    return run_local_sweep(
        config, out=out, data_dir=idx_dir, wandb_mode="disabled", figures=False, **options
    )


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, spec, expected",
    [
        ("optimizer", {"values": ["adam", "nadam"]}, CategoricalDistribution(("adam", "nadam"))),
        (
            "batch_size",
            {"distribution": "categorical", "values": [16, 32]},
            CategoricalDistribution((16, 32)),
        ),
        ("num_layers", {"distribution": "int_uniform", "min": 1, "max": 5}, IntDistribution(1, 5)),
        ("num_layers", {"min": 1, "max": 5}, IntDistribution(1, 5)),
        (
            "momentum",
            {"distribution": "uniform", "min": 0.1, "max": 0.9},
            FloatDistribution(0.1, 0.9),
        ),
        ("momentum", {"min": 0.1, "max": 0.9}, FloatDistribution(0.1, 0.9)),
        (
            "momentum",
            {"distribution": "q_uniform", "min": 0, "max": 0.75, "q": 0.25},
            FloatDistribution(0, 0.75),  # then quantised, as W&B does: round(x / q) * q
        ),
        (
            "learning_rate",
            {"distribution": "log_uniform_values", "min": "1e-4", "max": 1e-2},
            FloatDistribution(1e-4, 1e-2, log=True),
        ),
        (
            "learning_rate",
            {"distribution": "log_uniform", "min": math.log(1e-4), "max": math.log(1e-2)},
            FloatDistribution(1e-4, 1e-2, log=True),
        ),
    ],
)
def test_each_supported_distribution_becomes_the_matching_optuna_distribution(name, spec, expected):
    distribution = sweep_config(**{name: spec}).distributions()[name]
    assert type(distribution) is type(expected)
    for attribute in ("choices", "low", "high", "log", "step"):
        got, want = getattr(distribution, attribute, None), getattr(expected, attribute, None)
        assert got == (pytest.approx(want) if isinstance(want, float) else want), attribute


def test_constants_are_fixed_settings_and_yaml_number_strings_are_numbers():
    config = parse_sweep_config(
        {
            "method": "random",
            "metric": {"name": "val_loss"},
            "project": "proj",
            "parameters": {
                "learning_rate": {"value": "1e-3"},
                "hidden_size": {"distribution": "constant", "value": [64, 32]},
            },
        }
    )
    assert config.parameters == {}
    assert config.constants == {
        "wandb_project": "proj",
        "learning_rate": 1e-3,
        "hidden_size": [64, 32],
    }
    assert config.goal == "minimize"  # the W&B default


def test_grid_search_space_and_hyperband_pruner_follow_the_config():
    config = parse_sweep_config(
        {
            "method": "grid",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
            "parameters": {
                "epochs": {"values": [4, 8]},
                "num_layers": {"min": 1, "max": 3},
                "momentum": {"distribution": "q_uniform", "min": 0.5, "max": 0.9, "q": 0.2},
            },
        }
    )
    assert config.grid() == {"epochs": [4, 8], "num_layers": [1, 2, 3], "momentum": [0.5, 0.7, 0.9]}
    assert config.grid_size() == 18
    assert isinstance(make_sampler(config), optuna.samplers.GridSampler)
    pruner = make_pruner(config)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (2, 8, 2)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"parameters": {"learning_rate": {"distribution": "inv_log_uniformm", "min": -9}}},
            "'inv_log_uniformm'",
        ),
        (
            {"parameters": {"learning_rate": {"distribution": "normal", "mu": 0, "min": 1}}},
            "'min' does not apply to distribution normal",
        ),
        ({"parameters": {"layers": {"values": [1, 2]}}}, "'layers' is not a fastmlp setting"),
        ({"parameters": {"optimizer": {"values": ["adam", "lion"]}}}, "'optimizer'"),
        (
            {
                "method": "grid",
                "parameters": {"optimizer": {"values": ["adam"], "probabilities": [1.0]}},
            },
            "drop its probabilities",
        ),
        (
            {
                "method": "grid",
                "parameters": {
                    "momentum": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.3}
                },
            },
            "'momentum'",
        ),
        ({"parameters": {"learning_rate": {"min": 0.1, "max": 0.01}}}, "'learning_rate'"),
        ({"method": "unknown"}, "method"),
        (
            {"method": "grid", "parameters": {"learning_rate": {"min": 0.01, "max": 0.1}}},
            "'learning_rate'",
        ),
        ({"metric": {"goal": "maximize"}}, "metric"),
        ({"metric": {"name": "val_f1", "goal": "maximize"}}, "'val_f1'"),
        ({"metric": {"name": "val_accuracy", "goal": "maximize", "target": 0.9}}, "target"),
        ({"early_terminate": {"type": "envelope"}}, "'envelope'"),
        ({"early_terminate": {"type": "hyperband", "min_iter": 1, "s": 2}}, "give max_iter"),
        ({"early_terminate": {"type": "hyperband", "max_iter": 9}}, "min_iter"),
        ({"programme": "train.py"}, "'programme'"),
        ({"run_cap": 0}, "run_cap"),
    ],
)
def test_what_the_local_engine_cannot_honour_is_an_error_naming_the_key(change, message):
    raw = {
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"optimizer": {"values": ["adam"]}},
    }
    with pytest.raises(SweepConfigError, match=message):
        parse_sweep_config({**raw, **change})


def test_shipped_configs_are_valid():
    classic = read_sweep_config(REPO / "sweeps" / "classic.yaml")
    assert (
        classic.method == "bayes"
        and classic.metric == "val_accuracy"
        and classic.goal == "maximize"
    )
    assert classic.constants["val_fraction"] == 0.1 and classic.hyperband is not None
    assert classic.parameters["optimizer"].choices == (
        "sgd",
        "momentum",
        "nag",
        "rmsprop",
        "adam",
        "nadam",
    )
    assert classic.parameters["learning_rate"].choices == (1e-3, 1e-4)
    assert len(classic.parameters) == 9
    quick = read_sweep_config(REPO / "sweeps" / "quick.yaml")
    assert quick.max_epochs() <= 3 and quick.run_cap


# --- running sweeps ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_sweep(idx_dir, tmp_path_factory):
    """Six trials by two worker processes sharing one journal."""
    out = tmp_path_factory.mktemp("sweeps")
    config = sweep_config(
        name="shared",
        hidden_size={"values": [8, 16]},
        optimizer={"values": ["adam", "nadam"]},
        learning_rate={"distribution": "log_uniform_values", "min": 1e-3, "max": 3e-2},
    )
    summary = run(config, out, idx_dir, count=6, workers=2)
    return out / "shared", summary


def test_two_workers_sharing_a_journal_record_every_trial_once(shared_sweep):
    directory, summary = shared_sweep
    trials = trials_of(directory.parent, "shared")
    assert sorted(trial.number for trial in trials) == list(range(6))
    assert {trial.state.name for trial in trials} == {"COMPLETE"}
    assert summary.progress.complete == 6
    assert len({trial.user_attrs["pid"] for trial in trials}) == 2  # both workers ran trials
    run_dirs = [directory / trial.user_attrs["run_dir"] for trial in trials]
    assert len(set(run_dirs)) == 6
    assert sorted(path.name for path in (directory / "runs").iterdir()) == sorted(
        p.name for p in run_dirs
    )
    for trial, run_dir in zip(trials, run_dirs):
        assert run_dir.name.endswith(f"_t{trial.number}") and run_dir.name.startswith("hl_1_sz_")
        summary_json = json.loads((run_dir / "summary.json").read_text())
        assert summary_json["status"] == "finished"
        assert trial.value == summary_json["val_accuracy"]


def test_a_repeated_configuration_reuses_the_earlier_result_without_training(idx_dir, tmp_path):
    config = sweep_config(method="random", hidden_size={"values": [8, 16]})
    run(config, tmp_path, idx_dir, count=5)
    trials = trials_of(tmp_path, "test")
    assert len(trials) == 5 and {trial.state.name for trial in trials} == {"COMPLETE"}
    first = {}
    for trial in sorted(trials, key=lambda trial: trial.number):
        size = trial.params["hidden_size"]
        if size in first:
            assert trial.user_attrs["repeat_of"] == first[size].number
            assert trial.value == first[size].value
        else:
            assert "repeat_of" not in trial.user_attrs
            first[size] = trial
    assert len(list((tmp_path / "test" / "runs").iterdir())) == len(first)


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(idx_dir, tmp_path):
    config = sweep_config(
        method="grid",
        learning_rate={"values": [1e9, 1e-3]},
        optimizer={"value": "sgd"},
        activation={"value": "identity"},
    )
    summary = run(config, tmp_path, idx_dir)
    states = {trial.params["learning_rate"]: trial for trial in trials_of(tmp_path, "test")}
    assert states[1e9].state.name == "FAIL"
    assert states[1e9].user_attrs["failure"].startswith("diverged at epoch 1")
    assert states[1e-3].state.name == "COMPLETE"
    assert summary.progress.failed == 1 and summary.progress.complete == 1
    diverged = json.loads(
        (tmp_path / "test" / states[1e9].user_attrs["run_dir"] / "summary.json").read_text()
    )
    assert diverged["status"] == "diverged"


def test_hyperband_prunes_weak_trials_on_the_per_epoch_metric(idx_dir, tmp_path):
    config = parse_sweep_config(
        {
            "name": "test",
            "method": "grid",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
            "parameters": {
                **TINY,
                "epochs": {"value": 4},
                "hidden_size": {"values": [8, 16]},
                "learning_rate": {"values": [3e-2, 1e-2, 1e-7, 1e-8]},
            },
        }
    )
    summary = run(config, tmp_path, idx_dir)
    trials = trials_of(tmp_path, "test")
    pruned = [trial for trial in trials if trial.state.name == "PRUNED"]
    assert pruned and summary.progress.pruned == len(pruned)
    assert summary.progress.complete + len(pruned) == 8
    for trial in pruned:
        assert trial.params["learning_rate"] < 1e-3
        run_summary = json.loads(
            (tmp_path / "test" / trial.user_attrs["run_dir"] / "summary.json").read_text()
        )
        assert run_summary["status"] == "pruned" and run_summary["epochs_completed"] < 4
        assert trial.value == run_summary["val_accuracy"]


def test_running_again_continues_the_sweep_up_to_its_total(idx_dir, tmp_path):
    config = sweep_config(hidden_size={"values": [8, 16]})
    assert run(config, tmp_path, idx_dir, count=2).progress.complete == 2
    assert run(config, tmp_path, idx_dir, count=4).progress.complete == 4
    assert run(config, tmp_path, idx_dir, count=4).progress.complete == 4
    assert len(trials_of(tmp_path, "test")) == 4


def test_a_resumed_grid_sweep_runs_only_the_points_left(idx_dir, tmp_path):
    config = sweep_config(
        method="grid", hidden_size={"values": [8, 16]}, batch_size={"values": [16, 32]}
    )
    run(config, tmp_path, idx_dir, count=3)
    summary = run(config, tmp_path, idx_dir)  # the count defaults to the grid size
    points = [
        (t.params["hidden_size"], t.params["batch_size"]) for t in trials_of(tmp_path, "test")
    ]
    assert summary.count == 4 and sorted(points) == [(8, 16), (8, 32), (16, 16), (16, 32)]


def test_a_trial_left_running_by_a_killed_worker_is_failed_and_run_again(idx_dir, tmp_path):
    config = sweep_config(method="grid", hidden_size={"values": [8, 16]})
    run(config, tmp_path, idx_dir, count=1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    study = load_study("test", open_storage(SweepDirectory(tmp_path / "test")))
    orphan = study.ask(config.distributions())
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", int(dead.stdout))

    summary = run(config, tmp_path, idx_dir)
    trials = trials_of(tmp_path, "test")
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs["interrupted"]
    (rerun,) = [trial for trial in trials if trial.user_attrs.get("retry_of") == 1]
    assert rerun.state.name == "COMPLETE" and rerun.params == trials[1].params
    assert summary.progress.complete == 2 and summary.progress.interrupted == 1


def interrupt_at_epoch_2(config, out, idx_dir, monkeypatch):
    """Run the sweep ``config`` until Ctrl-C in its first trial's second epoch."""
    from fastmlp.sweep import trial as trial_module

    reporter = trial_module.metric_reporter
    monkeypatch.setattr(trial_module, "metric_reporter", interrupting_at(2, reporter))
    with pytest.raises(KeyboardInterrupt):
        run(config, out, idx_dir)
    monkeypatch.setattr(trial_module, "metric_reporter", reporter)


def test_a_retried_trial_continues_its_interrupted_run_from_the_checkpoint(
    idx_dir, tmp_path, monkeypatch, capsys
):
    """Ctrl-C at epoch 2 of 4: the retry resumes that run directory (not epoch 1 again),
    reports epochs 1-2 to Optuna before its first new epoch, and ends bit for bit where an
    uninterrupted trial of the same parameters ends."""
    from fastmlp.runs import experiment

    config = sweep_config(method="grid", epochs={"value": 4}, hidden_size={"values": [8]})
    run(config, tmp_path / "whole", idx_dir)
    interrupt_at_epoch_2(config, tmp_path / "cut", idx_dir, monkeypatch)
    resumed, trained = [], []
    original = experiment.run_experiment

    def spy(settings, **options):
        resumed.append(options.get("resume"))
        callbacks = [*options.pop("callbacks"), lambda metrics: trained.append(metrics.epoch)]
        return original(settings, callbacks=callbacks, **options)

    monkeypatch.setattr(experiment, "run_experiment", spy)
    assert run(config, tmp_path / "cut", idx_dir).progress.complete == 1
    cut, retry = trials_of(tmp_path / "cut", "test")
    assert cut.user_attrs["interrupted"] and retry.user_attrs["retry_of"] == cut.number
    assert retry.user_attrs["run_dir"] == cut.user_attrs["run_dir"]
    assert resumed == [tmp_path / "cut" / "test" / cut.user_attrs["run_dir"]]
    assert trained == [3, 4] and retry.user_attrs["continued_from_epoch"] == 2
    assert f"continuing trial {cut.number} after epoch 2" in capsys.readouterr().out
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    (whole,) = trials_of(tmp_path / "whole", "test")
    assert retry.intermediate_values == whole.intermediate_values
    assert retry.value == whole.value
    lines = tmp_path / "cut" / "test" / retry.user_attrs["run_dir"] / "metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in lines.read_text().splitlines()] == [1, 2, 3, 4]


def test_a_retry_whose_run_cannot_be_continued_trains_afresh(
    idx_dir, tmp_path, monkeypatch, capsys
):
    config = sweep_config(method="grid", epochs={"value": 3}, hidden_size={"values": [8]})
    interrupt_at_epoch_2(config, tmp_path, idx_dir, monkeypatch)
    cut = trials_of(tmp_path, "test")[0]
    (tmp_path / "test" / cut.user_attrs["run_dir"] / "checkpoint.npz").write_bytes(b"not a zip")
    assert run(config, tmp_path, idx_dir).progress.complete == 1
    assert "cannot continue" in capsys.readouterr().err
    cut, retry = trials_of(tmp_path, "test")
    assert (
        retry.state.name == "COMPLETE" and retry.user_attrs["run_dir"] != cut.user_attrs["run_dir"]
    )
    assert sorted(retry.intermediate_values) == [1, 2, 3]


def test_ctrl_c_while_a_trial_reports_to_optuna_waits_until_the_report_is_written(
    idx_dir, tmp_path, monkeypatch
):
    """A signal landing inside a trial's journal write (where Optuna's file lock would fail
    with an error of its own and the trial be recorded as failed) is held until the write
    is done: the trial is interrupted, with the epoch it was reporting reported."""
    original = optuna.trial.Trial.report

    def signalled(self, value, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        original(self, value, step)

    monkeypatch.setattr(optuna.trial.Trial, "report", signalled)
    config = sweep_config(method="grid", epochs={"value": 4}, hidden_size={"values": [8]})
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path, idx_dir)
    cut = trials_of(tmp_path, "test")[0]
    assert cut.user_attrs["interrupted"] and sorted(cut.intermediate_values) == [1, 2]


def test_a_trial_names_its_run_directory_as_it_starts(idx_dir, tmp_path, monkeypatch):
    """So that the retry of a trial whose worker was killed (kill -9) finds the run."""
    from fastmlp.sweep import trial as trial_module

    seen = []
    reporter = trial_module.metric_reporter

    def recording(trial, metric):
        def report(metrics):
            seen.append(trial.user_attrs.get("run_dir"))
            reporter(trial, metric)(metrics)

        return report

    monkeypatch.setattr(trial_module, "metric_reporter", recording)
    run(sweep_config(method="grid", hidden_size={"values": [8]}), tmp_path, idx_dir)
    (trial,) = trials_of(tmp_path, "test")
    assert seen == [trial.user_attrs["run_dir"]] and seen[0].startswith("runs/")


def test_a_trial_whose_worker_was_killed_before_naming_itself_is_failed_and_run_again(
    idx_dir, tmp_path
):
    """A kill between asking for a trial and naming the worker in it (both under the ask
    locks) leaves a RUNNING trial with no worker: the next worker to ask fails it."""
    config = sweep_config(method="grid", hidden_size={"values": [8, 16]})
    run(config, tmp_path, idx_dir, count=1)
    study = load_study("test", open_storage(SweepDirectory(tmp_path / "test")))
    study.ask(config.distributions())  # and killed before set_user_attr

    summary = run(config, tmp_path, idx_dir)
    trials = trials_of(tmp_path, "test")
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs["interrupted"]
    assert "before it started the trial" in trials[1].user_attrs["failure"]
    assert "RUNNING" not in {trial.state.name for trial in trials}
    assert summary.progress.complete == 2


def test_sweep_with_the_same_name_but_other_parameters_is_refused(idx_dir, tmp_path):
    run(sweep_config(hidden_size={"values": [8, 16]}), tmp_path, idx_dir, count=1)
    with pytest.raises(SweepError, match="different configuration"):
        run(sweep_config(hidden_size={"values": [8, 32]}), tmp_path, idx_dir, count=2)


def test_a_trial_killed_outright_is_continued_from_its_last_checkpoint(tmp_path):
    """kill -9 of the worker mid-trial: the next start fails the trial it left running and
    its retry continues the run directory from the last checkpoint, every epoch's metrics
    line exactly once."""
    data = write_idx_dataset(tmp_path / "data", train=600, test=100)
    raw = {"name": "killed", "method": "grid",
           "metric": {"name": "val_accuracy", "goal": "maximize"},
           "parameters": {**TINY, "epochs": {"value": 300}, "batch_size": {"value": 16},
                          "hidden_size": {"values": [8]}}}  # fmt: skip
    config_path = tmp_path / "killed.yaml"
    config_path.write_text(json.dumps(raw))  # JSON is YAML
    command = [sys.executable, "-m", "fastmlp", "sweep", str(config_path), "--data_dir",
               str(data), "--out", str(tmp_path / "sweeps"), "--wandb_mode",
               "disabled"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    runs = tmp_path / "sweeps" / "killed" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = list(runs.glob("*/metrics.jsonl")) if runs.exists() else []
        if found and len(found[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    process.kill()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr
    summary = run(parse_sweep_config(raw), tmp_path / "sweeps", data)
    assert summary.progress.complete == 1 and summary.progress.interrupted == 1
    killed, retry = trials_of(tmp_path / "sweeps", "killed")
    assert killed.state.name == "FAIL" and "pid" in killed.user_attrs["failure"]
    assert retry.user_attrs["run_dir"] == killed.user_attrs["run_dir"]
    assert retry.user_attrs["continued_from_epoch"] >= 2
    metrics = tmp_path / "sweeps" / "killed" / retry.user_attrs["run_dir"] / "metrics.jsonl"
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, 301)) and sorted(retry.intermediate_values) == epochs


@pytest.mark.parametrize(
    ("number", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_ctrl_c_or_sigterm_keep_finished_trials_and_the_same_command_finishes_the_sweep(
    tmp_path, number, status
):
    data = write_idx_dataset(tmp_path / "data", train=2000, test=100)
    config = tmp_path / "slow.yaml"
    config.write_text(
        "method: random\nmetric: {name: val_accuracy, goal: maximize}\nparameters:\n"
        "  dataset: {value: mnist}\n  num_layers: {value: 1}\n  hidden_size: {values: [8, 16]}\n"
        "  epochs: {values: [30, 60]}\n  batch_size: {value: 16}\n  device: {value: cpu}\n"
    )
    command = [
        sys.executable,
        "-m",
        "fastmlp",
        "sweep",
        str(config),
        "--count",
        "6",
        "--workers",
        "2",
        "--out",
        str(tmp_path / "sweeps"),
        "--data_dir",
        str(data),
        "--wandb_mode",
        "disabled",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path))
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    journal = tmp_path / "sweeps" / "slow" / "study.journal"

    def training(trial):
        """Whether ``trial`` is running with at least 10 of its epochs still to train."""
        run_dir = trial.user_attrs.get("run_dir")
        if trial.state.name != "RUNNING" or not run_dir:
            return False
        metrics = tmp_path / "sweeps" / "slow" / run_dir / "metrics.jsonl"
        done = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        return 1 <= done <= trial.params["epochs"] - 10

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists():
            try:
                trials = trials_of(tmp_path / "sweeps", "slow")
            except SweepError:  # the journal exists a moment before the study in it
                trials = []
            # the signal lands in the middle of a trial's training, after one trial finished
            if any(t.state.name == "COMPLETE" for t in trials) and any(map(training, trials)):
                break
        time.sleep(0.02)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert "interrupted" in stderr
    trials = trials_of(tmp_path / "sweeps", "slow")
    assert "RUNNING" not in {trial.state.name for trial in trials}
    assert any(trial.state.name == "COMPLETE" for trial in trials)
    interrupted = [trial for trial in trials if trial.user_attrs.get("interrupted")]
    states = [(t.number, t.state.name, t.user_attrs.get("failure")) for t in trials]
    assert interrupted and all(t.state.name == "FAIL" for t in interrupted), (states, stderr)

    finished = subprocess.run(
        command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    trials = trials_of(tmp_path / "sweeps", "slow")
    counted = [trial for trial in trials if not trial.user_attrs.get("interrupted")]
    outcomes = [(t.number, t.state.name, t.user_attrs.get("failure")) for t in counted]
    assert len(counted) == 6 and {t.state.name for t in counted} == {"COMPLETE"}, outcomes
    rerun = {trial.user_attrs.get("retry_of") for trial in counted}
    assert {trial.number for trial in interrupted} <= rerun


# --- report -----------------------------------------------------------------------------------


def test_report_writes_best_config_tables_and_plots(shared_sweep, capsys):
    directory, summary = shared_sweep
    assert main(["sweep", "report", str(directory), "--wandb_mode", "disabled"]) == 0
    report = directory / "report"
    for name in (
        "best.json",
        "trials.csv",
        "trials.md",
        "parallel_coordinates.png",
        "accuracy_vs_time.png",
        "importance.png",
    ):
        assert (report / name).stat().st_size > 0, name
    best = json.loads((report / "best.json").read_text())
    assert set(best) <= set(settings())
    assert normalize_config(best)["optimizer"] in ("adam", "nadam")
    best_trial = trials_of(directory.parent, "shared")[summary.best_number]
    assert best["learning_rate"] == best_trial.params["learning_rate"]
    assert len((report / "trials.csv").read_text().splitlines()) == 1 + 6
    assert "fastmlp train --config" in capsys.readouterr().out


def test_training_best_json_again_repeats_the_winning_trial_exactly(
    shared_sweep, idx_dir, tmp_path
):
    """best.json carries the worker's BLAS thread count, which the rounding depends on."""
    import numpy as np

    import fastmlp

    directory, summary = shared_sweep
    assert main(["sweep", "report", str(directory), "--wandb_mode", "disabled"]) == 0
    best = json.loads((directory / "report" / "best.json").read_text())
    assert best["blas_threads"] == max(1, (os.cpu_count() or 1) // 2)
    status = main(
        ["train", "--config", str(directory / "report" / "best.json"), "--data_dir",
         str(idx_dir), "--out", str(tmp_path), "--wandb_mode", "disabled",
         "--no_progress"]
    )  # fmt: skip
    assert status == 0
    (again,) = tmp_path.iterdir()
    trial = trials_of(directory.parent, "shared")[summary.best_number]
    original = directory / trial.user_attrs["run_dir"]
    assert json.loads((again / "summary.json").read_text())["val_accuracy"] == trial.value
    np.testing.assert_array_equal(
        fastmlp.load_checkpoint(again / "checkpoint.npz").model.params,
        fastmlp.load_checkpoint(original / "checkpoint.npz").model.params,
    )
    recorded = json.loads((again / "config.json").read_text())["environment"]
    for key in ("fastmlp_version", "packages", "blas", "device", "dtype", "seed"):
        assert recorded[key] is not None, key
    assert recorded["blas"]["threads"] == best["blas_threads"]


def test_report_logs_its_figures_and_table_to_wandb_when_it_is_on(
    shared_sweep, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    for variable in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    directory, _ = shared_sweep
    report = write_report(directory, wandb_mode="offline")
    media = Path(report.wandb_dir) / "files" / "media"
    images = sorted(path.name.split("_0_")[0] for path in (media / "images").iterdir())
    assert images == ["accuracy_vs_time", "importance", "parallel_coordinates"]
    assert list((media / "table").glob("trials_*.table.json"))


def test_report_of_a_sweep_with_failures_and_no_completed_trial(idx_dir, tmp_path):
    config = sweep_config(
        method="grid",
        learning_rate={"values": [1e9]},
        optimizer={"value": "sgd"},
        activation={"value": "identity"},
    )
    run(config, tmp_path, idx_dir)
    report = write_report(tmp_path / "test", wandb_mode="disabled")
    assert report.best is None and "best" not in report.files
    assert "diverged" in (tmp_path / "test" / "report" / "trials.md").read_text()
    assert (tmp_path / "test" / "report" / "accuracy_vs_time.png").exists()


# --- command line and the W&B engine ----------------------------------------------------------


def test_a_sweep_over_zero_hidden_layers_runs_softmax_regression(idx_dir, tmp_path):
    config = sweep_config(
        "grid", name="flat", num_layers={"values": [0, 1]}, hidden_size={"value": 8}
    )
    summary = run(config, tmp_path, idx_dir, count=2)
    assert summary.progress.complete == 2
    names = sorted(path.name for path in (tmp_path / "flat" / "runs").iterdir())
    assert any(name.startswith("hl_0_bs_32_o_adam") for name in names), names


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ("epochs: {value: .inf}", "epochs must be a positive integer, got inf"),
        ("epochs: {value: true}", "epochs must be a positive integer, got the boolean True"),
        ("epochs: {values: [1, .inf]}", "epochs must be a positive integer, got inf"),
    ],
)
def test_absurd_sweep_values_are_one_line_errors(tmp_path, capsys, parameters, message):
    config = tmp_path / "absurd.yaml"
    config.write_text(
        f"method: random\nmetric: {{name: val_accuracy}}\nparameters: {{{parameters}}}\n"
    )
    assert main(["sweep", str(config), "--count", "1", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_unsupported_config_is_one_line_on_stderr_with_status_2(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "method: random\nmetric: {name: val_accuracy}\n"
        "parameters: {learning_rate: {distribution: inv_log_uniformm, min: -9, max: -4}}\n"
    )
    assert main(["sweep", str(config), "--count", "1", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "inv_log_uniform" in error
    assert main(["sweep", "report", str(tmp_path / "missing")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_wandb_engine_without_an_account_fails_fast_with_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    for variable in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    config = read_sweep_config(REPO / "sweeps" / "quick.yaml")
    started = time.monotonic()
    with pytest.raises(SweepError, match="wandb login"):
        run_wandb_sweep(config, out=tmp_path)
    assert (
        main(
            [
                "sweep",
                str(REPO / "sweeps" / "quick.yaml"),
                "--engine",
                "wandb",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--engine local" in error
    assert time.monotonic() - started < 20
    assert not (tmp_path / "quick").exists()


def test_wandb_engine_creates_the_sweep_once_and_runs_each_trial_as_a_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    import yaml

    import fastmlp.runs.experiment
    from fastmlp.sweep import wandb_engine

    created, runs = [], []

    def agent(sweep_id, function, project, entity, count):
        for _ in range(count):  # what wandb.agent does for each run W&B hands out
            params = tmp_path / f"params-{len(runs)}.yaml"
            values = {
                "wandb_version": 1,
                "learning_rate": {"value": 0.01 * (len(runs) + 1)},
                "optimizer": {"value": "nadam"},
            }
            params.write_text(yaml.safe_dump(values))
            monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
            function()

    monkeypatch.setattr(wandb_engine, "require_wandb_online", lambda mode: None)
    monkeypatch.setattr(
        wandb, "sweep", lambda sweep, project, entity: created.append(sweep) or "s1"
    )
    monkeypatch.setattr(wandb, "agent", agent)
    monkeypatch.setattr(
        fastmlp.runs.experiment, "run_experiment", lambda s, **kw: runs.append((s, kw))
    )
    config = sweep_config(
        name="wb",
        learning_rate={"values": [0.01, 0.02, 0.03]},
        optimizer={"values": ["adam", "nadam"]},
    )
    assert run_wandb_sweep(config, out=tmp_path, count=2, device="cpu") == "s1"
    assert run_wandb_sweep(config, out=tmp_path, count=1) == "s1"  # continues the same sweep
    assert len(created) == 1 and created[0]["parameters"] == config.raw["parameters"]
    assert [settings["learning_rate"] for settings, _ in runs] == [0.01, 0.02, 0.03]
    settings, options = runs[0]
    assert (settings["dataset"], settings["optimizer"], settings["device"]) == (
        "mnist",
        "nadam",
        "cpu",
    )
    assert options["out"] == tmp_path / "wb" / "runs" and options["group"] == "wb"
    assert options["wandb_mode"] == "online"
    assert json.loads((tmp_path / "wb" / "sweep.json").read_text())["wandb_sweep_id"] == "s1"


# --- found by the adversarial probe -------------------------------------------------------------

SWEEP_HEAD = (
    "method: {method}\nmetric: {{name: val_accuracy, goal: maximize}}\nrun_cap: 2\n"
    "parameters:\n  dataset: {{value: mnist}}\n  device: {{value: cpu}}\n"
    "  epochs: {{value: 1}}\n  num_layers: {{value: 1}}\n  batch_size: {{value: 64}}\n"
)


@pytest.mark.parametrize(
    ("method", "lines", "message"),
    [
        ("random", "  learning_rate: {distribution: q_uniform, min: 0, max: 1, q: 0}",
         "q must be > 0"),
        ("random", "  learning_rate: {distribution: log_uniform, min: 1000, max: 2000}",
         "exp(2000) overflows"),
        ("grid", "  seed: {min: 0, max: 100000000}", "more than 1,000,000"),
        ("grid", "  learning_rate: {distribution: q_uniform, min: 0, max: 1, q: 1.0e-9}",
         "more than 1,000,000"),
        ("random", "  hidden_size: {value: [16, 32]}", "gives 2 hidden sizes, but num_layers is 1"),
        ("random", "  weight_decay: {value: " + "[" * 50000 + "]" * 50000 + "}",
         "nested too deeply"),
        ("random", "  epochs: {value: 2}\n  optimizer: {values: [adam]}",
         "given twice"),
    ],
    ids=["q_zero", "log_overflow", "grid_range", "grid_tiny_q", "constants_clash", "deep",
         "duplicate_key"],
)  # fmt: skip
def test_broken_sweep_configs_are_one_line_errors_found_at_once(
    tmp_path, capsys, method, lines, message
):
    config = tmp_path / "bad.yaml"
    config.write_text(SWEEP_HEAD.format(method=method) + lines + "\n")
    started = time.monotonic()
    assert main(["sweep", str(config), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    assert time.monotonic() - started < 20
    assert not (tmp_path / "out").exists()


def test_hyperband_that_could_never_stop_a_trial_is_refused():
    with pytest.raises(SweepConfigError, match="could never stop a trial"):
        parse_sweep_config(
            {"method": "random", "metric": {"name": "val_accuracy"},
             "early_terminate": {"type": "hyperband", "min_iter": 5},
             "parameters": {**TINY, "epochs": {"value": 3}}}
        )  # fmt: skip


@pytest.mark.parametrize("device", ["tpu", "cuda:²"])
def test_a_sweep_on_a_device_that_does_not_exist_stops_before_any_trial(tmp_path, capsys, device):
    config = tmp_path / "ok.yaml"
    config.write_text(SWEEP_HEAD.format(method="random") + "  hidden_size: {values: [8, 16]}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--device", device, "--out", str(out)]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert not (out / "ok" / "runs").exists()


def test_yaml_dates_in_a_sweep_config_are_taken_as_text(idx_dir, tmp_path):
    config = tmp_path / "dated.yaml"
    config.write_text(
        SWEEP_HEAD.format(method="random").replace("run_cap: 2", "run_cap: 1")
        + "  hidden_size: {values: [8]}\ndescription: 2020-01-01\n"
    )
    summary = run(read_sweep_config(config), tmp_path, idx_dir)
    assert summary.progress.complete == 1
    assert (
        json.loads((tmp_path / "dated" / "sweep.json").read_text())["config"]["description"]
        == "2020-01-01"
    )


@pytest.mark.parametrize("storage", ["/dev/full", "/dev/zero", "."])
def test_a_storage_that_is_not_a_journal_file_is_refused(tmp_path, capsys, storage):
    config = tmp_path / "ok.yaml"
    config.write_text(SWEEP_HEAD.format(method="random") + "  hidden_size: {values: [8]}\n")
    assert main(["sweep", str(config), "--storage", storage, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "--storage" in error and len(error.splitlines()) == 1


@pytest.fixture
def damaged_sweep(shared_sweep, tmp_path):
    import shutil

    directory, _ = shared_sweep
    copy = tmp_path / "shared"
    shutil.copytree(directory, copy)
    return copy


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "sweep.json").write_text("{bad"), "sweep.json"),
        (lambda d: (d / "sweep.json").write_text("{}"), "not a fastmlp sweep file"),
        (lambda d: (d / "sweep.json").write_text("[1]"), "not a fastmlp sweep file"),
        (lambda d: (d / "study.journal").write_bytes(os.urandom(5000)), "is corrupt"),
        (lambda d: (d / "study.journal").unlink(), "does not exist"),
    ],
    ids=["sweep_json_torn", "sweep_json_empty", "sweep_json_list", "journal_garbage",
         "journal_missing"],
)  # fmt: skip
def test_a_damaged_sweep_directory_is_a_one_line_error_for_the_report(
    damaged_sweep, capsys, damage, message
):
    damage(damaged_sweep)
    assert main(["sweep", "report", str(damaged_sweep), "--wandb_mode", "disabled"]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    if message == "does not exist":
        assert not (damaged_sweep / "study.journal").exists()  # the report created nothing


def test_schedules_early_stopping_and_smoothing_are_sweep_parameters(idx_dir, tmp_path):
    config = sweep_config(
        name="training",
        epochs={"value": 3},
        lr_schedule={"values": ["cosine", "step", "one_cycle"]},
        dropout={"values": [0.0, 0.2]},
        label_smoothing={"values": [0.0, 0.1]},
        early_stopping={"value": 2},
        restore_best={"values": [True, False]},
        clip_grad_norm={"values": [1.0]},
    )
    run(config, tmp_path, idx_dir, count=4)
    trials = trials_of(tmp_path, "training")
    assert {trial.state.name for trial in trials} == {"COMPLETE"}
    for trial in trials:
        run_dir = tmp_path / "training" / trial.user_attrs["run_dir"]
        stored = json.loads((run_dir / "config.json").read_text())
        for key in ("lr_schedule", "dropout", "label_smoothing", "restore_best"):
            assert stored[key] == trial.params[key]
        summary = json.loads((run_dir / "summary.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        (evaluated,) = [row for row in rows if row["epoch"] == summary["evaluated_epoch"]]
        assert trial.value == evaluated["val_accuracy"]


def test_a_trial_is_named_after_every_swept_setting_even_at_its_default(idx_dir, tmp_path):
    config = sweep_config(name="named", seed={"values": [0]}, dropout={"values": [0.0]})
    run(config, tmp_path, idx_dir, count=1)
    (run_dir,) = (tmp_path / "named" / "runs").iterdir()
    # 0 is the default of both: a plain run would not show them
    assert "_seed_0" in run_dir.name and "_dropout_0" in run_dir.name, run_dir.name
