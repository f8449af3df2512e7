"""Bad input is one line on stderr and exit status 2; a bug keeps its traceback.

Every case here once ended in a traceback, a crash, or silently wrong results. Each now
says in one line what was wrong and how to fix it, and creates nothing on disk.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.nn.checkpoint import CheckpointError, load_checkpoint
from tests.datasets import write_idx_dataset

QUICK = ["-nhl", "1", "-sz", "16", "-b", "32", "--device", "cpu", "--no_progress"]


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return write_idx_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(idx_dir, tmp_path_factory):
    """A finished 1-epoch run directory on the generated data."""
    out = tmp_path_factory.mktemp("runs")
    assert main(train(idx_dir, out, "-e", "1")) == 0
    (run,) = [path for path in out.iterdir() if path.is_dir()]
    return run


def train(idx_dir, out, *extra):
    return ["train", "-d", "mnist", "--data_dir", str(idx_dir), "--out", str(out),
            "--wandb_mode", "disabled", *QUICK, *extra]  # fmt: skip


def status_of(args) -> int:
    try:
        return main(args)
    except SystemExit as exit_info:
        return exit_info.code


def one_line_error(capsys, args, *fragments) -> str:
    """Run the CLI; assert exit status 2 and a one-line error holding every fragment."""
    capsys.readouterr()
    assert status_of(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert "Traceback" not in error
    for fragment in fragments:
        assert fragment in error, error
    return error


# ------------------------------------------------------------ settings and files


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ('{"epochs": Infinity}', ["epochs must be a positive integer, got inf"]),
        ("epochs: .inf\n", ["epochs must be a positive integer, got inf"]),
        ('{"epochs": true}', ["epochs must be a positive integer, got the boolean True"]),
        ('{"learning_rate": false}', ["learning_rate", "boolean"]),
        ('{"seed": "abc"}', ["seed must be an integer >= 0, got 'abc'"]),
        ('{"seed": -3}', ["seed must be an integer >= 0"]),
        ('{"epochs": 2.5}', ["epochs must be a positive integer, got 2.5"]),
        ('{"momentum": true}', ["momentum", "boolean"]),
        ('{"dtype": "float16"}', ["unsupported dtype"]),
        ('{"val_fraction": 1.5}', ["val_fraction must be in [0, 1)"]),
        ('{"blas_threads": 0}', ["blas_threads must be a positive integer"]),
        ("[1, 2, 3]", ["must hold a mapping"]),
        ("epochs: [unclosed\n", ["is not valid YAML"]),
        ('{"epochs": 1,}', ["is not valid JSON"]),
    ],
)
def test_bad_config_files_are_one_line(idx_dir, tmp_path, capsys, config, fragments):
    suffix = ".yaml" if ":" in config and not config.startswith("{") else ".json"
    path = tmp_path / f"settings{suffix}"
    path.write_text(config)
    one_line_error(capsys, train(idx_dir, tmp_path / "runs", "--config", str(path)), *fragments)
    assert not (tmp_path / "runs").exists()


def test_a_folder_or_a_device_given_as_config_file_is_named_for_what_it_is(
    idx_dir, tmp_path, capsys
):
    one_line_error(capsys, train(idx_dir, tmp_path, "--config", str(tmp_path)), "is a folder")
    one_line_error(capsys, train(idx_dir, tmp_path, "--config", "/dev/null"), "not a regular file")


def test_zero_hidden_layers_trains_softmax_regression_end_to_end(idx_dir, tmp_path):
    assert main(train(idx_dir, tmp_path, "-e", "1", "-nhl", "0")) == 0
    (run,) = tmp_path.iterdir()
    assert run.name == "hl_0_bs_32_o_adam_lr_1e-3_d_mnist_e_1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.5
    assert fastmlp.load_checkpoint(run / "checkpoint.npz").model.hidden_sizes == ()


def test_a_model_too_large_for_memory_says_how_much_it_needs_before_allocating(
    idx_dir, tmp_path, capsys
):
    error = one_line_error(
        capsys, train(idx_dir, tmp_path, "-sz", "100000000"), "needs", "available on cpu"
    )
    assert "-sz" in error
    with pytest.raises(MemoryError, match="needs .* but only"):
        fastmlp.MLP(hidden_sizes=(30000, 30000, 30000, 30000, 30000))


def test_a_bogus_wandb_mode_in_the_environment_creates_nothing(
    idx_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "bogus")
    args = [arg for arg in train(idx_dir, tmp_path / "runs") if arg not in ("--wandb_mode",
            "disabled")]  # fmt: skip
    one_line_error(capsys, args, "WANDB_MODE='bogus'")
    assert not (tmp_path / "runs").exists()


def test_data_dir_pointing_at_a_file_is_an_error(idx_dir, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("not data")
    args = train(idx_dir, tmp_path, "-e", "1")
    args[args.index("--data_dir") + 1] = str(file)
    one_line_error(capsys, args, "is a file, not a folder")


def test_resume_with_out_is_refused_rather_than_ignored(trained, tmp_path, capsys):
    one_line_error(
        capsys,
        ["train", "--resume", str(trained), "--out", str(tmp_path), "--wandb_mode", "disabled"],
        "--out does not apply with --resume",
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastmlp {fastmlp.__version__}"


def test_an_exploding_loss_that_stays_finite_is_warned_about(idx_dir, tmp_path, capsys):
    assert main(train(idx_dir, tmp_path, "-e", "1", "-o", "sgd", "-lr", "1e6")) in (0, 1)
    error = capsys.readouterr().err
    assert "far above chance level" in error and "smaller learning rate" in error


# ------------------------------------------------------------- resuming run dirs


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


def resume_args(run, idx_dir, *extra):
    return ["train", "--resume", str(run), "--data_dir", str(idx_dir), "--wandb_mode",
            "disabled", "--no_progress", "-e", "2", *extra]  # fmt: skip


def test_resume_of_a_run_whose_config_was_edited_is_refused(trained, idx_dir, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["hidden_size"] = [64]
    (run / "config.json").write_text(json.dumps(config))
    one_line_error(
        capsys, resume_args(run, idx_dir), "config.json says hidden_size [64]", "[16]",
        "changed after the run started",
    )  # fmt: skip


def test_resume_of_a_checkpoint_without_optimizer_state_is_refused(trained, idx_dir, tmp_path,
                                                                   capsys):  # fmt: skip
    run = copy_run(trained, tmp_path)
    fastmlp.load_checkpoint(run / "checkpoint.npz").model.save(run / "checkpoint.npz")
    one_line_error(capsys, resume_args(run, idx_dir), "holds no optimizer state")


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda run: (run / "metrics.jsonl").write_text("{}\n"), "not an epoch's metrics"),
        (lambda run: (run / "config.json").write_text("[1, 2]"), "must hold a JSON object"),
        (lambda run: (run / "config.json").write_text("{"), "is not valid JSON"),
        (
            lambda run: (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 1}\n'),
            "repeats or goes back",
        ),
    ],
    ids=["empty_metrics_row", "config_list", "config_torn", "repeated_epoch"],
)
def test_damaged_run_files_are_one_line_errors(trained, idx_dir, tmp_path, capsys, damage,
                                               fragment):  # fmt: skip
    run = copy_run(trained, tmp_path)
    damage(run)
    one_line_error(capsys, resume_args(run, idx_dir), fragment, run.name)


# ------------------------------------------------------------------ checkpoints


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def npy_bytes(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def hostile_header() -> bytes:
    """A .npy header that claims 10^12 float64 values, followed by almost nothing."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64


