"""Where a sweep lives: its directory, its Optuna study, and the bookkeeping of its trials.

``OUT/NAME/`` holds

* ``sweep.json``    -- the sweep's name, engine, storage and configuration;
* ``study.journal`` -- the Optuna study (a JournalStorage file: several processes can append
  to it at once, and it survives any crash), unless ``--storage`` names another place (a
  database shared by several machines: ``postgresql://`` through psycopg 3, opened under a
  start-up lock so that any number of machines can start at once, see :func:`startup_lock`);
* ``runs/``         -- one run directory per trial, as ``fastmlp train`` writes them;
* ``report/``       -- what ``fastmlp sweep report`` writes.

Each trial carries user attributes: ``host`` and ``pid`` of the worker running it,
``run_dir`` (relative to the sweep directory), ``val_accuracy``, ``best_val_accuracy``,
``test_accuracy`` and ``epochs`` of its run, ``failure`` (why it failed), ``interrupted``
(stopped by Ctrl-C or a killed worker: it does not count toward the sweep's trials and its
configuration is queued to run again) and ``retry_of`` (the interrupted trial it repeats).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.errors import MissingDependencyError, UserError, describe, one_line
from fastmlp.files import atomic_write_text, parse_json
from fastmlp.sweep.config import SweepConfig, sweep_identity


class SweepError(UserError):
    """A sweep cannot be created, continued or read; the message says why and what to do."""


def require_optuna() -> None:
    """Raise a one-line ImportError saying what to install when Optuna is missing."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            'the local sweep engine needs Optuna: pip install "fastmlp[sweep]"'
        ) from None


class SweepDirectory:
    """The files of one sweep under ``path``."""

    INFO = "sweep.json"
    JOURNAL = "study.journal"

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def runs(self) -> Path:
        return self.path / "runs"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def journal(self) -> Path:
        return self.path / self.JOURNAL

    def read_info(self) -> dict[str, Any]:
        """What ``sweep.json`` records; an error when ``path`` is not a sweep directory."""
        info = self.path / self.INFO
        if not info.is_file():
            raise SweepError(f"{self.path} is not a sweep directory (no {self.INFO})")
        return self._read(info)

    def _read(self, path: Path) -> dict[str, Any]:
        """``sweep.json``, checked: a JSON object whose ``name`` is the sweep's name."""
        try:
            data = parse_json(path.read_text(encoding="utf-8"), str(path))
        except (UserError, UnicodeDecodeError, OSError) as error:
            raise SweepError(f"cannot read {path}: {describe(error)}") from None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise SweepError(
                f"{path} is not a fastmlp sweep file (no sweep name in it); remove it to start "
                "the sweep afresh"
            )
        return data

    def update_info(self, **entries: Any) -> None:
        """Add or replace entries of ``sweep.json`` (written atomically)."""
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / self.INFO
        info = (
            self._read(path)
            if path.is_file()
            else {
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
            }
        )
        info.update(entries)
        atomic_write_text(path, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")


def storage_label(url: str | None) -> str:
    """``url`` as it may be shown and stored: the password replaced by ``***``."""
    if url is None:
        return SweepDirectory.JOURNAL
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


# Every fastmlp process holds this PostgreSQL advisory lock (the key spells "fastmlp") while it
# creates Optuna's tables or a sweep's study, so that any number of machines can start at once.
STARTUP_LOCK_KEY = int.from_bytes(b"fastmlp", "big")
# Seconds to wait for the start-up lock (holding it takes well under a second).
STARTUP_LOCK_TIMEOUT_S = 60


def database_url(url: str) -> str:
    """``url`` with its database driver named: ``postgresql://`` (and ``postgres://``) means
    psycopg 3 (``postgresql+psycopg://``), whatever SQLAlchemy's own default; a URL that
    names its driver (``postgresql+psycopg2://``) is left alone."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


@contextmanager
def startup_lock(url: str) -> Iterator[None]:
    """Hold fastmlp's start-up lock on the database at ``url`` (PostgreSQL; others: no lock).

    Creating Optuna's tables, and a study with its configuration, take several statements;
    machines that run them at the same moment on an empty database fail
    (``UniqueViolation ... pg_type_typname_nsp_index``). A session-level advisory lock on a
    connection of its own makes them take turns; the server releases it when that connection
    closes, so a process killed while holding it holds nobody up.
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        if engine.dialect.name != "postgresql":
            yield
            return
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sqlalchemy.text(f"SET lock_timeout = '{STARTUP_LOCK_TIMEOUT_S}s'"))
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK_KEY}
            )
            yield
    finally:
        engine.dispose()


