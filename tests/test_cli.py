"""The command line: classic flags, sub-commands, one-line errors, W&B, Ctrl-C and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.data import load_idx
from tests.datasets import FILES, write_idx_dataset

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
QUICK = ["-nhl", "1", "-sz", "16", "-b", "32", "--device", "cpu", "--no_progress"]


@pytest.fixture
def idx_dir(tmp_path):
    return write_idx_dataset(tmp_path / "data")


def train_args(idx_dir, out, *extra):
    return [
        "train",
        "-d",
        "mnist",
        "--data_dir",
        str(idx_dir),
        "--out",
        str(out),
        "--wandb_mode",
        "disabled",
        *QUICK,
        *extra,
    ]


def exit_status(args) -> int:
    """main's exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(args)
    except SystemExit as exit_info:
        return exit_info.code


def only_run(out: Path) -> Path:
    (run,) = [path for path in out.iterdir() if path.is_dir()]
    return run


def test_train_saves_a_run_and_prints_the_final_table(idx_dir, tmp_path, capsys):
    assert main(train_args(idx_dir, tmp_path / "runs", "-e", "3")) == 0
    output = capsys.readouterr().out
    assert "epoch 3/3" in output
    for label in ("test accuracy", "test loss", "training time", "saved in"):
        assert label in output
    run = only_run(tmp_path / "runs")
    assert sorted(path.name for path in run.iterdir()) == [
        ".lock",
        "best.npz",
        "checkpoint.npz",
        "confident_mistakes.png",
        "config.json",
        "confusion_matrix.png",
        "metrics.jsonl",
        "summary.json",
        "training_curves.png",
    ]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_every_classic_flag_is_accepted_and_canonicalised(idx_dir, tmp_path):
    flags = [
        "train",
        "-wp",
        "proj",
        "-we",
        "team",
        "-d",
        "MNIST",
        "-e",
        "1",
        "-b",
        "16",
        "-l",
        "mse",
        "-o",
        "nesterov",
        "-lr",
        "0.01",
        "-m",
        "0.5",
        "-beta",
        "0.9",
        "-beta1",
        "0.8",
        "-beta2",
        "0.99",
        "-eps",
        "1e-6",
        "-w_d",
        "0.0005",
        "-w_i",
        "Xavier",
        "-nhl",
        "2",
        "-sz",
        "16",
        "8",
        "-a",
        "ReLU",
        "--data_dir",
        str(idx_dir),
        "--out",
        str(tmp_path / "runs"),
        "--wandb_mode",
        "disabled",
        "--device",
        "cpu",
        "--dtype",
        "float64",
        "--seed",
        "5",
        "--val_fraction",
        "0.2",
        "--no_progress",
    ]
    assert main(flags) == 0
    config = json.loads((only_run(tmp_path / "runs") / "config.json").read_text())
    expected = {
        "wandb_project": "proj",
        "wandb_entity": "team",
        "dataset": "mnist",
        "epochs": 1,
        "batch_size": 16,
        "loss": "mean_squared_error",
        "optimizer": "nag",
        "learning_rate": 0.01,
        "momentum": 0.5,
        "beta": 0.9,
        "beta1": 0.8,
        "beta2": 0.99,
        "epsilon": 1e-6,
        "weight_decay": 0.0005,
        "weight_init": "xavier",
        "num_layers": 2,
        "hidden_size": [16, 8],
        "activation": "relu",
        "dtype": "float64",
        "seed": 5,
        "val_fraction": 0.2,
    }
    assert {key: config[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("flag", "value", "key", "canonical"),
    [
        ("-a", "relu", "activation", "relu"),
        ("-a", "TANH", "activation", "tanh"),
        ("-w_i", "random", "weight_init", "random"),
        ("-w_i", "he", "weight_init", "he"),
        ("-l", "cross_entropy", "loss", "cross_entropy"),
        ("-o", "NAdam", "optimizer", "nadam"),
        ("-d", "fashion-mnist", "dataset", "fashion_mnist"),
    ],
)
def test_choices_are_case_insensitive_with_aliases(flag, value, key, canonical):
    from fastmlp.cli import build_parser

    args = build_parser().parse_args(["train", flag, value])
    assert getattr(args, key) == canonical


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "lion"], "unknown optimizer 'lion'"),
        (["-a", "sparkle"], "unknown activation"),
        (["-e", "0"], "-e/--epochs: must be a positive integer"),
        (["-b", "-4"], "-b/--batch_size: must be a positive integer"),
        (["-lr", "-0.1"], "-lr/--learning_rate: must be a number >= 0"),
        (["-beta1", "1.5"], "must be in [0, 1)"),
        (["-nhl", "3", "-sz", "8", "8"], "hidden_size got 2 sizes for num_layers=3"),
        (["--device", "cuda"], "cuda"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--config", "missing.json"], "config file missing.json does not exist"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_status_2(idx_dir, tmp_path, capsys, extra, message):
    assert exit_status(train_args(idx_dir, tmp_path, "-e", "1", *extra)) == 2
    error = capsys.readouterr().err.strip()
    assert message in error
    assert len(error.splitlines()) == 1
    assert "Traceback" not in error


def test_resuming_a_missing_run_is_a_one_line_error(capsys):
    assert main(["train", "--resume", "no/such/run", "--wandb_mode", "disabled"]) == 2
    error = capsys.readouterr().err.strip()
    assert "no/such/run is not a run directory" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncate", "magic", "not_gzip"])
def test_corrupt_data_file_is_a_one_line_error(idx_dir, tmp_path, capsys, damage):
    target = idx_dir / FILES["train_images"]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:500])
    elif damage == "magic":
        import gzip

        raw = bytearray(gzip.decompress(target.read_bytes()))
        raw[2:4] = b"\x0c\x09"
        target.write_bytes(gzip.compress(bytes(raw)))
    else:
        target.write_bytes(b"this is not gzip data")
    assert main(train_args(idx_dir, tmp_path / "runs", "-e", "1")) == 2
    error = capsys.readouterr().err.strip()
    assert FILES["train_images"] in error
    assert len(error.splitlines()) == 1


