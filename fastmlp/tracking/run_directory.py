"""The local run directory: everything a run produces, written as it goes.

``runs/<run-name>/`` holds

* ``config.json``    -- the full configuration (written at start);
* ``metrics.jsonl``  -- one JSON object per epoch, appended and flushed after each epoch;
* ``checkpoint.npz`` -- model + optimizer state after the latest completed epoch;
* ``summary.json``   -- final results (test accuracy, time, status);
* figures (``*.png``).

So an interrupted or crashed run keeps every epoch it finished, and W&B is never the only
copy of anything.
"""

from __future__ import annotations

import json
import os
from os import PathLike
from pathlib import Path
from typing import Any


class RunDirectory:
    """Files of one training run under ``root / name``."""

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.npz"

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | PathLike[str], name: str) -> RunDirectory:
        """A new, empty run directory ``root/name`` (``name-2``, ``name-3``... if taken)."""
        root = Path(root)
        candidate = root / name
        suffix = 2
        while candidate.exists():
            candidate = root / f"{name}-{suffix}"
            suffix += 1
        candidate.mkdir(parents=True)
        return cls(candidate)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    def file(self, name: str) -> Path:
        """The path of a file inside this run directory."""
        return self.path / name

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        target = self.path / name
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, target)

    def write_config(self, config: dict[str, Any]) -> None:
        self._write_json(self.CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.path / self.CONFIG).read_text())

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        """Append one epoch's metrics as a JSON line, flushed to disk before returning."""
        with open(self.path / self.METRICS, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(metrics, sort_keys=True) + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / self.METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, epochs: int) -> None:
        """Keep only the metrics of the first ``epochs`` epochs (before resuming from there)."""
        kept = [row for row in self.read_metrics() if row["epoch"] <= epochs]
        path = self.path / self.METRICS
        path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._write_json(self.SUMMARY, summary)

    def read_summary(self) -> dict[str, Any]:
        path = self.path / self.SUMMARY
        return json.loads(path.read_text()) if path.exists() else {}
