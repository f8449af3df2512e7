"""One sweep on several machines through a real PostgreSQL server (``--storage postgresql://``).

Each "machine" is a ``fastmlp sweep`` process of its own in a working directory of its own
(its own ``sweeps/NAME/``), all against one database of a throwaway PostgreSQL cluster
(``tests/postgres_server.py``; ``.ci/run`` installs Debian's ``postgresql`` package).
"""

from __future__ import annotations

import csv
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("yaml")
pytest.importorskip("psycopg")

from fastmlp.cli import main  # noqa: E402
from fastmlp.sweep.study import (  # noqa: E402
    SweepDirectory,
    SweepError,
    _process_alive,
    database_url,
    load_study,
    open_storage,
)
from tests.datasets import write_idx_dataset  # noqa: E402
from tests.postgres_server import PostgresServer, free_port, postgres_bin_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Trials of well under a second (NumPy backend: no kernels to compile), each machine always
# running one (so a kill lands mid-trial).
CONFIG = """\
name: shared
method: random
metric: {name: val_accuracy, goal: maximize}
parameters:
  dataset: {value: mnist}
  device: {value: numpy}
  num_layers: {value: 1}
  batch_size: {value: 16}
  epochs: {value: 1}
  hidden_size: {values: [8, 16, 32, 64]}
  learning_rate: {distribution: log_uniform_values, min: 1.0e-3, max: 3.0e-2}
"""

# `python -c AT_THE_SIGNAL GO ARGS...` imports fastmlp, writes GO.PID (ready), waits for the
# file GO, then runs `fastmlp ARGS...`: processes started together reach the database within
# milliseconds of each other.
AT_THE_SIGNAL = """\
import os, pathlib, sys, time
import fastmlp.cli, fastmlp.sweep.local, optuna, psycopg
go = pathlib.Path(sys.argv[1])
go.with_name(f"{go.name}.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.001)
sys.exit(fastmlp.cli.main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for this module's tests, stopped and removed at the end."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The sweep config file, the dataset and the environment of every machine."""
    root = tmp_path_factory.mktemp("machines")
    config = root / "shared.yaml"
    config.write_text(CONFIG)
    data = write_idx_dataset(root / "data", train=600, test=100)
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(root), WANDB_MODE="disabled")
    return config, data, env


def sweep_arguments(config: Path, data: Path, url: str, count: int, workers: int) -> list[str]:
    return [
        "sweep",
        str(config),
        "--count",
        str(count),
        "--workers",
        str(workers),
        "--storage",
        url,
        "--data_dir",
        str(data),
        "--wandb_mode",
        "disabled",
    ]


