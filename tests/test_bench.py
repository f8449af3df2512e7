"""fastmlp bench: the interleaved comparison harness and time to accuracy, on tiny data."""

from __future__ import annotations

import json

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