def valid_entries(tmp_path) -> dict[str, bytes]:
    path = tmp_path / "good.npz"
    fastmlp.MLP(input_size=4, hidden_sizes=(3,), output_size=2, seed=0).save(path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


CHECKPOINT_DAMAGE = {
    "npy_saved_as_npz": (lambda t: (t / "c.npz").write_bytes(npy_bytes([1.0, 2.0])),
                         "single NumPy array (.npy)"),
    "random_bytes": (lambda t: (t / "c.npz").write_bytes(np.random.default_rng(0).bytes(4096)),
                     "not an .npz archive"),
    "truncated": (lambda t: (t / "c.npz").write_bytes((t / "good.npz").read_bytes()[:300]),
                  "not an .npz archive"),
    "marker_without_config": (
        lambda t: write_zip(t / "c.npz", {"format.npy": npy_bytes("fastmlp-checkpoint-1")}),
        "no model config"),
    "config_with_extra_key": (
        lambda t: write_zip(t / "c.npz", {**valid_entries(t), "config.npy": npy_bytes(json.dumps(
            {**fastmlp.MLP(4, (3,), 2).config, "colour": "red"}))}),
        "unknown keys colour"),
    "config_with_bad_value": (
        lambda t: write_zip(t / "c.npz", {**valid_entries(t), "config.npy": npy_bytes(json.dumps(
            {**fastmlp.MLP(4, (3,), 2).config, "activation": "sparkle"}))}),
        "invalid model config"),
    "hostile_params_header": (
        lambda t: write_zip(t / "c.npz", {**valid_entries(t), "params.npy": hostile_header()}),
        "has shape (1000000000000,), expected (23,)"),
    "pickled_params": (
        lambda t: write_zip(t / "c.npz", {**valid_entries(t),
                                          "params.npy": npy_bytes(np.array([{}], dtype=object))}),
        "not numeric"),
}  # fmt: skip


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGE)
def test_damaged_checkpoints_are_one_line_errors_naming_the_file(tmp_path, capsys, damage):
    make, fragment = CHECKPOINT_DAMAGE[damage]
    valid_entries(tmp_path)
    make(tmp_path)
    with pytest.raises(CheckpointError, match=re.escape(fragment)):
        load_checkpoint(tmp_path / "c.npz")
    one_line_error(capsys, ["evaluate", str(tmp_path / "c.npz")], str(tmp_path / "c.npz"))