def start_machine(directory: Path, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``command`` in ``directory``, in a session of its own (so all of it can be killed)."""
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command,
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def processes_of(session: int) -> set[int]:
    """Every process of a session: a sweep's main process and its workers (each of which is
    in a process group of its own, so killing the main one's group would leave them)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    found.add(int(entry.name))
            except ProcessLookupError:
                continue
    return found


def signal_machine(machine: subprocess.Popen, signal_number: int) -> set[int]:
    """Send ``signal_number`` to every process of a machine; returns those processes."""
    processes = processes_of(machine.pid)
    for pid in processes:
        try:
            os.kill(pid, signal_number)
        except ProcessLookupError:
            continue
    return processes


def freeze_machine(machine: subprocess.Popen) -> set[int]:
    """SIGSTOP every process of a machine, including any it started while being frozen."""
    frozen: set[int] = set()
    while processes_of(machine.pid) - frozen:
        frozen |= signal_machine(machine, signal.SIGSTOP)
    return frozen


def kill_machine(machine: subprocess.Popen) -> None:
    """SIGKILL every process of a machine at once, as when it loses power."""
    signal_machine(machine, signal.SIGKILL)
    machine.communicate(timeout=30)


@functools.cache
def storage(url: str):
    """One storage per database for the whole module: polling opens no connection each time
    (the machines' own connections and start-up lock are left to them)."""
    return open_storage(SweepDirectory("."), url)


def trials(url: str) -> list:
    """The trials of sweep ``shared`` (none while no machine has created it yet)."""
    try:
        study = load_study("shared", storage(url))
    except SweepError:
        return []
    return study.get_trials(deepcopy=False)


def test_any_number_of_machines_can_start_at_once_on_an_empty_database(postgres, setup, tmp_path):
    config, data, env = setup
    url = postgres.create_database("started_together")
    go = tmp_path / "go"
    arguments = sweep_arguments(config, data, url, count=4, workers=1)
    command = [sys.executable, "-c", AT_THE_SIGNAL, str(go), *arguments]
    machines = [start_machine(tmp_path / f"machine{index}", command, env) for index in range(4)]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("go.*"))) < len(machines):  # all of them are ready
            assert time.monotonic() < deadline and all(m.poll() is None for m in machines)
            time.sleep(0.05)
        go.touch()
        results = [machine.communicate(timeout=120) for machine in machines]
    finally:
        for machine in machines:
            if machine.poll() is None:
                kill_machine(machine)
    for machine, (_, stderr) in zip(machines, results):
        assert machine.returncode == 0, stderr  # no UniqueViolation creating the tables
    import psycopg

    with psycopg.connect(postgres.url("started_together")) as connection:
        (studies,) = connection.execute("SELECT count(*) FROM studies").fetchone()
        (versions,) = connection.execute("SELECT count(*) FROM alembic_version").fetchone()
    assert (studies, versions) == (1, 1)
    recorded = trials(url)
    assert {trial.state.name for trial in recorded} == {"COMPLETE"}
    # Counting the trials and starting one happens under the database's advisory lock, so
    # machines asking for the last trial at the same moment do not overshoot --count.
    assert len(recorded) == 4


def test_a_machine_waits_for_the_start_up_lock_and_says_so_if_it_is_never_released(
    postgres, tmp_path, monkeypatch
):
    import psycopg

    from fastmlp.sweep import study

    url = postgres.create_database("locked")
    monkeypatch.setattr(study, "STARTUP_LOCK_TIMEOUT_S", 1)
    with psycopg.connect(postgres.url("locked"), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (study.STARTUP_LOCK_KEY,))
        started = time.monotonic()
        with pytest.raises(SweepError, match="another fastmlp process has held its start-up lock"):
            open_storage(SweepDirectory(tmp_path), url)
        assert time.monotonic() - started >= 1
    open_storage(SweepDirectory(tmp_path), url)  # released with the holder's connection


def first_machine_states(machine, url: str, processes: set[int] | None = None) -> list[str]:
    """The states of the trials that ``machine``'s processes (or ``processes``) ran."""
    processes = processes_of(machine.pid) if processes is None else processes
    return [trial.state.name for trial in trials(url) if trial.user_attrs.get("pid") in processes]


def killable(states: list[str]) -> bool:
    """Whether a machine has finished a trial and is running another."""
    return "COMPLETE" in states and "RUNNING" in states


