"""Downloads: streamed to a temporary file, checksummed on the fly, renamed when complete.

A file is written as ``.<name>.<random>.part`` next to its destination and renamed onto it
only after every byte arrived and the checksum matched, so an interrupted or corrupt
transfer never leaves a file that a later run could mistake for a good one. Progress goes to
stderr through tqdm when it is installed, else as one self-updating line. Every failure is
a one-line :class:`DataError` naming the URL(s) tried.
"""

from __future__ import annotations

import hashlib
import sys
import time
from http.client import HTTPException
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

from fastmlp.data.errors import DataError
from fastmlp.data.sources import Source
from fastmlp.files import atomic_write, file_digest

CHUNK = 1 << 16  # bytes per read
TIMEOUT = 30.0  # seconds without data before a connection is given up


def _tqdm_class() -> Any:
    """tqdm's progress bar class, or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class _ProgressLine:
    """A dependency-free progress display: ``name: 42% (11.1/26.4 MB)`` rewritten in place."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._shown = -1.0

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= 0.2:  # at most five redraws a second
            self._shown = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        megabytes = f"{self.done / 1e6:.1f}"
        if self.total:
            text = f"{100 * self.done // self.total}% ({megabytes}/{self.total / 1e6:.1f} MB)"
        else:
            text = f"{megabytes} MB"
        sys.stderr.write(f"\r{self.desc}: {text}{end}")
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(end="\n")


def _progress(total: int | None, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    tqdm = _tqdm_class()
    if tqdm is None:
        return _ProgressLine(total, desc)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


def _reason(exc: BaseException) -> str:
    """A short, single-line description of a network error."""
    if isinstance(exc, HTTPError):
        text = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, URLError):
        text = str(exc.reason)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def download_file(
    url: str,
    path: str | PathLike[str],
    *,
    algorithm: str | None = None,
    checksum: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT,
) -> Path:
    """Fetch ``url`` into ``path`` atomically, verifying its ``algorithm`` digest.

    Raises a one-line :class:`DataError` ``"<url>: <what went wrong>"`` on a network error,
    a short transfer, or a checksum mismatch; ``path`` is then left as it was.
    """
    path = Path(path)
    digest = hashlib.new(algorithm, usedforsecurity=False) if algorithm else None
    bar = None
    try:
        with urlopen(url, timeout=timeout) as response, atomic_write(path) as stream:
            length = getattr(response, "headers", {}).get("Content-Length")
            total = int(length) if length and str(length).isdigit() else None
            bar = _progress(total, path.name, progress)
            received = 0
            while chunk := response.read(CHUNK):
                stream.write(chunk)
                received += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise DataError(
                    f"{url}: truncated transfer: expected {total} bytes, got {received}"
                )
            if digest is not None and checksum is not None and digest.hexdigest() != checksum:
                raise DataError(
                    f"{url}: wrong {algorithm} checksum {digest.hexdigest()}, expected {checksum}"
                )
    except DataError:
        raise
    except (OSError, HTTPException, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise DataError(f"{url}: {_reason(exc)}") from exc
    finally:
        if bar is not None:
            bar.close()
    return path


def fetch(source: Source, directory: str | PathLike[str], progress: bool = True) -> str:
    """Make ``directory`` hold the four verified files of ``source``, downloading what is missing.

    Files already there with the right checksum are kept; others are replaced. Mirrors are
    tried in order for each file. Returns the mirror URL(s) used (``""`` if none was needed).
    """
    directory = Path(directory)
    used: list[str] = []
    for filename in source.files.values():
        path = directory / filename
        expected = source.checksums.get(filename)
        if path.is_file() and file_digest(path, source.algorithm) == expected:
            continue
        path.unlink(missing_ok=True)
        errors = []
        for mirror in source.mirrors:
            url = mirror + filename
            try:
                download_file(
                    url, path, algorithm=source.algorithm, checksum=expected, progress=progress
                )
            except DataError as exc:
                errors.append(str(exc))
                continue
            if mirror not in used:
                used.append(mirror)
            break
        else:
            local = f"{source.install_hint}, or " if source.install_hint else ""
            raise DataError(
                f"cannot download {source.title} file {filename}: tried {'; '.join(errors)} "
                f"(offline? {local}pass data_dir= or set FASTMLP_DATA_DIR to a folder with the "
                "files)"
            )
    return ", ".join(used)