def test_evaluate_of_a_model_with_another_number_of_classes_is_one_line(idx_dir, tmp_path,
                                                                        capsys):  # fmt: skip
    fastmlp.MLP(hidden_sizes=(8,), output_size=3).save(tmp_path / "three.npz",
                                                       extra={"dataset": "mnist"})  # fmt: skip
    one_line_error(
        capsys,
        ["evaluate", str(tmp_path / "three.npz"), "--data_dir", str(idx_dir), "--device", "cpu"],
        "3 classes", "10 classes",
    )  # fmt: skip


def test_evaluate_of_non_finite_parameters_warns_and_still_writes_its_report(
    idx_dir, tmp_path, capsys
):
    model = fastmlp.MLP(hidden_sizes=(8,), seed=0)
    model.params[::7] = np.nan
    model.save(tmp_path / "nan.npz", extra={"dataset": "mnist"})
    args = ["evaluate", str(tmp_path / "nan.npz"), "--data_dir", str(idx_dir), "--device", "cpu",
            "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(args) == 0
    assert "not finite" in capsys.readouterr().err
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["test_loss"] is None and 0 <= report["test_accuracy"] <= 1


# ----------------------------------------------------------------------- images


def huge_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says side x side pixels (Pillow refuses it before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_predict_of_a_decompression_bomb_or_a_folder_is_one_line(trained, tmp_path, capsys):
    pytest.importorskip("PIL")
    one_line_error(capsys, ["predict", str(trained), str(huge_png(tmp_path / "big.png"))],
                   "too large to read safely")  # fmt: skip
    one_line_error(capsys, ["predict", str(trained), str(tmp_path)], "is a folder")
    (tmp_path / "fake.png").write_bytes(b"GIF89a not really")
    one_line_error(capsys, ["predict", str(trained), str(tmp_path / "fake.png")], "cannot read")


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from fastmlp.cli.predict_command import to_model_input

    levels = np.zeros((28, 28))
    levels[6:22, 10:18] = np.linspace(0.1, 1.0, 16)[:, None]  # a graded object on black
    Image.fromarray(np.rint(levels * 255).astype(np.uint8)).save(tmp_path / "8bit.png")
    Image.fromarray(np.rint(levels * 65535).astype(np.uint16)).save(tmp_path / "16bit.png")
    Image.fromarray(levels.astype(np.float32), mode="F").save(tmp_path / "float.tiff")
    expected = to_model_input(tmp_path / "8bit.png").astype(int)
    for name in ("16bit.png", "float.tiff"):
        np.testing.assert_allclose(to_model_input(tmp_path / name), expected, atol=1)
    assert len(np.unique(expected)) > 10  # the grading survives (no clipping to white)


def test_samples_refuses_to_overwrite_a_file_that_is_not_a_png(idx_dir, tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("my notes")
    args = ["samples", "-d", "mnist", "--data_dir", str(idx_dir), "--wandb_mode", "disabled"]
    one_line_error(capsys, [*args, "--out", str(notes)], "is not a PNG image")
    assert notes.read_text() == "my notes"
    one_line_error(capsys, [*args, "--out", str(tmp_path / "grid.jpg")], "ending in .png")


# --------------------------------------------------------------- bugs vs errors


def test_an_unexpected_exception_keeps_its_traceback_and_asks_for_a_report(capsys, monkeypatch):
    from fastmlp.cli import samples_command

    def broken(args):
        raise KeyError("internal bookkeeping")

    monkeypatch.setattr(samples_command, "run", broken)
    assert status_of(["samples"]) == 1
    error = capsys.readouterr().err
    assert "Traceback" in error and "KeyError" in error and "please report it" in error


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("Unable to allocate 71.1 PiB"),
        OSError(28, "No space left on device", "runs/x/checkpoint.npz"),
        PermissionError(13, "Permission denied", "/runs"),
    ],
    ids=["memory", "disk_full", "permission"],
)
def test_machine_problems_are_one_line_errors(capsys, monkeypatch, error):
    from fastmlp.cli import samples_command

    def failing(args):
        raise error

    monkeypatch.setattr(samples_command, "run", failing)
    message = one_line_error(capsys, ["samples"])
    assert (getattr(error, "strerror", None) or "out of memory") in message


# ------------------------------------------- found by the adversarial probe (helper)

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INTEGER = "9" * 5000
LAUGHS = (
    "a: &a ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi")
    )
    + "wandb_project: *i\n"
)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("deep.json", DEEP, "nested too deeply"),
        ("deep_value.json", '{"epochs": ' + DEEP + "}", "nested too deeply"),
        ("deep.yaml", "epochs: " + DEEP, "nested too deeply"),
        ("huge.json", '{"epochs": ' + HUGE_INTEGER + "}", "is not valid JSON"),
        ("huge.yaml", "epochs: " + HUGE_INTEGER, "unreadable value"),
        ("twice.json", '{"epochs": 1, "epochs": 3}', "gives 'epochs' twice"),
        ("twice.yaml", "epochs: 1\nepochs: 3\n", "'epochs' is given twice"),
        ("laughs.yaml", LAUGHS, "more than 100,000 values"),
    ],
)
def test_hostile_config_files_are_one_line_errors_found_fast(
    idx_dir, tmp_path, capsys, name, text, fragment
):
    path = tmp_path / name
    path.write_text(text)
    one_line_error(capsys, train(idx_dir, tmp_path / "runs", "--config", str(path)), fragment)