def machines_lock(url: str | None) -> AbstractContextManager[None]:
    """What makes "count the trials, then start one" atomic across machines: the database's
    advisory lock (PostgreSQL) for a storage URL; nothing more for a journal file, which only
    one machine's workers share (:func:`ask_lock_path` covers them)."""
    if url is None or "://" not in url:
        return nullcontext()
    return startup_lock(database_url(url))


def _database_error(url: str, error: Exception) -> UserError:
    """The one-line error for the database at ``url`` (as given) that cannot be used: no
    driver, unreachable, refused, ..."""
    if isinstance(error, ImportError):
        if database_url(url).startswith("postgresql+psycopg://"):
            return MissingDependencyError(
                "a postgresql:// --storage needs the psycopg driver: "
                'pip install "fastmlp[postgres]"'
            )
        return MissingDependencyError(
            f"--storage {storage_label(url)} needs its database driver, which is not installed "
            f"({one_line(error)})"
        )
    cause = getattr(error, "orig", None) or error  # the driver's message, without SQLAlchemy's
    if getattr(cause, "sqlstate", None) == "55P03":  # lock_not_available: the lock timed out
        return SweepError(
            f"cannot open --storage {storage_label(url)}: another fastmlp process has held its "
            f"start-up lock for {STARTUP_LOCK_TIMEOUT_S} s (is one hanging? stop it and retry)"
        )
    return SweepError(f"cannot open --storage {storage_label(url)}: {one_line(cause)}")


