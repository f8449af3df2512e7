"""``fastmlp runs``: the table of run directories, sorting, CSV, the plot and bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest

from fastmlp.cli import main
from fastmlp.runs import RunDirectory
from fastmlp.runs.runs_table import MAX_JSON_BYTES, MAX_METRICS_BYTES, MAX_NAME_CHARS
from tests.datasets import write_idx_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CONFIG = {
    "epochs": 3,
    "batch_size": 64,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "num_layers": 2,
    "hidden_size": [256],
    "activation": "relu",
    "weight_decay": 0.0,
    "dropout": 0.0,
    "seed": 0,
    "wandb_run_id": "abc123",
    "device_used": "numpy",
    "environment": {"python": "3.12.0"},
    "wandb_project": "fastmlp",
    "wandb_entity": None,
    "blas_threads": None,
}


def metrics_line(epoch: int, val_accuracy: float, seconds: float = 2.0) -> str:
    row = {
        "epoch": epoch,
        "train_loss": 0.5,
        "train_accuracy": 0.8,
        "val_loss": 0.4,
        "val_accuracy": val_accuracy,
        "seconds": seconds,
        "samples_per_second": 1000.0,
    }
    return json.dumps(row) + "\n"


def write_run(path: Path, val_accuracies, summary=None, **settings) -> Path:
    """A run directory as fastmlp train leaves it: config.json, a metrics line per epoch
    and, when given, summary.json."""
    path.mkdir(parents=True)
    config = {**CONFIG, "run_name": path.name, **settings}
    (path / "config.json").write_text(json.dumps(config))
    lines = [metrics_line(epoch, value) for epoch, value in enumerate(val_accuracies, start=1)]
    (path / "metrics.jsonl").write_text("".join(lines))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def ended(val_accuracies, test_accuracy=None, seconds=10.0, status="finished", **extra) -> dict:
    """The summary.json of a run that ended after these epochs."""
    return {
        "status": status,
        "epochs_completed": len(val_accuracies),
        "best_val_accuracy": max(val_accuracies),
        "val_accuracy": val_accuracies[-1],
        "test_accuracy": test_accuracy,
        "train_seconds": seconds,
        **extra,
    }


@pytest.fixture
def runs(tmp_path) -> Path:
    """Finished, diverged, incomplete (torn last line), corrupt, and a sweep's nested trials."""
    root = tmp_path / "runs"
    write_run(root / "adam", [0.80, 0.86, 0.85], ended([0.80, 0.86, 0.85], 0.84, 12.5))
    write_run(
        root / "sgd",
        [0.70, 0.75, 0.78],
        ended([0.70, 0.75, 0.78], 0.77, 95.0),
        optimizer="sgd",
        learning_rate=0.01,
    )
    write_run(
        root / "exploded",
        [0.10],
        ended([0.10], status="diverged", diverged_at=2),
        learning_rate=10.0,
    )
    partial = write_run(root / "partial", [0.81, 0.83])
    with open(partial / "metrics.jsonl", "a") as stream:
        stream.write(metrics_line(3, 0.9)[:25])  # what a kill during the write leaves
    write_run(root / "broken", [])
    (root / "broken" / "config.json").write_text('{"epochs": 3, "optimizer": ')
    sweep = root / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    trial = write_run(
        sweep / "runs" / "trial-0",
        [0.82, 0.87],
        ended([0.82, 0.87], 0.86, 20.0),
        epochs=2,
        batch_size=32,
    )
    # W&B's folder inside a run directory is never taken for a run of its own
    (trial / "wandb" / "offline-run").mkdir(parents=True)
    (trial / "wandb" / "offline-run" / "config.json").write_text("{}")
    write_run(
        sweep / "runs" / "trial-1",
        [0.60],
        ended([0.60], seconds=5.0, status="pruned", stop_reason="pruned at epoch 1"),
        epochs=2,
        batch_size=128,
    )
    return root


