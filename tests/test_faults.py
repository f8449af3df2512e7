"""Nothing is lost when a run stops, however it stops, and two processes never share a run.

Each test provokes a fault the way it happens for real (SIGINT, SIGTERM and SIGKILL sent to
a training process, two processes started at once, a torn or stale file left behind) and
checks that resuming repairs it exactly: the same epochs, the same final weights as a run
that was never interrupted.
"""

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
from fastmlp.runs.experiment import run_experiment
from tests.datasets import write_idx_dataset

REPO = Path(__file__).resolve().parents[1]
SMALL = {"num_layers": 1, "hidden_size": 16, "batch_size": 32, "device": "cpu", "seed": 3}
COMMON = {"wandb_mode": "disabled", "progress": False, "verbose": False, "figures": False}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_idx_dataset(tmp_path_factory.mktemp("data"), train=600, test=200)


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    """Epochs long enough (a few tenths of a second) to be interrupted in the middle."""
    return write_idx_dataset(tmp_path_factory.mktemp("slow"), train=6000, test=200)


def settings(epochs, **extra):
    return {**SMALL, "dataset": "mnist", "epochs": epochs, **extra}


def stop_after(epoch):
    def callback(metrics):
        if metrics.epoch == epoch:
            raise KeyboardInterrupt

    return callback


def epochs_of(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def fastmlp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastmlp.cli", *args]


def environment(tmp_path: Path) -> dict:
    return dict(
        os.environ,
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
        HOME=str(tmp_path),
        PYTHONPATH=str(REPO),
    )


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return fastmlp_command(
        "train", "-d", "mnist", "--data_dir", str(data), "--out", str(out),
        "-nhl", "1", "-sz", "16", "-b", "8", "--device", "cpu", "--no_progress", *extra,
    )  # fmt: skip


def start(command, tmp_path, **kwargs):
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp_path),
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def wait_for_epochs(out: Path, count: int, timeout: float = 120) -> Path:
    """The run directory under ``out`` once its metrics hold ``count`` lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for metrics in out.glob("*/metrics.jsonl"):
            if len(metrics.read_text().splitlines()) >= count:
                return metrics.parent
        time.sleep(0.05)
    raise AssertionError(f"no run under {out} reached {count} epochs in {timeout} s")


# ----------------------------------------------------------- finishing and repair


def test_a_run_interrupted_after_its_last_epoch_is_finished_by_resume(small_data, tmp_path):
    common = {**COMMON, "data_dir": small_data, "figures": True}
    full = run_experiment(settings(3), out=tmp_path / "full", **common)
    cut = run_experiment(settings(3), out=tmp_path / "cut", callbacks=[stop_after(3)], **common)
    assert cut.status == "interrupted" and "test_accuracy" not in cut.summary
    resumed = run_experiment({}, resume=cut.run_dir.path, **common)
    assert resumed.status == "finished"
    assert resumed.summary["test_accuracy"] == full.summary["test_accuracy"]
    assert epochs_of(cut.run_dir.path) == [1, 2, 3]
    for figure in ("confusion_matrix.png", "confident_mistakes.png", "training_curves.png"):
        assert (cut.run_dir.path / figure).stat().st_size > 0
    with pytest.raises(ValueError, match="already finished 3 of 3 epochs"):
        run_experiment({}, resume=cut.run_dir.path, **common)


def test_a_run_killed_before_its_summary_is_finished_by_resume(small_data, tmp_path):
    done = run_experiment(settings(2), out=tmp_path, data_dir=small_data, **COMMON)
    (done.run_dir.path / "summary.json").unlink()  # what kill -9 before the summary leaves
    resumed = run_experiment({}, resume=done.run_dir.path, data_dir=small_data, **COMMON)
    assert resumed.summary["test_accuracy"] == done.summary["test_accuracy"]
    assert resumed.run_dir.read_summary()["status"] == "finished"


def test_metrics_beyond_the_checkpoint_are_dropped_and_that_epoch_trained_again(
    small_data, tmp_path, capsys
):
    """A kill between an epoch's metrics line and its checkpoint leaves one line too many."""
    common = {**COMMON, "data_dir": small_data}
    full = run_experiment(settings(3), out=tmp_path / "full", **common)
    cut = run_experiment(settings(3), out=tmp_path / "cut", callbacks=[stop_after(2)], **common)
    run = cut.run_dir.path
    shutil.copy(run / "checkpoint.npz", tmp_path / "epoch2.npz")
    run_experiment({}, resume=run, **common)
    shutil.copy(tmp_path / "epoch2.npz", run / "checkpoint.npz")  # the checkpoint of epoch 3 lost
    (run / "summary.json").unlink()
    capsys.readouterr()
    resumed = run_experiment({}, resume=run, **common)
    assert "dropped the metrics of epoch 3" in capsys.readouterr().err
    assert epochs_of(run) == [1, 2, 3]
    np.testing.assert_array_equal(resumed.model.params, full.model.params)