@pytest.mark.parametrize("device", ["cuda:²", "cuda:٣", "cuda: 1"])
def test_device_indices_must_be_ascii_digits(idx_dir, tmp_path, capsys, device):
    one_line_error(capsys, train(idx_dir, tmp_path, "--device", device), "unknown device")


@pytest.mark.parametrize("epsilon", ["1e-46", "1e-320"])
def test_an_epsilon_that_the_dtype_rounds_to_zero_is_refused(idx_dir, tmp_path, capsys, epsilon):
    one_line_error(capsys, train(idx_dir, tmp_path, "-eps", epsilon), "smallest normal")


def test_a_run_name_too_long_for_a_file_system_is_shortened(idx_dir, tmp_path):
    sizes = [str(size) for size in range(100, 160)]
    assert main(train(idx_dir, tmp_path, "-e", "1", "-nhl", "60", "-sz", *sizes)) == 0
    (run,) = tmp_path.iterdir()
    assert len(run.name) <= 120 and run.name.startswith("hl_60_sz_100-101-102")


def test_millions_of_tiny_layers_are_refused_at_once_for_their_bookkeeping(
    idx_dir, tmp_path, capsys
):
    error = one_line_error(capsys, train(idx_dir, tmp_path, "-nhl", "10000000", "-sz", "1"),
                           "needs", "784-1x10000000-10")  # fmt: skip
    assert len(error) < 400


