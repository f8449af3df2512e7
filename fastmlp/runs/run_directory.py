"""The local run directory: everything a run produces, written as it goes.

``runs/<run-name>/`` holds

* ``config.json``    -- the full configuration and the environment it ran in (at start);
* ``metrics.jsonl``  -- one JSON object per epoch, appended and fsynced after each epoch;
* ``checkpoint.npz`` -- model + optimizer state after the latest completed epoch;
* ``summary.json``   -- final results (test accuracy, time, status), written last;
* figures (``*.png``);
* ``.lock``          -- held by the process training the run (who, since when).

Order of the writes after epoch k: the metrics line, then the checkpoint. A kill at any
instant therefore leaves a checkpoint of epoch j and metrics lines for epochs 1..j, plus
possibly line j + 1 (complete or torn): resuming drops what lies beyond the checkpoint and
trains epoch j + 1 again, which repeats it exactly. JSON files are replaced atomically.

Two processes never train one directory at once: a new directory is claimed with an
exclusive ``mkdir`` (a taken name gets ``-2``, ``-3``...) and locked at once, and the trainer
holds the exclusive lock on ``.lock`` until it ends (the operating system releases it if the
process dies).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from fastmlp.errors import UserError
from fastmlp.files import atomic_write_json, atomic_write_text, check_size, parse_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection
    fcntl = None


class RunDirectoryError(UserError):
    """A run directory is missing, busy, or holds a file that cannot be read."""


@dataclass(frozen=True)
class Metrics:
    """The rows of ``metrics.jsonl``; ``torn`` when a torn last line was left out."""

    rows: list[dict[str, Any]]
    torn: bool = False


class RunDirectory:
    """Files of one training run under ``root / name``."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.npz"
    BEST = "best.npz"
    LOCK = ".lock"

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_handle: int | None = None

    @classmethod
    def create(cls, root: str | PathLike[str], name: str) -> RunDirectory:
        """A new run directory ``root/name`` (``name-2``, ``name-3``... if taken), returned
        holding its lock (:meth:`release` it when done).

        Safe when several processes create runs of the same name at once: the directory is
        claimed by an exclusive ``mkdir`` and locked before anyone can use it. A directory
        without ``config.json`` whose lock nobody holds is what a kill between its creation
        and its first file leaves; it is claimed again instead of being skipped.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        candidate, suffix = root / name, 2
        while True:
            try:
                candidate.mkdir()
            except FileExistsError:
                pass
            run_dir = cls(candidate)
            if run_dir._unused() and run_dir._acquire(blocking_error=False):
                if run_dir._unused():
                    return run_dir
                run_dir.release()
            candidate, suffix = root / f"{name}-{suffix}", suffix + 1

    def _unused(self) -> bool:
        """A folder holding nothing but (maybe) a lock file: new, or left by a kill."""
        try:
            return {entry.name for entry in self.path.iterdir()} <= {self.LOCK}
        except OSError:
            return False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def best_path(self) -> Path:
        """The weights of the best epoch of the monitored validation metric."""
        return self.path / self.BEST

    def file(self, name: str) -> Path:
        """The path of a file inside this run directory."""
        return self.path / name

    def require(self) -> None:
        """Raise unless this is a run directory (a folder with ``config.json``)."""
        if self.path.is_file():
            raise RunDirectoryError(
                f"{self.path} is a file; give the run directory that holds it ({self.path.parent})"
            )
        if not self.path.is_dir():
            raise RunDirectoryError(f"{self.path} is not a run directory (no such folder)")
        if not self.file(self.CONFIG).is_file():
            raise RunDirectoryError(f"{self.path} is not a run directory (no {self.CONFIG})")

    # ------------------------------------------------------------------ lock

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock for the block; a RunDirectoryError naming the holder if another
        process holds it. The operating system releases it when this process ends, however
        it ends, so a killed run never leaves a stale lock."""
        self._acquire(blocking_error=True)
        try:
            yield
        finally:
            self.release()

    def _acquire(self, blocking_error: bool) -> bool:
        """Take the lock; when another process holds it, raise (``blocking_error``) or
        return False."""
        if fcntl is None:  # pragma: no cover - Windows: no advisory locks, no protection
            return True
        handle = os.open(self.file(self.LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            if not blocking_error:
                return False
            raise RunDirectoryError(
                f"run directory {self.path} is in use by {self._lock_holder()}; wait for it "
                "to finish or stop it first"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:2]),
        }
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(holder).encode(), 0)
        self._lock_handle = handle
        return True

    def is_locked(self) -> bool:
        """Whether another process holds the run's lock, tested without writing anything
        (a shared lock taken and dropped at once; a missing lock file: nobody holds it)."""
        if fcntl is None:  # pragma: no cover - Windows: no advisory locks
            return False
        try:
            handle = os.open(self.file(self.LOCK), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(handle)  # closing the descriptor drops the shared lock
        return False

    def release(self) -> None:
        """Release the lock taken by :meth:`create` or :meth:`lock` (if held)."""
        handle = getattr(self, "_lock_handle", None)
        if handle is not None:
            self._lock_handle = None
            os.close(handle)  # closing the descriptor releases the lock

    def _lock_holder(self) -> str:
        try:
            holder = json.loads(self.file(self.LOCK).read_text())
            return (
                f"process {holder['pid']} on {holder['host']} ({holder['command']}, "
                f"since {holder['since']})"
            )
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    # ----------------------------------------------------------- JSON files

    def _read_json_object(self, name: str) -> dict[str, Any]:
        path = self.file(name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise RunDirectoryError(f"cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise RunDirectoryError(f"{path} is not a text file (not UTF-8)") from None
        try:
            data = check_size(parse_json(text, str(path)), str(path))
        except UserError as error:
            raise RunDirectoryError(str(error)) from None
        if not isinstance(data, dict):
            raise RunDirectoryError(
                f"{path} must hold a JSON object (setting: value), got a {type(data).__name__}"
            )
        return data

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.file(self.CONFIG), config, make_parents=False)

    def read_config(self) -> dict[str, Any]:
        return self._read_json_object(self.CONFIG)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.file(self.SUMMARY), summary, make_parents=False)

    def read_summary(self) -> dict[str, Any]:
        """The summary, or ``{}`` before the run has one."""
        if not self.file(self.SUMMARY).exists():
            return {}
        return self._read_json_object(self.SUMMARY)

    # -------------------------------------------------------------- metrics

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        """Append one epoch's metrics as a JSON line, fsynced before returning."""
        line = json.dumps(metrics, sort_keys=True) + "\n"
        with open(self.file(self.METRICS), "a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())

    def parse_metrics(self) -> Metrics:
        """Every epoch's row, checked; a torn last line (what a kill or a full disk leaves)
        is left out and reported as ``torn``. Any other bad line is a RunDirectoryError
        naming the file and line."""
        path = self.file(self.METRICS)
        if not path.exists():
            return Metrics([])
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise RunDirectoryError(f"cannot read {path}: {error.strerror or error}") from None
        lines = text.split("\n")
        complete = text.endswith("\n")
        if complete:
            lines.pop()
        rows: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                if number == len(lines) and not complete:
                    return Metrics(rows, torn=True)
                raise RunDirectoryError(
                    f"{path} line {number} is not valid JSON; remove or repair that line"
                ) from None
            epoch = row.get("epoch") if isinstance(row, dict) else None
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
                raise RunDirectoryError(
                    f"{path} line {number} is not an epoch's metrics (no epoch number): {line[:60]}"
                )
            if rows and epoch <= rows[-1]["epoch"]:
                raise RunDirectoryError(
                    f"{path} line {number} repeats or goes back to epoch {epoch}; "
                    "each epoch must appear once, in order"
                )
            rows.append(row)
        return Metrics(rows)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The epochs' rows (see :meth:`parse_metrics`)."""
        return self.parse_metrics().rows

    def rewrite_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` atomically with ``rows``."""
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        atomic_write_text(self.file(self.METRICS), text, make_parents=False)
