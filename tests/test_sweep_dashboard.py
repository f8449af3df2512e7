"""``fastmlp sweep dashboard``: a real optuna-dashboard server over a sweep's storage, asked
over loopback HTTP for the sweep's trials (and for one added while it serves), then stopped
with Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from fastmlp.cli import main
from fastmlp.sweep import parse_sweep_config, run_local_sweep
from fastmlp.sweep.dashboard import open_dashboard
from fastmlp.sweep.study import SweepDirectory, load_study, open_storage
from tests.datasets import write_idx_dataset

REPO = Path(__file__).resolve().parents[1]
TRIALS = 3


@pytest.fixture(scope="module", params=["journal", "sqlite"])
def sweep(request, tmp_path_factory):
    """A finished sweep of TRIALS one-epoch trials: (its directory, the --storage it used)."""
    root = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    storage = f"sqlite:///{root / 'sweeps.db'}" if request.param == "sqlite" else None
    config = parse_sweep_config(
        {
            "name": "live",
            "method": "grid",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {
                "dataset": {"value": "mnist"},
                "epochs": {"value": 1},
                "num_layers": {"value": 1},
                "hidden_size": {"values": [4, 8, 16]},
                "device": {"value": "cpu"},
            },
        }
    )
    run_local_sweep(
        config,
        out=root / "sweeps",
        storage=storage,
        data_dir=write_idx_dataset(root / "data"),
        wandb_mode="disabled",
        figures=False,
    )
    return root / "sweeps" / "live", storage


def add_trial(directory: Path, storage: str | None) -> None:
    """One more complete trial in the sweep's study."""
    study = load_study("live", open_storage(SweepDirectory(directory), storage, create=False))
    first = study.get_trials(deepcopy=False)[0]
    study.add_trial(
        optuna.trial.create_trial(params=first.params, distributions=first.distributions, value=0.5)
    )


def exit_status(args: list[str]) -> int:
    """main's exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(args)
    except SystemExit as exit_info:
        return int(exit_info.code)


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def first_line(stream, timeout: float) -> str:
    """The first line of ``stream``, or "" if none comes within ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def test_the_dashboard_serves_the_sweeps_trials_over_http_and_stops_cleanly_on_ctrl_c(
    sweep, tmp_path
):
    directory, storage = sweep
    command = [sys.executable, "-m", "fastmlp", "sweep", "dashboard", str(directory)]
    command += ["--port", "0", *(["--storage", storage] if storage else [])]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path)),
    )
    try:
        line = first_line(process.stdout, timeout=60)
        assert line.startswith("sweep live: dashboard at http://127.0.0.1:"), line
        page = line.split()[4]
        base = page.split("/dashboard/")[0]
        deadline = time.monotonic() + 30
        while True:  # the URL is printed once the server listens; poll anyway
            try:
                studies = get_json(f"{base}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.2)
        (study,) = [entry for entry in studies if entry["study_name"] == "live"]
        assert page == f"{base}/dashboard/studies/{study['study_id']}"
        detail = get_json(f"{base}/api/studies/{study['study_id']}")
        assert detail["name"] == "live" and len(detail["trials"]) == TRIALS
        assert {trial["state"] for trial in detail["trials"]} == {"Complete"}
        add_trial(directory, storage)  # as a worker would, while the page is open
        deadline = time.monotonic() + 30
        while len(get_json(f"{base}/api/studies/{study['study_id']}")["trials"]) == TRIALS:
            assert time.monotonic() < deadline, "the new trial never showed"
            time.sleep(0.5)
        with urllib.request.urlopen(page, timeout=5) as response:  # the web page itself
            assert response.status == 200 and "html" in response.headers["Content-Type"]
        for method, path in (("DELETE", ""), ("POST", "/rename")):  # a view, not an editor
            request = urllib.request.Request(
                f"{base}/api/studies/{study['study_id']}{path}", data=b"{}", method=method
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 405 and b"read-only" in refused.value.read()
        names = [
            entry["study_name"] for entry in get_json(f"{base}/api/studies")["study_summaries"]
        ]
        assert "live" in names
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 130, stderr
    assert stderr.strip() == "dashboard stopped", stderr  # no traceback, no request log


def test_a_busy_port_is_replaced_by_a_free_one(sweep):
    directory, storage = sweep
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        dashboard = open_dashboard(directory, storage=storage, port=port)
        try:
            assert dashboard.port not in (0, port)
            assert f"http://127.0.0.1:{dashboard.port}/dashboard/studies/" in dashboard.url
        finally:
            dashboard.server.server_close()


def test_without_optuna_dashboard_it_is_one_line_naming_the_pip_command(sweep, monkeypatch, capsys):
    directory, storage = sweep
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails
    args = ["sweep", "dashboard", str(directory), *(["--storage", storage] if storage else [])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "fastmlp[sweep]"' in err, err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--host", "no-such-host.invalid"], "cannot serve the dashboard on no-such-host.invalid"),
        (["--count", "3"], "takes only --port, --host and --storage (got --count)"),
        (["--port", "70000"], "must be a port from 0 to 65535"),
    ],
)
def test_bad_dashboard_options_are_one_line_errors(sweep, capsys, arguments, message):
    directory, storage = sweep
    args = ["sweep", "dashboard", str(directory), *arguments]
    assert exit_status([*args, *(["--storage", storage] if storage else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_folder_that_is_no_local_sweep_is_a_one_line_error(tmp_path, capsys):
    assert main(["sweep", "dashboard", str(tmp_path)]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err
    (tmp_path / "sweep.json").write_text(
        json.dumps({"name": "w", "engine": "wandb", "wandb_sweep_id": "abc", "wandb_project": "p"})
    )
    assert main(["sweep", "dashboard", str(tmp_path)]) == 2
    assert "its live view is its W&B sweep page" in capsys.readouterr().err
