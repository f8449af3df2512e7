"""Where a data set's files are found, in order, and how far each place is trusted.

Search order (the first folder holding all four files wins):

1. ``data_dir`` passed to :func:`fastmlp.data.load`;
2. ``$FASTMLP_DATA_DIR``;
3. the user cache, ``$XDG_CACHE_HOME/fastmlp/<name>`` or ``~/.cache/fastmlp/<name>``;
4. system copies (``/usr/share/datasets/fashion-mnist`` from the Debian/Ubuntu package
   ``dataset-fashion-mnist``; ``/usr/share/datasets/mnist`` for MNIST);
5. a download into the user cache (when ``download=True``).

For 1 and 2 the files may sit in the folder itself or in a sub-folder named after the data
set (``fashion_mnist/``, ``fashion-mnist/``, ``mnist/``, torchvision's ``FashionMNIST/raw/``),
gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``, also
``train-images.idx3-ubyte``).

Trust:

* The user cache is fastmlp's own: it holds only downloaded ``.gz`` files, and every use
  checks their published checksums. A cached file with a wrong checksum is deleted (with a
  warning) and downloaded again, never used.
* Folders the user points at (1, 2) and system copies (4) are not checksummed: people load
  their own IDX files there (tests generate synthetic ones). Their structure is validated
  instead when they are read (magic number, size, shape, label range; see ``dataset.py``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from fastmlp.data.download import fetch
from fastmlp.data.errors import DataError
from fastmlp.data.sources import Source
from fastmlp.files import file_digest

ENV_VAR = "FASTMLP_DATA_DIR"


@dataclass(frozen=True)
class Located:
    """The four files of a data set: role (``"train_images"``, ...) -> path, and their origin.

    where: the folder they were found in, or the mirror URL(s) they were just downloaded from.
    """

    files: dict[str, Path]
    where: str


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/fastmlp/<name>``, or ``~/.cache/fastmlp/<name>`` (XDG rules)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "fastmlp" / name


def _variants(filename: str) -> tuple[str, ...]:
    """Accepted spellings of a published file name, preferred first."""
    stem = filename.removesuffix(".gz")
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as on Kaggle
    return (f"{stem}.gz", stem, f"{dotted}.gz", dotted)


def find_files(source: Source, directory: Path, gz_only: bool = False) -> dict[str, Path]:
    """The files of ``source`` present in ``directory``: role -> path (maybe fewer than four)."""
    found = {}
    for role, filename in source.files.items():
        for variant in (filename,) if gz_only else _variants(filename):
            if (directory / variant).is_file():
                found[role] = directory / variant
                break
    return found


def _describe(source: Source, directory: Path, found: dict[str, Path]) -> str:
    """What a folder lacks, for the not-found message."""
    if not directory.is_dir():
        return f"{directory} (does not exist)"
    missing = [name for role, name in source.files.items() if role not in found]
    return f"{directory} (missing {', '.join(missing)})"


def _search_user_dir(source: Source, root: Path, notes: list[str]) -> Located | None:
    """Look in a user-given folder and in its data-set sub-folders."""
    for directory in [root / sub for sub in source.subdirs] + [root]:
        found = find_files(source, directory)
        if len(found) == len(source.files):
            return Located(found, str(directory))
        if directory == root or directory.is_dir():
            notes.append(_describe(source, directory, found))
    return None


def _search_cache(source: Source, directory: Path, notes: list[str]) -> Located | None:
    """Use the cache only when all four files are there and their checksums match."""
    found = find_files(source, directory, gz_only=True)
    if len(found) < len(source.files):
        notes.append(_describe(source, directory, found))
        return None
    bad = [
        path
        for path in found.values()
        if file_digest(path, source.algorithm) != source.checksums.get(path.name)
    ]
    if not bad:
        return Located(found, str(directory))
    for path in bad:
        path.unlink(missing_ok=True)
        warnings.warn(
            f"deleted corrupt cached file {path} (wrong {source.algorithm} checksum)",
            stacklevel=4,
        )
    notes.append(
        f"{directory} (deleted {', '.join(p.name for p in bad)}: wrong {source.algorithm} checksum)"
    )
    return None


def locate(
    source: Source, data_dir: str | PathLike[str] | None = None, download: bool = True
) -> Located:
    """Find (or download) the files of ``source`` following the search order above.

    Raises :class:`DataError` listing every place looked and how to fix it when nothing is
    found and ``download`` is false.
    """
    looked: list[str] = []  # one line per place, for the not-found message
    env = os.environ.get(ENV_VAR)
    user_dirs = [("data_dir", data_dir)] if data_dir is not None else []
    user_dirs.append((f"${ENV_VAR}", env or None))
    located = None
    for label, root in user_dirs:
        if root is None:
            looked.append(f"{label}: not set")
            continue
        notes: list[str] = []
        folder = Path(root).expanduser()
        if folder.exists() and not folder.is_dir():
            raise DataError(
                f"{label} {folder} is a file, not a folder: give the folder that holds the "
                f"{source.title} files ({', '.join(source.files.values())})"
            )
        located = _search_user_dir(source, folder, notes)
        if located is not None:
            break
        looked.append(f"{label}: {'; '.join(notes)}")
    if located is None:
        notes = []
        located = _search_cache(source, user_cache_dir(source.name), notes)
        looked += [f"user cache: {note}" for note in notes]
    for directory in source.system_dirs if located is None else ():
        found = find_files(source, directory)
        if len(found) == len(source.files):
            located = Located(found, str(directory))
            break
        looked.append(f"system copy: {_describe(source, directory, found)}")
    if located is None and download:
        cache = user_cache_dir(source.name)
        where = fetch(source, cache)
        located = Located(find_files(source, cache, gz_only=True), where or str(cache))
    if located is None:
        raise DataError(_not_found_message(source, looked))
    if data_dir is not None and looked and looked[0].startswith("data_dir:"):
        warnings.warn(
            f"{looked[0]}: no complete {source.title} set there; using {located.where}",
            stacklevel=3,
        )
    return located


def _not_found_message(source: Source, looked: list[str]) -> str:
    files = ", ".join(source.files.values())
    lines = [f"{source.title} not found and download=False. Looked in:"]
    lines += [f"  - {place}" for place in looked]
    lines.append("To fix it, do one of:")
    if source.install_hint:
        lines.append(f"  - {source.install_hint}")
    lines += [
        f"  - pass data_dir= (or set ${ENV_VAR}) to a folder holding {files} (gzipped or not)",
        "  - load with download=True to fetch it into the user cache",
    ]
    return "\n".join(lines)