@pytest.mark.parametrize("tail", ['{"epoch": 3, "train_lo', "\x00\x00\x00\x00"])
def test_a_torn_last_metrics_line_is_dropped_and_resume_says_so(small_data, tmp_path, capsys, tail):
    common = {**COMMON, "data_dir": small_data}
    full = run_experiment(settings(3), out=tmp_path / "full", **common)
    cut = run_experiment(settings(3), out=tmp_path / "cut", callbacks=[stop_after(2)], **common)
    with open(cut.run_dir.file("metrics.jsonl"), "a") as stream:
        stream.write(tail)  # what a kill or a full disk leaves in the middle of a write
    capsys.readouterr()
    resumed = run_experiment({}, resume=cut.run_dir.path, **common)
    error = capsys.readouterr().err
    assert "dropped its torn last line" in error and "metrics.jsonl" in error
    assert epochs_of(cut.run_dir.path) == [1, 2, 3]
    np.testing.assert_array_equal(resumed.model.params, full.model.params)


def test_a_run_without_any_checkpoint_yet_starts_again_from_epoch_one(small_data, tmp_path):
    cut = run_experiment(settings(2), out=tmp_path, callbacks=[stop_after(1)], **COMMON,
                         data_dir=small_data)  # fmt: skip
    cut.run_dir.checkpoint_path.unlink()
    resumed = run_experiment({}, resume=cut.run_dir.path, data_dir=small_data, **COMMON)
    assert resumed.status == "finished" and epochs_of(cut.run_dir.path) == [1, 2]


