"""Sweep workers placed on GPUs: round-robin over the visible GPUs, several per GPU, and the
errors, all without a GPU (fake device counts and CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import pytest

from fastmlp.cli import main
from fastmlp.sweep import SweepError, parse_sweep_config, placement, run_local_sweep
from fastmlp.sweep import local as local_engine
from fastmlp.sweep.placement import place_workers, sweep_device, visible_gpu_names


def gpus(count):
    """A fake GPU count."""
    return lambda: count


def no_gpu_probe():
    raise AssertionError("a CPU sweep must not probe for GPUs (it would import CuPy)")


def devices(places):
    return [place.device for place in places]


@pytest.mark.parametrize("device", ["cpu", "numpy", "numba", "CPU", None])
def test_cpu_sweeps_leave_the_device_to_the_trials_and_default_to_one_worker(device):
    assert devices(place_workers(device, None, None, no_gpu_probe)) == [None]
    places = place_workers(device, 3, None, no_gpu_probe)
    assert devices(places) == [None] * 3 and all(place.where == "" for place in places)


def test_auto_without_a_gpu_is_a_cpu_sweep_and_with_gpus_spreads_over_them():
    assert devices(place_workers("auto", 2, None, gpus(0), environ={})) == [None, None]
    assert devices(place_workers("auto", None, None, gpus(2), environ={})) == ["cuda:0", "cuda:1"]


@pytest.mark.parametrize("device", ["cuda", "gpu", "cupy"])
def test_workers_go_round_robin_over_every_visible_gpu(device):
    places = place_workers(device, 5, 3, gpus(2), environ={})
    assert devices(places) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert [place.where for place in places] == [
        "cuda:0",
        "cuda:1",
        "cuda:0, shared with worker 0",
        "cuda:1, shared with worker 1",
        "cuda:0, shared with workers 0, 2",
    ]


def test_without_workers_there_is_one_worker_per_gpu_times_workers_per_gpu():
    assert len(place_workers("cuda", None, None, gpus(3), environ={})) == 3
    places = place_workers("cuda", None, 2, gpus(3), environ={})
    assert devices(places) == ["cuda:0", "cuda:1", "cuda:2"] * 2


def test_cuda_n_puts_every_worker_on_gpu_n():
    assert devices(place_workers("cuda:1", None, 2, gpus(2), environ={})) == ["cuda:1"] * 2


def test_cuda_visible_devices_names_the_physical_gpu_behind_each_worker():
    environ = {"CUDA_VISIBLE_DEVICES": "2,3"}
    places = place_workers("cuda", None, None, gpus(2), environ=environ)
    assert devices(places) == ["cuda:0", "cuda:1"]  # numbered as CUDA numbers them here
    assert places[1].where == "cuda:1 (GPU 3 of CUDA_VISIBLE_DEVICES=2,3)"


def test_visible_gpu_names_follow_cuda_visible_devices_up_to_the_count_cuda_accepts():
    assert visible_gpu_names(2, {}) == ["0", "1"]
    assert visible_gpu_names(2, {"CUDA_VISIBLE_DEVICES": " 1, 0 "}) == ["1", "0"]
    uuid = "GPU-8f2c1a3e-0000-0000-0000-000000000000"
    assert visible_gpu_names(1, {"CUDA_VISIBLE_DEVICES": f"{uuid},7"}) == [uuid]  # 7: no GPU


@pytest.mark.parametrize(
    "device, workers, per_gpu, count, environ, message",
    [
        ("cuda", 3, None, 2, {}, r"--workers 3 is more than 2 GPU\(s\) x 1 .*--workers_per_gpu 2"),
        ("cuda", 5, 2, 2, {}, r"more than 2 GPU\(s\) x 2 worker\(s\).*--workers_per_gpu 3"),
        ("cuda:1", 2, None, 2, {}, r"more than 1 GPU\(s\) x 1 .*'cuda:1'"),
        ("cuda:3", None, None, 2, {}, r"'cuda:3' does not exist: 2 GPU\(s\).*cuda:0 to cuda:1"),
        ("cuda", None, None, 0, {}, "needs a CUDA GPU, and none is visible$"),
        ("cuda:0", None, None, 0, {"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES=''"),
        ("cpu", None, 2, 0, {}, "--workers_per_gpu is for sweeps on GPUs .device cpu"),
        ("auto", None, 2, 0, {}, "--workers_per_gpu is for sweeps on GPUs .device auto found no"),
        (None, None, 2, 0, {}, "trials choose their own device"),
        ("cuda", 0, None, 2, {}, "--workers must be at least 1"),
        ("cuda:x", None, None, 2, {}, "unknown device 'cuda:x'"),
    ],
)
def test_placements_that_cannot_be_honoured_are_one_line_errors(
    device, workers, per_gpu, count, environ, message
):
    with pytest.raises(SweepError, match=message) as error:
        place_workers(device, workers, per_gpu, gpus(count), environ=environ)
    assert "\n" not in str(error.value)


def test_the_sweep_device_is_the_option_else_the_config_constant_else_auto():
    def config(**parameters):
        return parse_sweep_config(
            {
                "method": "random",
                "metric": {"name": "val_accuracy", "goal": "maximize"},
                "parameters": {"hidden_size": {"values": [8, 16]}, **parameters},
            }
        )

    assert sweep_device("cuda:1", config(device={"value": "cpu"})) == "cuda:1"
    assert sweep_device(None, config(device={"value": "cuda"})) == "cuda"
    assert sweep_device(None, config(device={"values": ["cpu", "cuda"]})) is None
    assert sweep_device(None, config()) == "auto"


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """Two GPUs as far as the sweep can tell, and workers that only record what they got."""
    monkeypatch.setattr(local_engine, "check_device", lambda device, config: None)
    monkeypatch.setattr(placement, "cuda_device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    started = []
    monkeypatch.setattr(
        local_engine, "run_in_processes", lambda target, specs: started.extend(specs)
    )
    monkeypatch.setattr(local_engine, "run_worker", lambda spec: started.append(spec))
    return started


def test_a_gpu_sweep_gives_each_worker_its_gpu_and_says_where_each_runs(
    two_fake_gpus, tmp_path, capsys
):
    config = parse_sweep_config(
        {
            "name": "gpus",
            "method": "random",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {"hidden_size": {"values": [8, 16]}},
        }
    )
    run_local_sweep(config, out=tmp_path, count=8, device="cuda", workers_per_gpu=2)
    assert [spec.options.device for spec in two_fake_gpus] == ["cuda:0", "cuda:1"] * 2
    assert {spec.options.blas_threads for spec in two_fake_gpus} == {local_engine.blas_threads(4)}
    out = capsys.readouterr().out
    assert "8 to go on 4 worker(s)" in out
    assert "worker 0: cuda:0\n" in out and "worker 3: cuda:1, shared with worker 1\n" in out

    two_fake_gpus.clear()
    run_local_sweep(config, out=tmp_path, count=8, device="cpu", workers=2)
    assert [spec.options.device for spec in two_fake_gpus] == ["cpu", "cpu"]
    assert "worker 0:" not in capsys.readouterr().out  # CPU sweeps print what they always did


def test_fewer_trials_left_than_workers_start_the_first_places_only(two_fake_gpus, tmp_path):
    config = parse_sweep_config(
        {
            "name": "few",
            "method": "grid",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {"hidden_size": {"values": [8]}},
        }
    )
    run_local_sweep(config, out=tmp_path, device="cuda", workers_per_gpu=2)
    assert [spec.options.device for spec in two_fake_gpus] == ["cuda:0"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--device", "cuda:3"], "'cuda:3' does not exist"),
        (["--device", "cuda", "--workers", "3"], "--workers_per_gpu 2"),
        (["--device", "cpu", "--workers_per_gpu", "2"], "--workers_per_gpu is for sweeps on GPUs"),
        (
            ["--engine", "wandb", "--workers_per_gpu", "2"],
            "--workers_per_gpu is for --engine local",
        ),
        (["--port", "8080"], "--port: only for fastmlp sweep dashboard"),
    ],
)
def test_placement_errors_on_the_command_line_are_one_line_with_status_2(
    two_fake_gpus, tmp_path, capsys, options, message
):
    config = tmp_path / "gpu.yaml"
    config.write_text(
        "method: random\nrun_cap: 4\nmetric: {name: val_accuracy, goal: maximize}\n"
        "parameters:\n  hidden_size: {values: [8, 16]}\n"
    )
    assert main(["sweep", str(config), "--out", str(tmp_path / "sweeps"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not two_fake_gpus and not (tmp_path / "sweeps").exists()  # nothing ran or was made