def open_storage(directory: SweepDirectory, url: str | None = None, create: bool = True) -> Any:
    """The Optuna storage of a sweep.

    Args:
        directory: the sweep directory; its ``study.journal`` is the default storage.
        url: a database URL (``postgresql://user:password@host/db``, ``mysql://...``,
            ``sqlite:///path``: any Optuna RDB URL) shared by workers on several machines,
            or the path of a journal file on a shared file system.
        create: make the journal file if it does not exist (False: reading a sweep).
    """
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is not None and "://" in url:
        try:
            with startup_lock(database_url(url)):
                return RDBStorage(database_url(url))
        except Exception as error:  # any failure to reach or set up the database
            raise _database_error(url, error) from None
    path = Path(url) if url is not None else directory.journal
    if path.is_dir():
        raise SweepError(f"--storage {path} is a folder; give a journal file or a database URL")
    if path.exists() and not path.is_file():
        raise SweepError(f"--storage {path} is not a regular file (a device?); give a journal file")
    if not create and not path.exists():
        raise SweepError(
            f"{path} does not exist: the sweep has not run yet, or its trials are stored "
            "elsewhere (pass --storage)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return guarded(path, lambda: JournalStorage(JournalFileBackend(str(path))))


def guarded(where: Path | str, action: Any) -> Any:
    """``action()``, with a corrupt storage turned into a SweepError naming it (Optuna reads a
    damaged journal with whatever error the damage happens to cause)."""
    try:
        return action()
    except (SweepError, KeyboardInterrupt):
        raise
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as error:
        raise SweepError(
            f"the sweep's storage {where} is corrupt ({type(error).__name__}: "
            f"{one_line(error)}); restore it from a backup, or start the sweep under a new --name"
        ) from None


def ask_lock_path(directory: SweepDirectory, url: str | None = None) -> str:
    """The lock that makes "count the trials, then start one" atomic among one machine's
    workers: beside the journal (shared by every worker that shares the journal), or in the
    sweep directory for a database (where :func:`machines_lock` covers the other
    machines)."""
    if url is not None and "://" not in url:
        return f"{url}.ask"
    return str(directory.path / "ask")


def this_worker() -> dict[str, Any]:
    """The user attributes that name the current process as a trial's worker."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie does not: a killed worker
    whose parent died too stays one where nothing reaps orphans, as in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): the signal's answer stands
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"  # the state follows "(command)"


def set_trial_attributes(study: Any, trial: Any, attributes: dict[str, Any]) -> None:
    """Set user attributes of a trial given as a FrozenTrial (or a live Trial)."""
    trial_id = trial._trial_id  # FrozenTrial and Trial both carry the storage id
    for key, value in attributes.items():
        study._storage.set_trial_user_attr(trial_id, key, value)


def requeue(study: Any, trial: Any) -> None:
    """Queue an interrupted trial's configuration to run again (a grid point is not lost)."""
    if trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


def fail_stale_trials(study: Any, asking_locked: bool = False) -> list[int]:
    """Mark RUNNING trials whose worker process on this machine is gone as failed.

    A worker that was killed (``kill -9``, a crash, the machine's OOM killer) leaves its trial
    RUNNING. Such a trial is recorded as FAIL with ``interrupted=True`` and its configuration
    is queued again. Trials of workers on other machines are left alone: a worker on that
    machine clears them when it starts.

    A worker names itself in a trial right after asking for it, both under the locks that
    serialise asking (``_next_trial``). So with ``asking_locked`` (the caller holds them), a
    RUNNING trial that names no worker was left by one killed between the two, on any
    machine, and is marked too.

    Returns:
        The numbers of the trials marked.
    """
    from optuna.trial import TrialState

    host, pid = socket.gethostname(), os.getpid()
    marked = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, worker_pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
        if worker_pid is None and asking_locked:
            failure = "its worker stopped before it started the trial"
        elif (
            worker_host != host
            or worker_pid is None
            or worker_pid == pid
            or _process_alive(worker_pid)
        ):
            continue
        else:
            failure = f"its worker (pid {worker_pid}) stopped before the trial finished"
        set_trial_attributes(study, trial, {"failure": failure, "interrupted": True})
        study.tell(trial.number, state=TrialState.FAIL)
        requeue(study, trial)
        marked.append(trial.number)
    return marked


@dataclass(frozen=True)
class Progress:
    """How many trials of a sweep are in each state."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0

    @property
    def counted(self) -> int:
        """Trials that count toward the sweep's total: finished, failed, or running now."""
        return self.complete + self.pruned + self.failed + self.running

    def describe(self) -> str:
        parts = [f"{self.complete} complete", f"{self.pruned} pruned", f"{self.failed} failed"]
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted (rerun)")
        if self.running:
            parts.append(f"{self.running} running")
        return ", ".join(parts)


def progress(study: Any) -> Progress:
    """Count the started trials of ``study`` by state (interrupted ones apart from failures;
    queued reruns are not counted until they start)."""
    from optuna.trial import TrialState

    counts = dict.fromkeys(("complete", "pruned", "failed", "interrupted", "running"), 0)
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
    }
    for trial in study.get_trials(deepcopy=False, states=tuple(names)):
        name = names[trial.state]
        if name == "failed" and trial.user_attrs.get("interrupted"):
            name = "interrupted"
        counts[name] += 1
    return Progress(**counts)


def create_or_load_study(config: SweepConfig, storage: Any) -> Any:
    """The sweep's study: created on first use, else loaded after checking that it was
    created from the same configuration (same method, metric, parameters, early_terminate).
    On a PostgreSQL storage this holds the start-up lock, so that of several machines
    starting at once exactly one creates the study and stores its configuration."""
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    if not isinstance(storage, RDBStorage):
        return _create_or_load_study(config, storage)
    try:
        with startup_lock(storage.url):
            return _create_or_load_study(config, storage)
    except sqlalchemy.exc.SQLAlchemyError as error:  # the database went away meanwhile
        raise _database_error(storage.url, error) from None


def _create_or_load_study(config: SweepConfig, storage: Any) -> Any:
    import optuna

    study = guarded(
        config.name,
        lambda: optuna.create_study(
            storage=storage, study_name=config.name, direction=config.goal, load_if_exists=True
        ),
    )
    stored = guarded(config.name, lambda: study.user_attrs.get("config"))
    if stored is None:
        study.set_user_attr("config", config.raw)
    elif sweep_identity(stored) != sweep_identity(config.raw):
        raise SweepError(
            f"sweep {config.name!r} already exists with a different configuration; "
            "pass --name NEW_NAME to start another sweep"
        )
    return study


def load_study(name: str, storage: Any, sampler: Any = None, pruner: Any = None) -> Any:
    """An existing sweep's study."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise SweepError(f"the storage holds no sweep named {name!r}") from None
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as error:
        raise SweepError(
            f"the storage of sweep {name!r} is corrupt ({type(error).__name__}: {one_line(error)})"
        ) from None