# ------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("number", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_sigint_sigterm_and_sighup_stop_cleanly_and_resume_completes(
    slow_data, tmp_path, number, status
):
    out = tmp_path / "runs"
    process = start(train_command(slow_data, out, "-e", "300"), tmp_path)
    run = wait_for_epochs(out, 2)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    saved = fastmlp.load_checkpoint(run / "checkpoint.npz").epoch
    assert epochs_of(run) == list(range(1, saved + 1))
    resumed = subprocess.run(
        fastmlp_command("train", "--resume", str(run), "--data_dir", str(slow_data),
                        "-e", str(saved + 1), "--no_progress"),
        capture_output=True, text=True, env=environment(tmp_path), timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert epochs_of(run) == list(range(1, saved + 2))


def test_kill_9_at_any_instant_leaves_a_run_that_resume_completes_exactly(slow_data, tmp_path):
    """SIGKILL mid-epoch, mid-write, anywhere: resuming ends where an uninterrupted run ends."""
    epochs = 4
    reference = run_experiment(
        {**settings(epochs), "batch_size": 8}, out=tmp_path / "ref", data_dir=slow_data, **COMMON
    )
    out = tmp_path / "killed"
    process = start(train_command(slow_data, out, "-e", str(epochs), "--seed", "3"), tmp_path)
    run = wait_for_epochs(out, 1)
    time.sleep(0.13)  # somewhere inside epoch 2
    process.kill()
    process.communicate(timeout=60)
    resumed = run_experiment({}, resume=run, data_dir=slow_data, **COMMON)
    assert resumed.status == "finished"
    assert epochs_of(run) == list(range(1, epochs + 1))
    np.testing.assert_array_equal(resumed.model.params, reference.model.params)


def test_an_epoch_line_is_printed_only_once_the_epoch_is_saved(slow_data, tmp_path):
    out = tmp_path / "runs"
    process = start(train_command(slow_data, out, "-e", "300"), tmp_path)
    for line in process.stdout:
        if line.startswith("epoch 2/"):
            process.send_signal(signal.SIGINT)
            break
    process.communicate(timeout=60)
    (run,) = out.iterdir()
    assert fastmlp.load_checkpoint(run / "checkpoint.npz").epoch >= 2


# ---------------------------------------------------------------------- races


def test_two_runs_of_the_same_name_started_at_once_get_two_directories(small_data, tmp_path):
    out = tmp_path / "runs"
    command = train_command(small_data, out, "-e", "1", "-b", "64")
    processes = [start(command, tmp_path) for _ in range(2)]
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], results
    names = sorted(path.name for path in out.iterdir())
    assert names == ["hl_1_sz_16_bs_64_ac_relu_o_adam_lr_1e-3_d_mnist_e_1",
                     "hl_1_sz_16_bs_64_ac_relu_o_adam_lr_1e-3_d_mnist_e_1-2"]  # fmt: skip
    for name in names:
        assert epochs_of(out / name) == [1]


def test_a_second_resume_of_a_run_in_training_is_refused_naming_the_holder(slow_data, tmp_path):
    out = tmp_path / "runs"
    first = start(train_command(slow_data, out, "-e", "300"), tmp_path)
    run = wait_for_epochs(out, 1)
    second = subprocess.run(
        fastmlp_command("train", "--resume", str(run), "--data_dir", str(slow_data),
                        "-e", "400", "--no_progress"),
        capture_output=True, text=True, env=environment(tmp_path), timeout=120,
    )  # fmt: skip
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert second.returncode == 2
    error = second.stderr.strip()
    assert len(error.splitlines()) == 1
    assert f"is in use by process {first.pid}" in error
    assert epochs_of(run) == list(range(1, len(epochs_of(run)) + 1))


# ------------------------------------------------------------------------ W&B


def offline_runs(run_dir: Path) -> list[list[dict]]:
    wandb = shutil.which("wandb")
    if wandb is None:
        pytest.skip("wandb is not installed")
    parts = []
    for directory in sorted((run_dir / "wandb").glob("offline-run-*")):
        result = subprocess.run(
            [wandb, "leet", "inspect", "--json", str(directory)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        parts.append([json.loads(line) for line in result.stdout.splitlines() if line[:1] == "{"])
    return parts


def test_a_resumed_run_continues_the_same_wandb_run_with_continuous_steps(
    small_data, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_API_KEY", "")
    common = {**COMMON, "data_dir": small_data, "wandb_mode": "offline"}
    cut = run_experiment(settings(4), out=tmp_path, callbacks=[stop_after(2)], **common)
    run_experiment({}, resume=cut.run_dir.path, **common)
    first, second = offline_runs(cut.run_dir.path)
    ids = [next(r["run"]["run_id"] for r in part if r["type"] == "run") for part in (first, second)]
    assert (
        ids[0] == ids[1] == json.loads(cut.run_dir.file("config.json").read_text())["wandb_run_id"]
    )
    steps = [
        [r["history"]["step"]["num"] for r in part if r["type"] == "history"]
        for part in (first, second)
    ]
    assert sorted(set(steps[0])) == [1, 2] and sorted(set(steps[1])) == [3, 4]
    assert any(r["type"] == "preempting" for r in first)  # shown as preempted, not failed
    assert not any(r["type"] == "preempting" for r in second)
    exit_codes = [r["exit"]["exit_code"] for r in second if r["type"] == "exit"]
    assert exit_codes == [0]


# ------------------------------------------------------------------ full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 kB file system (tmpfs): room for one checkpoint of the small model, not two."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_disk_is_one_line_naming_the_file_and_resume_repairs_the_run(
    small_data, tiny_disk, tmp_path, capsys
):
    from fastmlp.cli import main

    args = ["train", "-d", "mnist", "--data_dir", str(small_data), "--out", str(tiny_disk),
            "-nhl", "1", "-sz", "16", "-b", "32", "-e", "4", "--device", "cpu", "--seed", "3",
            "--no_progress", "--wandb_mode", "disabled"]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert "No space left on device" in error and "checkpoint.npz" in error
    assert len(error.splitlines()) == 1
    (run,) = tiny_disk.iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)  # the user frees space (here: moves the run elsewhere)
    resumed = run_experiment({}, resume=moved, data_dir=small_data, **COMMON)
    reference = run_experiment(settings(4), out=tmp_path / "ref", data_dir=small_data, **COMMON)
    assert epochs_of(moved) == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.model.params, reference.model.params)


