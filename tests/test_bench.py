"""fastmlp bench: the interleaved comparison harness and time to accuracy, on tiny data."""

from __future__ import annotations

import json
import re

import pytest

from fastmlp.bench import compare, markdown_table, write_report
from fastmlp.bench.time_to_accuracy import time_to_accuracy
from fastmlp.cli import main
from tests.datasets import write_idx_dataset


@pytest.fixture
def idx_dir(tmp_path):
    return write_idx_dataset(tmp_path / "data", train=600, test=200)


def test_comparison_interleaves_contenders_and_reports_median_ratios(idx_dir, tmp_path):
    pytest.importorskip("torch")
    logged = []
    results, source = compare(
        [32, 128],
        rounds=2,
        samples=256,
        competitors=("torch",),
        data_dir=str(idx_dir),
        log=logged.append,
    )
    assert source == "Fashion-MNIST"
    assert [result.batch_size for result in results] == [32, 128]
    for result in results:
        names = list(result.samples_per_second)
        assert names[0].startswith("fastmlp") and names[1].startswith("torch eager")
        ours, theirs = result.samples_per_second.values()
        assert len(ours) == len(theirs) == 2 and min(ours + theirs) > 0
        per_round = sorted(a / b for a, b in zip(ours, theirs))
        assert result.median_ratio(names[1]) == pytest.approx(sum(per_round) / 2)
    assert len(logged) == 4 and logged[0].startswith("batch 32 round 1/2")
    table = markdown_table(results)
    assert table.splitlines()[2].startswith("| 32 |") and "×)" in table
    json_path, markdown_path = write_report(results, source, "cpu", tmp_path / "out")
    report = json.loads(json_path.read_text())
    assert report["machine"]["versions"]["numpy"] and report["machine"]["cores"]
    assert report["results"][0]["median_ratio"]
    assert table in markdown_path.read_text()


def test_every_contender_runs_in_its_own_process_with_the_floor_as_a_row(idx_dir, tmp_path):
    results, _ = compare(
        [64],
        rounds=2,
        samples=256,
        competitors=("careful-numpy", "fastmlp-numpy", "fastmlp-float64", "floor"),
        data_dir=str(idx_dir),
        log=lambda line: None,
    )
    (result,) = results
    names = list(result.samples_per_second)
    assert names == [
        names[0],
        "fastmlp (numpy, numpy)",
        "fastmlp (" + names[0].split("(")[1].split(",")[0] + ", cpu, float64)",
        "careful NumPy",
        "matmul floor",
    ]
    assert all(len(rates) == 2 and min(rates) > 0 for rates in result.samples_per_second.values())
    assert result.floor == "matmul floor" and result.share_of_floor(names[0]) > 0
    assert set(result.reruns) == set(names) and all(count >= 0 for count in result.reruns.values())
    table = markdown_table(results)
    assert "(share of floor)" in table and re.search(r"^\| 64 \| [\d,]+ \(\d+%\) \|", table, re.M)
    json_path, _ = write_report(results, "Fashion-MNIST", "cpu", tmp_path / "out")
    assert json.loads(json_path.read_text())["results"][0]["share_of_floor"]["matmul floor"] == 1


def test_a_contender_that_cannot_run_is_reported_not_fatal(idx_dir):
    results, _ = compare(
        [32], device="cpu", rounds=1, samples=128, competitors=("floor",),
        data_dir=str(idx_dir), log=lambda line: None,
    )  # fmt: skip
    assert list(results[0].samples_per_second)[1] == "matmul floor"
    from fastmlp.bench.competitors import make_contender

    with pytest.raises(ValueError, match="CPU only"):
        make_contender("floor", None, None, 32, "cuda")