def test_two_machines_share_one_sweep_and_one_finishes_it_when_the_other_is_killed(
    postgres, setup, tmp_path
):
    config, data, env = setup
    url = postgres.create_database("two_machines")
    count = 10  # the kill comes well before it: the finish is the second machine's alone
    command = [sys.executable, "-m", "fastmlp", *sweep_arguments(config, data, url, count, 2)]
    first = start_machine(tmp_path / "first", command, env)
    second = start_machine(tmp_path / "second", command, env)
    try:
        # Kill the first machine outright once it has finished a trial and is running others.
        # Its trials last well under a second, so once it looks so it is frozen (SIGSTOP) and
        # looked at again: a trial seen running then cannot finish before the kill lands.
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the first machine never finished a trial"
            assert first.poll() is None, first.communicate()
            if killable(first_machine_states(first, url)):
                processes = freeze_machine(first)
                time.sleep(0.2)  # a commit already on its way reaches the database
                if killable(first_machine_states(first, url, processes)):
                    break
                signal_machine(first, signal.SIGCONT)
            time.sleep(0.05)
        kill_machine(first)
        _, stderr = second.communicate(timeout=90)
    finally:
        for machine in (first, second):
            if machine.poll() is None:
                kill_machine(machine)
    assert second.returncode == 0, stderr

    recorded = trials(url)
    numbers = sorted(trial.number for trial in recorded)
    assert numbers == list(range(len(recorded)))  # every trial recorded once
    first_ran = [trial for trial in recorded if trial.user_attrs.get("pid") in processes]
    left = [trial for trial in first_ran if trial.state.name != "COMPLETE"]
    assert left  # the first machine was killed mid-trial
    for trial in left:  # its running trials: failed by the second machine, and run again
        assert trial.state.name == "FAIL" and trial.user_attrs["interrupted"]
        (rerun,) = [other for other in recorded if other.user_attrs.get("retry_of") == trial.number]
        assert rerun.state.name == "COMPLETE" and rerun.params == trial.params
    assert "RUNNING" not in {trial.state.name for trial in recorded}
    counted = [trial for trial in recorded if not trial.user_attrs.get("interrupted")]
    assert len(counted) == count  # --count is the sweep's total over both machines
    assert {trial.state.name for trial in counted} == {"COMPLETE"}

    # Each finished trial's run directory is on the machine that ran it, and only there.
    runs = {
        machine: {path.name for path in (tmp_path / machine / "sweeps/shared/runs").iterdir()}
        for machine in ("first", "second")
    }
    ran_on = {}
    for trial in counted:
        ran_on[trial.number] = "first" if trial.user_attrs["pid"] in processes else "second"
        name = Path(trial.user_attrs["run_dir"]).name
        other = "second" if ran_on[trial.number] == "first" else "first"
        assert name in runs[ran_on[trial.number]] and name not in runs[other]
    assert set(ran_on.values()) == {"first", "second"}  # both machines ran trials

    # From a third machine, which has no sweep directory, the report sees every trial.
    third = tmp_path / "third"
    third.mkdir()
    report = subprocess.run(
        [sys.executable, "-m", "fastmlp", "sweep", "report", "sweeps/shared", "--storage", url],
        cwd=third,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    with open(third / "sweeps/shared/report/trials.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(recorded)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_worker_left_as_a_zombie_counts_as_stopped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not _process_alive(child.pid)
    child.wait()
    assert not _process_alive(child.pid) and _process_alive(os.getpid())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db/sweeps", "postgresql+psycopg://u:p@db/sweeps"),
        ("postgres://u@db:5433/sweeps", "postgresql+psycopg://u@db:5433/sweeps"),
        ("postgresql+psycopg2://u@db/sweeps", "postgresql+psycopg2://u@db/sweeps"),
        ("mysql://u@db/sweeps", "mysql://u@db/sweeps"),
        ("sqlite:///sweeps.db", "sqlite:///sweeps.db"),
    ],
)
def test_postgresql_urls_use_psycopg_3_whatever_sqlalchemy_defaults_to(url, expected):
    assert database_url(url) == expected


def test_a_postgresql_storage_without_its_driver_names_the_extra(tmp_path, capsys, monkeypatch):
    (tmp_path / "shared.yaml").write_text(CONFIG)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails
    arguments = ["sweep", str(tmp_path / "shared.yaml"), "--count", "1", "--out", str(tmp_path)]
    assert main([*arguments, "--storage", "postgresql://u@127.0.0.1:1/db"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and 'pip install "fastmlp[postgres]"' in error


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path, capsys):
    (tmp_path / "shared.yaml").write_text(CONFIG)
    arguments = ["sweep", str(tmp_path / "shared.yaml"), "--count", "1", "--out", str(tmp_path)]
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/db"
    assert main([*arguments, "--storage", url]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot open --storage postgresql://user:***@" in error
    assert "secret" not in error and "Connection refused" in error
    assert not (tmp_path / "shared").exists()