@pytest.mark.slow
def test_repeated_kill_9_at_random_instants_never_loses_or_changes_anything(slow_data, tmp_path):
    """SIGKILL a run and then each of its resumes at random instants (while training,
    writing, evaluating or drawing), until one resume finishes: the result is bit for bit the
    uninterrupted run's, with every epoch's metrics line exactly once."""
    epochs = 6
    reference = run_experiment(
        {**settings(epochs), "batch_size": 8}, out=tmp_path / "ref", data_dir=slow_data,
        **{**COMMON, "figures": True},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    out = tmp_path / "killed"
    command = train_command(slow_data, out, "-e", str(epochs), "--seed", "3")
    for _attempt in range(40):
        process = start(command, tmp_path)
        time.sleep(rng.uniform(0.3, 2.5))
        process.kill()
        process.communicate(timeout=60)
        if process.returncode == 0:
            break
        runs = list(out.iterdir()) if out.exists() else []
        if runs and (runs[0] / "config.json").exists():
            command = fastmlp_command("train", "--resume", str(runs[0]), "--data_dir",
                                      str(slow_data), "--no_progress")  # fmt: skip
    (run,) = out.iterdir()
    final = subprocess.run(command, capture_output=True, text=True, env=environment(tmp_path),
                           timeout=300)  # fmt: skip
    assert final.returncode in (0, 2), final.stderr  # 2: the last attempt had already finished
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert epochs_of(run) == list(range(1, epochs + 1))
    saved = fastmlp.load_checkpoint(run / "checkpoint.npz").model.params
    np.testing.assert_array_equal(saved, reference.model.params)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] == reference.summary["test_accuracy"]
    assert (run / "confusion_matrix.png").stat().st_size > 0


def test_a_run_directory_left_empty_by_a_kill_is_claimed_again(small_data, tmp_path):
    """A kill between a run directory's creation and its first file leaves an empty folder
    (perhaps with a lock nobody holds): the next run of that name uses it."""
    leftover = tmp_path / "hl_1_sz_16_bs_32_ac_relu_o_adam_lr_1e-3_d_mnist_e_1_seed_3"
    leftover.mkdir()
    (leftover / ".lock").write_text("")
    result = run_experiment(settings(1), out=tmp_path, data_dir=small_data, **COMMON)
    assert result.run_dir.path == leftover
    assert sorted(path.name for path in tmp_path.iterdir()) == [leftover.name]


def test_a_run_directory_deleted_while_training_is_not_recreated(slow_data, tmp_path):
    out = tmp_path / "runs"
    process = start(train_command(slow_data, out, "-e", "300"), tmp_path)
    run = wait_for_epochs(out, 1)
    while run.exists():  # a file may appear while the tree is removed: remove it again
        shutil.rmtree(run, ignore_errors=True)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "No such file or directory" in stderr
    assert not run.exists()