def test_careful_numpy_trains_the_reference_network():
    import numpy as np

    from fastmlp.bench.careful_numpy import CarefulNumpy

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=2048)
    x = rng.random((2048, 784), dtype=np.float32) * 0.1
    x[np.arange(2048), y * 70] = 1.0  # a learnable pixel per class
    trainer = CarefulNumpy(x, y, 64)
    for _ in range(3):
        trainer.epoch()
    a = x
    for index, (weight, bias) in enumerate(zip(trainer.weights, trainer.biases, strict=True)):
        a = a @ weight + bias
        if index < 3:
            a = np.maximum(a, 0)
    assert (a.argmax(axis=1) == y).mean() > 0.9


def test_the_profile_adds_up_to_the_step(idx_dir):
    from fastmlp.bench.profile import ORDER, profile, profile_table

    (row,) = profile([32], samples=256, data_dir=str(idx_dir))
    assert list(row.seconds) == list(ORDER) and row.steps == 8
    assert all(seconds >= 0 for seconds in row.seconds.values())
    assert row.seconds["matmul"] > 0 and row.seconds["optimizer"] > 0
    assert "| 32 |" in profile_table([row])


def test_time_to_accuracy_stops_at_the_first_epoch_reaching_the_target(idx_dir):
    result = time_to_accuracy(0.5, device="cpu", max_epochs=10, data_dir=str(idx_dir))
    assert result.reached and 1 <= result.epochs <= 10
    assert result.test_accuracy >= 0.5
    assert 0 < result.load_seconds < result.seconds


def test_bench_command_reports_an_unreached_target_with_status_1(tmp_path, capsys, monkeypatch):
    import numpy as np

    import fastmlp.bench.time_to_accuracy as module
    from fastmlp.data import save_idx
    from tests.datasets import FILES

    data = write_idx_dataset(tmp_path / "data")
    # test labels at random: 100% test accuracy cannot be reached
    random_labels = np.random.default_rng(0).integers(0, 10, size=200).astype(np.uint8)
    save_idx(data / FILES["test_labels"], random_labels)
    one_epoch = module.time_to_accuracy
    monkeypatch.setattr(
        module, "time_to_accuracy", lambda target, **kw: one_epoch(target, max_epochs=1, **kw)
    )
    status = main(["bench", "--time_to_accuracy", "1", "--data_dir", str(data)])
    assert status == 1
    assert "not reached in 1 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["1.01", "0", "-1", "nan", "inf"])
def test_bench_command_refuses_a_target_that_is_not_an_accuracy(target, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--time_to_accuracy", target])
    assert exit_info.value.code == 2
    assert "must be an accuracy in (0, 1]" in capsys.readouterr().err


def test_stacks_report_per_model_rates_against_one_model(idx_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert main(["bench", "--stack", "2", "3", "--hidden_sizes", "8", "--batch_sizes", "32",
                 "--rounds", "2", "--samples", "128", "--data_dir", str(idx_dir),
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "fastmlp stack of 2 (" in printed and "samples/s per model (× one model)" in printed
    report = json.loads((out / "compare-cpu-stack.json").read_text())
    assert report["network"] == "784-8-10"
    (result,) = report["results"]
    single, two, three = result["samples_per_second"]
    rates = result["samples_per_second"]
    for stack in (two, three):
        per_round = sorted(b / a for a, b in zip(rates[single], rates[stack]))
        assert result["median_speedup"][stack] == pytest.approx(sum(per_round) / 2)
    assert (out / "compare-cpu-stack.png").stat().st_size > 0


def test_the_stack_curve_is_each_stacks_median_per_model_speedup():
    from fastmlp.bench.compare import BatchResult
    from fastmlp.bench.stack_curve import stack_speedups

    result = BatchResult(64, 1024, 3, {
        "fastmlp (numba, cpu)": [100.0, 200.0, 100.0],
        "fastmlp stack of 4 (numba, cpu)": [150.0, 200.0, 300.0],
        "fastmlp stack of 2 (numba, cpu)": [110.0, 220.0, 90.0],
    })  # fmt: skip
    assert stack_speedups(result) == {1: 1.0, 2: pytest.approx(1.1), 4: pytest.approx(1.5)}