def test_a_closed_pipe_or_an_ascii_terminal_never_stop_a_run(idx_dir, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, WANDB_MODE="disabled", PYTHONIOENCODING="ascii")
    command = [sys.executable, "-m", "fastmlp.cli", *train(idx_dir, tmp_path / "ü", "-e", "2")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.read(1)
    process.stdout.close()  # the reader goes away, as `| head -c 1` does
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr
    (run,) = (tmp_path / "ü").iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_resume_of_a_file_names_the_run_directory(trained, capsys):
    one_line_error(
        capsys, ["train", "--resume", str(trained / "config.json"), "--wandb_mode", "disabled"],
        "is a file; give the run directory",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ({"input_size": float("inf")}, "invalid model config"),
        ({"hidden_sizes": [float("inf")]}, "invalid model config"),
        ({"hidden_sizes": [[[[1]]]]}, "invalid model config"),
    ],
)
def test_checkpoints_with_absurd_sizes_are_one_line_errors(tmp_path, capsys, damage, fragment):
    config = {**fastmlp.MLP(4, (3,), 2).config, **damage}
    path = write_zip(tmp_path / "c.npz", {**valid_entries(tmp_path),
                                          "config.npy": npy_bytes(json.dumps(config))})  # fmt: skip
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(path)


def test_a_deeply_nested_checkpoint_entry_is_a_one_line_error(tmp_path):
    path = write_zip(tmp_path / "c.npz", {**valid_entries(tmp_path), "extra.npy": npy_bytes(DEEP)})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(path)


def test_predict_copes_with_class_names_that_do_not_fit(trained, tmp_path, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    model = fastmlp.load_checkpoint(trained / "checkpoint.npz").model
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "black.png")
    for names in (["a", "b"], "xy", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]):
        model.save(tmp_path / "odd.npz", extra={"class_names": names})
        capsys.readouterr()
        assert main(["predict", str(tmp_path / "odd.npz"), str(tmp_path / "black.png")]) == 0
        captured = capsys.readouterr()
        assert "showing class numbers" in captured.err
        assert captured.out.split(": ")[1].split(" ")[0].isdigit()


def test_predict_with_non_finite_parameters_says_so(tmp_path, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    model = fastmlp.MLP(hidden_sizes=(8,), seed=0)
    model.params[:] = np.nan
    model.save(tmp_path / "nan.npz")
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "black.png")
    one_line_error(capsys, ["predict", str(tmp_path / "nan.npz"), str(tmp_path / "black.png")],
                   "no finite probabilities")  # fmt: skip


def test_predict_names_what_a_path_is_when_it_is_not_an_image_file(trained, tmp_path, capsys):
    import os

    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    os.mkfifo(tmp_path / "fifo.png")
    one_line_error(capsys, ["predict", str(trained), str(tmp_path / "loop.png")],
                   "broken symbolic link")  # fmt: skip
    one_line_error(capsys, ["predict", str(trained), str(tmp_path / "fifo.png")],
                   "not a regular file")  # fmt: skip


def test_predict_of_an_image_just_over_pillows_warning_size_is_one_line(trained, tmp_path, capsys):
    pytest.importorskip("PIL")
    one_line_error(
        capsys, ["predict", str(trained), str(huge_png(tmp_path / "big.png", side=12000))],
        "too large to read safely",
    )  # fmt: skip


def test_samples_refuses_a_negative_seed(idx_dir, tmp_path, capsys):
    one_line_error(
        capsys,
        ["samples", "-d", "mnist", "--data_dir", str(idx_dir), "--seed", "-1", "--out",
         str(tmp_path / "s.png"), "--wandb_mode", "disabled"],
        "--seed",
    )  # fmt: skip


def test_evaluate_warns_when_asked_for_another_dataset_than_the_model_learned(
    trained, idx_dir, tmp_path, capsys
):
    args = ["evaluate", str(trained), "-d", "fashion_mnist", "--data_dir", str(idx_dir),
            "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert "was trained on mnist; evaluating it on fashion_mnist" in capsys.readouterr().err


def test_figures_are_written_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    from fastmlp.runs import figures

    figure = figures.new_figure(2, 2)
    path = tmp_path / "f.png"
    path.write_bytes(b"old")

    def broken_savefig(stream, **kwargs):
        stream.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    figure.savefig = broken_savefig
    with pytest.raises(OSError, match="No space left"):
        figures.save_figure(figure, path)
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_bench_checks_its_output_folder_and_data_before_running(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["bench", "--out", str(tmp_path / "file")], "is not a folder")
    one_line_error(
        capsys, ["bench", "--data_dir", str(tmp_path / "file"), "--out", str(tmp_path / "o"),
                 "--rounds", "1", "--batch_sizes", "32", "--samples", "64"],
        "is a file, not a folder",
    )  # fmt: skip
