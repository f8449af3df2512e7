"""Runs that keep their best epoch, stop early, follow a schedule and resume through all three."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.runs.experiment import run_experiment
from fastmlp.runs.naming import shortened
from tests.datasets import write_idx_dataset

SMALL = {"epochs": 6, "batch_size": 32, "num_layers": 1, "hidden_size": 16, "device": "cpu",
         "dataset": "mnist", "seed": 2}  # fmt: skip
COMMON = {"wandb_mode": "disabled", "progress": False, "figures": False, "verbose": False}


@pytest.fixture
def idx_dir(tmp_path):
    return write_idx_dataset(tmp_path / "data")


def interrupt_after(epoch):
    def callback(metrics):
        if metrics.epoch == epoch:
            raise KeyboardInterrupt

    return callback


def test_best_npz_holds_the_best_epoch_and_restore_best_evaluates_it(idx_dir, tmp_path):
    settings = {**SMALL, "learning_rate": 0.05, "restore_best": True, "monitor": "val_loss"}
    result = run_experiment(settings, out=tmp_path / "runs", data_dir=idx_dir, **COMMON)
    rows = result.run_dir.read_metrics()
    best = min(rows, key=lambda row: row["val_loss"])["epoch"]
    checkpoint = fastmlp.load_checkpoint(result.run_dir.best_path)
    assert checkpoint.epoch == best
    summary = result.summary
    assert summary["best_epoch"] == best and summary["evaluated_epoch"] == best
    assert summary["best_epoch_val_loss"] == min(row["val_loss"] for row in rows)
    assert summary["val_accuracy"] == rows[-1]["val_accuracy"]
    np.testing.assert_array_equal(result.model.params, checkpoint.model.params)
    dataset = fastmlp.data.load("mnist", data_dir=idx_dir)
    _, accuracy = checkpoint.model.evaluate(dataset.x_test, dataset.y_test)
    assert summary["test_accuracy"] == accuracy


def test_early_stopping_ends_the_run_at_the_right_epoch(idx_dir, tmp_path):
    settings = {**SMALL, "epochs": 40, "early_stopping": 2, "learning_rate": 0.05}
    result = run_experiment(settings, out=tmp_path / "runs", data_dir=idx_dir, **COMMON)
    rows = result.run_dir.read_metrics()
    accuracies = [row["val_accuracy"] for row in rows]
    best = int(np.argmax(accuracies)) + 1  # the first epoch of the highest accuracy
    assert result.status == "early_stopped" and len(rows) == best + 2 < 40
    assert result.summary["best_epoch"] == best == result.summary["evaluated_epoch"]
    assert "test_accuracy" in result.summary
    with pytest.raises(fastmlp.errors.UserError, match="stopped early"):
        run_experiment({}, resume=result.run_dir.path, data_dir=idx_dir, **COMMON)


@pytest.mark.parametrize(
    "extra",
    [
        {"lr_schedule": "cosine", "warmup_epochs": 2},
        {"lr_schedule": "one_cycle"},
        {"lr_schedule": "reduce_on_plateau", "lr_patience": 0, "monitor": "val_loss"},
        {
            "lr_schedule": "step",
            "lr_step_epochs": 2,
            "early_stopping": 3,
            "clip_grad_norm": 0.5,
            "label_smoothing": 0.1,
        },
    ],
    ids=["cosine-warmup", "one_cycle", "plateau", "step-early-clip-smoothing"],
)
def test_a_run_resumed_mid_schedule_is_bit_identical(idx_dir, tmp_path, extra):
    settings = {**SMALL, **extra}
    common = {**COMMON, "data_dir": idx_dir}
    full = run_experiment(settings, out=tmp_path / "full", **common)
    cut = run_experiment(settings, out=tmp_path / "cut", callbacks=[interrupt_after(3)],
                         **common)  # fmt: skip
    assert cut.status == "interrupted"
    resumed = run_experiment({}, resume=cut.run_dir.path, **common)
    np.testing.assert_array_equal(resumed.model.params, full.model.params)
    untimed = lambda rows: [  # noqa: E731
        {key: value for key, value in row.items() if key not in ("seconds", "samples_per_second")}
        for row in rows
    ]
    assert untimed(resumed.run_dir.read_metrics()) == untimed(full.run_dir.read_metrics())
    assert resumed.summary.get("best_epoch") == full.summary.get("best_epoch")
    assert resumed.summary["test_accuracy"] == full.summary["test_accuracy"]


def test_a_kill_between_checkpoint_and_best_npz_is_repaired(idx_dir, tmp_path, capsys):
    settings = {**SMALL, "restore_best": True}
    common = {**COMMON, "data_dir": idx_dir}
    cut = run_experiment(settings, out=tmp_path / "runs", callbacks=[interrupt_after(2)],
                         **common)  # fmt: skip
    rows = cut.run_dir.read_metrics()
    best = max(rows, key=lambda row: row["val_accuracy"])["epoch"]
    if best != 2:
        pytest.skip("the second epoch was not the best on this data")
    # what a kill after the checkpoint of epoch 2, before its best.npz, leaves
    stale = fastmlp.load_checkpoint(cut.run_dir.checkpoint_path)
    stale.model.params[...] = 0
    fastmlp.nn.checkpoint.save_checkpoint(cut.run_dir.best_path, stale.model, epoch=1)
    resumed = run_experiment({"epochs": 2}, resume=cut.run_dir.path, **common)
    assert "rewritten from the checkpoint of epoch 2" in capsys.readouterr().err
    assert resumed.status == "finished"
    held = fastmlp.load_checkpoint(resumed.run_dir.best_path)
    assert held.epoch == resumed.summary["best_epoch"]


def test_evaluate_uses_the_best_epoch_of_a_run_directory_and_says_so(idx_dir, tmp_path,
                                                                     capsys):  # fmt: skip
    settings = {**SMALL, "epochs": 3}
    result = run_experiment(settings, out=tmp_path / "runs", data_dir=idx_dir, **COMMON)
    capsys.readouterr()
    status = main(["evaluate", str(result.run_dir.path), "--data_dir", str(idx_dir),
                   "--device", "cpu", "--out", str(tmp_path / "eval")])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert f"evaluating the best epoch, {result.summary['best_epoch']}" in out
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["checkpoint"].endswith("best.npz")


def test_the_cli_takes_the_new_flags_and_names_the_run_after_them(idx_dir, tmp_path):
    status = main(["train", "-d", "mnist", "--data_dir", str(idx_dir), "--out",
                   str(tmp_path / "runs"), "-e", "2", "-nhl", "1", "-sz", "8", "--device", "cpu",
                   "--wandb_mode", "disabled", "--no_progress", "--lr_schedule", "cosine",
                   "--early_stopping", "3", "--restore_best", "false", "--tags", "a", "b",
                   "--label_smoothing", "0.1"])  # fmt: skip
    assert status == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == shortened(
        "hl_1_sz_8_bs_64_ac_relu_o_adam_lr_1e-3_d_mnist_e_2_label_smoothing_0.1"
        "_lr_schedule_cosine_early_stopping_3_restore_best_off"
    )
    config = json.loads((run / "config.json").read_text())
    assert config["tags"] == ["a", "b"] and config["restore_best"] is False
    named = main(["train", "-d", "mnist", "--data_dir", str(idx_dir), "--out",
                  str(tmp_path / "runs"), "-e", "1", "-nhl", "0", "--device", "cpu",
                  "--wandb_mode", "disabled", "--no_progress", "--name", "mine"])  # fmt: skip
    assert named == 0 and (tmp_path / "runs" / "mine" / "summary.json").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--early_stopping", "2", "--val_fraction", "0"], "needs a validation split"),
        (["--label_smoothing", "0.1", "-l", "mse"], "cross_entropy loss only"),
        (["--lr_schedule", "one_cycle", "--warmup_epochs", "1"], "own warm-up"),
        (["--warmup_epochs", "5", "-e", "5"], "leaves no epoch"),
        (["--restore_best", "maybe"], "true or false"),
        (["--clip_grad_norm", "0"], "> 0"),
        (["--lr_schedule", "cosin"], "did you mean cosine"),
        (["--name", "a/b"], "without /"),
        (["--name", ".hidden"], "not starting with a dot"),
        (["--lr_schedule", "one_cycle", "-e", "1", "-b", "100000"], "needs more steps"),
        (["--val_fraction", "0.00001", "--early_stopping", "2"], "leaves no validation image"),
        (["--early_stopping", "99999999999"], "at most 2147483647"),
    ],
)
def test_bad_combinations_are_one_line_errors(idx_dir, tmp_path, capsys, flags, message):
    try:
        status = main(["train", "-d", "mnist", "--data_dir", str(idx_dir), "--out",
                       str(tmp_path / "runs"), "--wandb_mode", "disabled", *flags])  # fmt: skip
    except SystemExit as usage_error:  # argparse's own check of one flag
        status = usage_error.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_the_shipped_recipe_is_a_valid_config_chosen_on_validation():
    from pathlib import Path

    from fastmlp.runs.config import TrainConfig, read_config_file

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    config = TrainConfig.from_settings(read_config_file(recipes / "fashion_mnist_best.yaml"))
    assert config.val_fraction > 0 and config.restore_best
    searched = json.loads((recipes / "search-results.json").read_text())
    best = max(searched.values(), key=lambda row: row["best_epoch_val_accuracy"])
    assert TrainConfig.from_settings(best["settings"]).to_dict() == {
        **config.to_dict(),
        "wandb_project": "fastmlp-recipe-search",
    }


# ------------------------------------------------- what an adversarial probe found (fixed)


def test_an_early_stopped_run_killed_before_its_summary_finishes_without_training(
    idx_dir, tmp_path
):
    settings = {**SMALL, "epochs": 40, "early_stopping": 2, "learning_rate": 0.05}
    done = run_experiment(settings, out=tmp_path / "runs", data_dir=idx_dir, **COMMON)
    rows = done.run_dir.read_metrics()
    done.run_dir.file("summary.json").unlink()  # what a kill during test evaluation leaves
    again = run_experiment({}, resume=done.run_dir.path, data_dir=idx_dir, **COMMON)
    assert again.status == "early_stopped"
    assert again.run_dir.read_metrics() == rows  # no epoch trained after the stop
    assert again.summary["stop_reason"] == done.summary["stop_reason"]
    assert again.summary["test_accuracy"] == done.summary["test_accuracy"]


@pytest.mark.parametrize("damage", ["garbage", "folder"])
def test_a_damaged_best_npz_is_moved_aside_and_the_run_still_finishes(idx_dir, tmp_path,
                                                                       capsys, damage):  # fmt: skip
    settings = {**SMALL, "restore_best": True}
    cut = run_experiment(settings, out=tmp_path / "runs", callbacks=[interrupt_after(3)],
                         data_dir=idx_dir, **COMMON)  # fmt: skip
    best = cut.run_dir.best_path
    best.unlink()
    if damage == "folder":
        best.mkdir()
    else:
        best.write_bytes(b"not a checkpoint")
    resumed = run_experiment({}, resume=cut.run_dir.path, data_dir=idx_dir, **COMMON)
    assert "moved aside to best.npz.bad" in capsys.readouterr().err
    assert resumed.status == "finished" and "test_accuracy" in resumed.summary
    assert cut.run_dir.file("best.npz.bad").exists()


def test_settings_edited_in_config_json_before_a_resume_are_refused(idx_dir, tmp_path):
    settings = {**SMALL, "lr_schedule": "step", "lr_gamma": 0.5, "early_stopping": 4}
    common = {**COMMON, "data_dir": idx_dir}
    for key, value in (("lr_gamma", 0.7), ("early_stopping", 2), ("seed", 9)):
        cut = run_experiment({**settings, "name": f"edit-{key}"}, out=tmp_path / "runs",
                             callbacks=[interrupt_after(2)], **common)  # fmt: skip
        config_path = cut.run_dir.file("config.json")
        config = json.loads(config_path.read_text())
        config[key] = value
        config_path.write_text(json.dumps(config))
        with pytest.raises(fastmlp.errors.UserError, match="changed after the run started"):
            run_experiment({}, resume=cut.run_dir.path, **common)


def test_a_schedule_state_of_the_wrong_shape_is_a_checkpoint_error(idx_dir, tmp_path):
    from fastmlp.nn.checkpoint import load_checkpoint, save_checkpoint

    settings = {**SMALL, "lr_schedule": "plateau", "monitor": "val_loss"}
    cut = run_experiment(settings, out=tmp_path / "runs", callbacks=[interrupt_after(2)],
                         data_dir=idx_dir, **COMMON)  # fmt: skip
    path = cut.run_dir.checkpoint_path
    checkpoint = load_checkpoint(path)
    extra = {**checkpoint.extra, "schedule": {**checkpoint.extra["schedule"], "state": [1]}}
    save_checkpoint(path, checkpoint.model, optimizer=checkpoint.optimizer,
                    epoch=checkpoint.epoch, extra=extra)  # fmt: skip
    with pytest.raises(fastmlp.nn.checkpoint.CheckpointError, match="schedule state"):
        run_experiment({}, resume=cut.run_dir.path, data_dir=idx_dir, **COMMON)


def test_a_huge_integer_in_a_config_file_is_a_one_line_error(idx_dir, tmp_path, capsys):
    for key in ("lr_step_epochs", "early_stopping", "beta1"):
        path = tmp_path / f"{key}.json"
        path.write_text(json.dumps({key: 0}).replace("0", "9" * 400))
        status = main(["train", "-d", "mnist", "--data_dir", str(idx_dir), "--config", str(path),
                       "--out", str(tmp_path / "runs"), "--wandb_mode", "disabled"])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and key in err, err