def table(output: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header cells and each run's cells (split at spaces) by run name."""
    header, *lines = output.strip().splitlines()
    return header.split(), {line.split()[0]: line.split() for line in lines}


def exit_status(args) -> int:
    """main's exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(args)
    except SystemExit as exit_info:
        return exit_info.code


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


# ---------------------------------------------------------------------------- table


def test_table_shows_each_run_with_status_epochs_accuracies_time_and_differing_settings(
    runs, capsys
):
    assert main(["runs", str(runs)]) == 0
    header, rows = table(capsys.readouterr().out)

    assert header[:7] == ["name", "status", "epochs", "best_val", "last_val", "test", "time"]
    # settings that differ across the runs, in fastmlp train's order; bookkeeping never
    assert header[7:] == ["batch_size", "optimizer", "learning_rate", "note"]
    assert rows["adam"] == [
        "adam", "finished", "3/3", "0.8600", "@2", "0.8500", "0.8400", "12.5s", "64", "adam",
        "1e-3",
    ]  # fmt: skip
    assert rows["sgd"][1:8] == ["finished", "3/3", "0.7800", "@3", "0.7800", "0.7700", "1m35s"]
    assert rows["sgd"][9:] == ["sgd", "0.01"]
    assert rows["exploded"][1:6] == ["diverged", "1/3", "0.1000", "@1", "0.1000"]
    assert rows["exploded"][6] == "-"  # no test accuracy
    # no summary: the complete epochs count, the torn third line does not
    assert rows["partial"][1:8] == ["incomplete", "2/3", "0.8300", "@2", "0.8300", "-", "4.0s"]
    assert rows["broken"][1] == "corrupt"
    assert "config.json is not valid JSON" in " ".join(rows["broken"])
    assert rows["sweep/runs/trial-0"][1:3] == ["finished", "2/2"]
    assert rows["sweep/runs/trial-1"][1] == "pruned"
    assert "pruned at epoch 1" in " ".join(rows["sweep/runs/trial-1"])
    assert not any("wandb" in name for name in rows)
    # best validation accuracy first, runs without one last
    assert list(rows) == [
        "sweep/runs/trial-0",
        "adam",
        "partial",
        "sgd",
        "sweep/runs/trial-1",
        "exploded",
        "broken",
    ]


def test_a_run_whose_lock_is_held_is_running(runs, capsys):
    live = runs / "partial"
    with RunDirectory(live).lock():
        assert main(["runs", str(runs)]) == 0
    _, rows = table(capsys.readouterr().out)
    assert rows["partial"][1:3] == ["running", "2/3"]

    assert main(["runs", str(runs)]) == 0  # released: incomplete again
    _, rows = table(capsys.readouterr().out)
    assert rows["partial"][1] == "incomplete"


def test_a_resumed_run_still_training_is_running_with_its_epochs_so_far(tmp_path, capsys):
    run = write_run(
        tmp_path / "runs" / "resumed",
        [0.5, 0.6, 0.7],
        ended([0.5], status="interrupted", seconds=99.0),
    )
    with RunDirectory(run).lock():
        assert main(["runs", str(tmp_path / "runs")]) == 0
    _, rows = table(capsys.readouterr().out)
    assert rows["resumed"][1:8] == ["running", "3/3", "0.7000", "@3", "0.7000", "-", "6.0s"]


def test_the_best_epoch_is_that_of_the_best_validation_accuracy(tmp_path, capsys):
    root = tmp_path / "runs"
    # best_epoch is the monitored metric's (here val_loss): epoch 3, not epoch 2
    by_loss = {"best_epoch": 3, "best_epoch_val_accuracy": 0.85}
    write_run(root / "monitored", [0.80, 0.86, 0.85], ended([0.80, 0.86, 0.85], **by_loss))
    # no metrics left: the summary's best epoch, when it is the best accuracy's
    write_run(
        root / "summary-only", [], ended([0.7, 0.9], best_epoch=2, best_epoch_val_accuracy=0.9)
    )
    write_run(
        root / "other-measure", [], ended([0.7, 0.9], best_epoch=1, best_epoch_val_accuracy=0.7)
    )

    assert main(["runs", str(root)]) == 0

    _, rows = table(capsys.readouterr().out)
    assert rows["monitored"][3:5] == ["0.8600", "@2"]
    assert rows["summary-only"][3:5] == ["0.9000", "@2"]
    assert rows["other-measure"][3:5] == ["0.9000", "0.9000"]  # no epoch known


def damage_summary(run: Path, text: str) -> None:
    (run / "summary.json").write_text(text)


def oversized(path: Path, limit: int) -> None:
    """A file just over ``limit`` bytes (sparse: no time spent writing it)."""
    path.write_text("")
    os.truncate(path, limit + 1)


def folder_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


def fifo_instead(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # reading it would wait forever


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda run: (run / "config.json").write_text("garbage"), "config.json is not valid JSON"),
        (lambda run: (run / "config.json").write_text("[1, 2]"), "must hold a JSON object"),
        (lambda run: (run / "config.json").write_bytes(b"\xff\xfe{"), "not UTF-8"),
        (lambda run: (run / "config.json").write_text('{"epochs": "ten"}'), "epochs is 'ten'"),
        (lambda run: (run / "config.json").unlink(), "no config.json"),
        (lambda run: damage_summary(run, '{"status": "finished", "best_val_accuracy": "high"}'),
         "best_val_accuracy is 'high'"),
        (lambda run: damage_summary(run, '{"status": 3}'), "status is 3"),
        (lambda run: damage_summary(run, '{"test_accuracy": 0.9}'), "summary.json has no status"),
        (lambda run: damage_summary(run, '{"status": "finished", "test_accuracy": NaN}'),
         "test_accuracy is nan"),
        (lambda run: damage_summary(run, '"finished"'), "must hold a JSON object"),
        (lambda run: damage_summary(run, "[" * 100_000), "nested too deeply"),
        (lambda run: damage_summary(run, json.dumps({"status": "x", "a": list(range(200_000))})),
         "more than 100,000 values"),
        (lambda run: oversized(run / "summary.json", MAX_JSON_BYTES), "summary.json is too large"),
        (lambda run: oversized(run / "metrics.jsonl", MAX_METRICS_BYTES),
         "metrics.jsonl is too large"),
        (lambda run: folder_instead(run / "config.json"), "config.json is not a regular file"),
        (lambda run: fifo_instead(run / "summary.json"), "summary.json is not a regular file"),
        (lambda run: (run / "metrics.jsonl").write_text("{not json}\n" + metrics_line(2, 0.5)),
         "metrics.jsonl line 1 is not valid JSON"),
        (lambda run: (run / "metrics.jsonl").write_text(metrics_line(2, 0.5) * 2),
         "repeats or goes back to epoch 2"),
        (lambda run: (run / "metrics.jsonl").write_text('[1]\n'), "not an epoch's metrics"),
        (lambda run: (run / "metrics.jsonl").write_text(metrics_line(1, 1.5)),
         "metrics.jsonl epoch 1: val_accuracy is 1.5"),
        (lambda run: (run / "metrics.jsonl").write_text(
            metrics_line(1, 0.5).replace('"seconds": 2.0', '"seconds": "slow"')),
         "metrics.jsonl epoch 1: seconds is 'slow'"),
    ],
)  # fmt: skip
def test_unreadable_files_make_a_corrupt_row_with_the_reason(tmp_path, capsys, damage, reason):
    root = tmp_path / "runs"
    write_run(root / "good", [0.8], ended([0.8], 0.8))
    damage(write_run(root / "bad", [0.5, 0.6], ended([0.5, 0.6], 0.6)))

    assert main(["runs", str(root)]) == 0

    _, rows = table(capsys.readouterr().out)
    assert rows["good"][1] == "finished"
    assert rows["bad"][1] == "corrupt"
    line = " ".join(rows["bad"])
    assert reason in line
    assert str(root) not in line  # the reason names the file, not the whole path


def test_folders_that_are_not_runs_are_searched_but_hidden_ones_are_not(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root / "a" / "b" / "deep", [0.5], ended([0.5]))
    write_run(root / ".cache" / "hidden", [0.5], ended([0.5]))
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    (root / "claimed").mkdir()  # what a kill between mkdir and config.json leaves
    (root / "claimed" / ".lock").write_text("")

    assert main(["runs", str(root)]) == 0

    _, rows = table(capsys.readouterr().out)
    assert list(rows) == ["a/b/deep"]


def test_a_run_directory_itself_lists_that_run(runs, capsys):
    assert main(["runs", str(runs / "adam")]) == 0
    _, rows = table(capsys.readouterr().out)
    assert list(rows) == ["adam"]


def test_long_names_are_cut_in_the_middle(tmp_path, capsys):
    root = tmp_path / "runs"
    long_name = "hl_3_sz_512_bs_64_ac_relu_o_adam_lr_1e-3_wd_5e-4_dropout_0.2_trial-17"
    write_run(root / long_name, [0.9], ended([0.9]))

    assert main(["runs", str(root)]) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    cut = lines[1].split()[0]
    assert len(cut) == MAX_NAME_CHARS and "…" in cut
    assert cut.startswith("hl_3_sz_512") and cut.endswith("trial-17")
    assert max(len(line) for line in lines) < 120


def test_control_characters_in_names_and_files_cannot_break_the_table(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root / "odd\x1b[31mname", [0.8], ended([0.8], status="finished\nfake row"))

    assert main(["runs", str(root)]) == 0

    output = capsys.readouterr().out
    assert "\x1b" not in output
    assert len(output.strip().splitlines()) == 2
    assert "odd?[31mname" in output and "finished?fake row" in output


# --------------------------------------------------------------------------- sorting


def names(capsys) -> list[str]:
    _, rows = table(capsys.readouterr().out)
    return list(rows)


def test_sort_by_any_column_or_setting_with_missing_values_last(runs, capsys):
    assert main(["runs", str(runs), "--sort", "test_accuracy"]) == 0
    assert names(capsys)[:3] == ["sweep/runs/trial-0", "adam", "sgd"]

    assert main(["runs", str(runs), "--sort", "test_accuracy", "--ascending"]) == 0
    assert names(capsys)[:3] == ["sgd", "adam", "sweep/runs/trial-0"]

    assert main(["runs", str(runs), "--sort", "test"]) == 0  # a header stands for its column
    assert names(capsys)[:3] == ["sweep/runs/trial-0", "adam", "sgd"]

    assert main(["runs", str(runs), "--sort", "name"]) == 0
    assert names(capsys) == [
        "adam",
        "broken",
        "exploded",
        "partial",
        "sgd",
        "sweep/runs/trial-0",
        "sweep/runs/trial-1",
    ]

    assert main(["runs", str(runs), "--sort", "time", "--ascending"]) == 0
    assert names(capsys)[:4] == ["partial", "sweep/runs/trial-1", "exploded", "adam"]

    assert main(["runs", str(runs), "--sort", "learning_rate"]) == 0
    assert names(capsys)[:2] == ["exploded", "sgd"]

    assert main(["runs", str(runs), "--sort", "epochs", "--ascending"]) == 0
    order = names(capsys)
    assert order[0] == "exploded" and order[-1] == "broken"  # broken: no epochs known


def test_limit_lists_the_first_runs_and_says_how_many_there_are(runs, capsys):
    assert main(["runs", str(runs), "--limit", "2"]) == 0
    output = capsys.readouterr().out
    _, rows = table(output.strip().rsplit("\n", 1)[0])
    assert list(rows) == ["sweep/runs/trial-0", "adam"]
    assert output.strip().splitlines()[-1] == "(2 of 7 runs shown: --limit 2)"


def test_settings_columns_are_those_differing_among_the_listed_runs(runs, capsys):
    assert main(["runs", str(runs), "--sort", "name", "--limit", "2"]) == 0  # adam, broken
    header, _ = table(capsys.readouterr().out.strip().rsplit("\n", 1)[0])
    assert "optimizer" not in header and "batch_size" not in header


# ------------------------------------------------------------------------------ CSV


def test_csv_has_whole_names_and_unrounded_values(runs, capsys):
    assert main(["runs", str(runs), "--csv"]) == 0
    captured = capsys.readouterr()
    records = {row["name"]: row for row in csv.DictReader(io.StringIO(captured.out))}

    assert list(records) == [
        "sweep/runs/trial-0",
        "adam",
        "partial",
        "sgd",
        "sweep/runs/trial-1",
        "exploded",
        "broken",
    ]
    adam = records["adam"]
    assert adam["status"] == "finished"
    assert (adam["epochs_completed"], adam["epochs"]) == ("3", "3")
    assert float(adam["best_val_accuracy"]) == 0.86 and adam["best_epoch"] == "2"
    assert float(adam["val_accuracy"]) == 0.85 and float(adam["test_accuracy"]) == 0.84
    assert float(adam["seconds"]) == 12.5
    assert (adam["optimizer"], float(adam["learning_rate"])) == ("adam", 0.001)
    assert records["exploded"]["test_accuracy"] == ""
    assert "not valid JSON" in records["broken"]["note"]
    assert captured.err == ""


# ----------------------------------------------------------------------------- plot


def test_plot_overlays_the_validation_curves_of_the_listed_runs(runs, tmp_path, capsys):
    image = pytest.importorskip("matplotlib.image")
    path = tmp_path / "plots" / "curves.png"

    assert main(["runs", str(runs), "--plot", str(path)]) == 0

    assert capsys.readouterr().out.strip().endswith(f"saved {path}")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    pixels = image.imread(path)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 1000
    assert pixels.std() > 0.01, "the figure is blank"
    assert [entry.name for entry in path.parent.iterdir()] == ["curves.png"]  # no temporary


def test_plot_with_csv_keeps_stdout_csv(runs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert main(["runs", str(runs), "--csv", "--plot", str(path), "--limit", "3"]) == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 3
    assert captured.err.splitlines() == ["(3 of 7 runs shown: --limit 3)", f"saved {path}"]


def test_plot_without_matplotlib_names_the_install_command(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    assert main(["runs", str(runs), "--plot", str(tmp_path / "curves.png")]) == 2

    assert 'pip install "fastmlp[plot]"' in one_error_line(capsys)
    assert not (tmp_path / "curves.png").exists()


# ------------------------------------------------------------------------ bad input


def test_a_missing_folder_is_a_one_line_error_saying_how_to_make_a_run(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    line = one_error_line(capsys)
    assert f"no runs found under {tmp_path / 'nowhere'}" in line
    assert f"fastmlp train --out {tmp_path / 'nowhere'}" in line


def test_an_empty_folder_says_so_with_status_0(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["runs", str(tmp_path / "runs")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [
        f"no runs found under {tmp_path / 'runs'} (start one: fastmlp train --out "
        f"{tmp_path / 'runs'})"
    ]


def test_the_default_folder_is_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["runs"]) == 2
    assert one_error_line(capsys).endswith("(start one: fastmlp train)")
    write_run(tmp_path / "runs" / "only", [0.5], ended([0.5]))
    assert main(["runs"]) == 0
    assert names(capsys) == ["only"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--sort", "best_val_acc"], "did you mean best_val_accuracy"),
        (["--sort", "tset"], "did you mean test"),
        (["--sort", "learning_rat"], "did you mean learning_rate"),
        (["--limit", "0"], "must be a positive integer"),
        (["--limit", "many"], "expected a positive integer"),
        (["--plot", "curves.pdf"], "give the path of a .png file"),
    ],
)
def test_bad_options_are_one_line_errors_with_status_2(runs, capsys, arguments, message):
    assert exit_status(["runs", str(runs), *arguments]) == 2
    assert message in one_error_line(capsys)


def test_help_lists_the_options(capsys):
    assert exit_status(["runs", "--help"]) == 0
    output = capsys.readouterr().out
    for option in ("DIR", "--sort KEY", "--ascending", "--limit N", "--csv", "--plot PATH.png"):
        assert option in output


def test_a_file_given_as_the_folder_is_a_one_line_error(runs, capsys):
    assert main(["runs", str(runs / "adam" / "config.json")]) == 2
    assert "is a file" in one_error_line(capsys)


def test_a_plot_path_that_is_a_folder_is_a_one_line_error(runs, tmp_path, capsys):
    (tmp_path / "figure.png").mkdir()
    assert main(["runs", str(runs), "--plot", str(tmp_path / "figure.png")]) == 2
    assert "give the path of a .png file" in one_error_line(capsys)


# -------------------------------------------------------------------- a real run


def test_a_real_training_run_is_listed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    data = write_idx_dataset(tmp_path / "data")
    out = tmp_path / "runs"
    train = ["train", "-d", "mnist", "--data_dir", str(data), "--out", str(out), "-e", "2"]
    quick = ["-nhl", "1", "-sz", "16", "-b", "32", "--device", "cpu", "--no_progress"]
    assert main([*train, *quick, "--wandb_mode", "disabled"]) == 0
    (run,) = [path for path in out.iterdir() if path.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()

    assert main(["runs", str(out), "--csv"]) == 0

    (record,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert record["name"] == run.name
    assert (record["status"], record["epochs_completed"], record["epochs"]) == (
        "finished",
        "2",
        "2",
    )
    assert float(record["test_accuracy"]) == summary["test_accuracy"]
    assert float(record["best_val_accuracy"]) == summary["best_val_accuracy"]
    assert float(record["seconds"]) == summary["train_seconds"]

    assert main(["runs", str(out)]) == 0
    _, rows = table(capsys.readouterr().out)
    (cells,) = rows.values()
    assert cells[0] == run.name or (cells[0][:19] == run.name[:19] and "…" in cells[0])
    assert cells[1:3] == ["finished", "2/2"]
    assert cells[6] == f"{summary['test_accuracy']:.4f}"


def test_a_huge_integer_in_a_runs_files_is_a_corrupt_row_not_a_crash(tmp_path, capsys):
    run = tmp_path / "runs" / "huge"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"epochs": 3, "early_stopping": ' + "9" * 400 + "}")
    (run / "summary.json").write_text('{"status": "finished", "train_seconds": ' + "9" * 400 + "}")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "val_accuracy": ' + "9" * 400 + "}\n")
    assert main(["runs", str(tmp_path / "runs")]) == 0
    assert "huge" in capsys.readouterr().out