def test_config_file_is_read_and_flags_override_it(idx_dir, tmp_path):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"optimizer": "rmsprop", "learning_rate": 0.002, "epochs": 2}))
    assert main(train_args(idx_dir, tmp_path / "runs", "--config", str(config), "-e", "1")) == 0
    stored = json.loads((only_run(tmp_path / "runs") / "config.json").read_text())
    assert (stored["optimizer"], stored["learning_rate"], stored["epochs"]) == ("rmsprop", 0.002, 1)


def test_evaluate_reports_per_class_metrics_and_saves_figures(idx_dir, tmp_path, capsys):
    assert main(train_args(idx_dir, tmp_path / "runs", "-e", "2")) == 0
    run = only_run(tmp_path / "runs")
    out = tmp_path / "evaluation"
    capsys.readouterr()
    assert (
        main(
            ["evaluate", str(run), "--data_dir", str(idx_dir), "--device", "cpu", "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "precision" in printed and "recall" in printed and "macro average" in printed
    report = json.loads((out / "evaluation.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert report["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert np.asarray(report["confusion_matrix"]).sum() == 200
    assert (out / "confusion_matrix.png").stat().st_size > 0
    assert (out / "confident_mistakes.png").stat().st_size > 0


def test_evaluate_leaves_the_runs_own_figures_alone_and_names_the_run(
    idx_dir, tmp_path, capsys, monkeypatch
):
    from fastmlp.runs import figures

    assert main(train_args(idx_dir, tmp_path / "runs", "-e", "2")) == 0
    run = only_run(tmp_path / "runs")
    drawn = ["confusion_matrix.png", "confident_mistakes.png", "training_curves.png"]
    before = {name: (run / name).read_bytes() for name in drawn}
    titles = {}
    save = figures.save_figure

    def recording_save(figure, path):
        titles[Path(path).name] = figure.get_suptitle()
        return save(figure, path)

    monkeypatch.setattr(figures, "save_figure", recording_save)

    assert main(["evaluate", str(run), "--data_dir", str(idx_dir), "--device", "cpu"]) == 0

    assert {name: (run / name).read_bytes() for name in drawn} == before
    out = run / "evaluate" / "mnist"
    assert {path.name for path in out.iterdir()} == {
        "confusion_matrix.png", "confident_mistakes.png", "evaluation.json"
    }  # fmt: skip
    assert f"saved {out / 'confusion_matrix.png'}" in capsys.readouterr().out
    best = json.loads((run / "summary.json").read_text())["best_epoch"]
    for name in ("confusion_matrix.png", "confident_mistakes.png"):
        first_line = titles[name].split("\n")[0]
        assert first_line == f"{run.name} (epoch {best}) on MNIST test set"


def test_evaluate_and_predict_on_a_missing_checkpoint_fail_cleanly(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing.npz")]) == 2
    assert main(["predict", str(tmp_path / "nothing.npz"), "image.png"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("does not exist" in line for line in errors)


def test_predict_classifies_an_image_file_of_another_size_and_colour(idx_dir, tmp_path, capsys):
    from PIL import Image

    assert main(train_args(idx_dir, tmp_path / "runs", "-e", "5", "-lr", "3e-3")) == 0
    run = only_run(tmp_path / "runs")
    images = load_idx(idx_dir / FILES["test_images"])
    labels = load_idx(idx_dir / FILES["test_labels"])
    # dark object on a light background, 3x larger, in colour: the opposite of the training style
    photo = np.repeat(
        np.kron(255 - images[0], np.ones((3, 3), dtype=np.uint8))[..., None], 3, axis=2
    )
    Image.fromarray(photo).save(tmp_path / "photo.png")
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "photo.png"), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'photo.png'}: {labels[0]} (")


def test_samples_saves_one_image_per_class(idx_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "samples",
                "-d",
                "mnist",
                "--data_dir",
                str(idx_dir),
                "--out",
                str(out),
                "--wandb_mode",
                "disabled",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def wandb_records(run_dir: Path) -> list[dict]:
    wandb = shutil.which("wandb")
    if wandb is None:
        pytest.skip("wandb is not installed")
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    result = subprocess.run(
        [wandb, "leet", "inspect", "--json", str(offline_run)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_offline_wandb_run_holds_epochs_config_summary_and_figures(idx_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")
    args = train_args(idx_dir, tmp_path / "runs", "-e", "2")
    args[args.index("disabled")] = "offline"
    assert main(args) == 0
    records = wandb_records(only_run(tmp_path / "runs"))
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    epochs = [row for row in history if "val_accuracy" in row]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert any(
        "confusion_matrix_chart_table._type" in row
        or "confusion_matrix_chart_table" in json.dumps(row)
        for row in history
    )
    assert any("confusion_matrix.path" in json.dumps(row) for row in history)
    summary = {}
    for record in records:
        if record["type"] == "summary":
            summary.update(record["summary"].get("update", {}))
    assert summary["status"] == "finished"
    assert 0 <= summary["test_accuracy"] <= 1
    config = next(r["run"]["config"]["update"] for r in records if r["type"] == "run")
    assert config["optimizer"] == "adam"


def test_wandb_mode_is_resolved_without_prompting(monkeypatch):
    from fastmlp.runs import resolve_wandb_mode

    monkeypatch.setenv("WANDB_MODE", "")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert resolve_wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "")
    assert resolve_wandb_mode(None) in ("offline", "disabled")
    with pytest.raises(ValueError, match="online, offline or disabled"):
        resolve_wandb_mode("sometimes")


def subprocess_env(tmp_path: Path) -> dict:
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1", HOME=str(tmp_path))
    env["PYTHONPATH"] = str(REPO)
    return env


def test_root_train_py_accepts_the_same_flags(idx_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-d",
            "mnist",
            "--data_dir",
            str(idx_dir),
            "--out",
            str(tmp_path / "runs"),
            "-e",
            "1",
            *QUICK,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


def test_ctrl_c_keeps_finished_epochs_and_resume_completes_the_run(tmp_path):
    data = write_idx_dataset(tmp_path / "data", train=6000, test=200)
    out = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "fastmlp.cli",
        "train",
        "-d",
        "mnist",
        "--data_dir",
        str(data),
        "--out",
        str(out),
        "-e",
        "400",
        "-b",
        "8",
        *QUICK,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    metrics = None
    while time.monotonic() < deadline:
        runs = list(out.glob("*/metrics.jsonl")) if out.exists() else []
        if runs and len(runs[0].read_text().splitlines()) >= 2:
            metrics = runs[0]
            break
        time.sleep(0.1)
    assert metrics is not None, "training did not finish two epochs in time"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    run = metrics.parent
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    saved = fastmlp.load_checkpoint(run / "checkpoint.npz").epoch
    assert saved == len(metrics.read_text().splitlines()) >= 2

    status = main(
        [
            "train",
            "--resume",
            str(run),
            "--data_dir",
            str(data),
            "-e",
            str(saved + 1),
            "--no_progress",
            "--wandb_mode",
            "disabled",
        ]
    )
    assert status == 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, saved + 2))
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_trains_to_a_sensible_accuracy(tmp_path):
    status = main(
        [
            "train",
            "-e",
            "2",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
            "--no_progress",
            "--wandb_mode",
            "disabled",
        ]
    )
    assert status == 0
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.84
