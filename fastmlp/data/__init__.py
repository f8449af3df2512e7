"""Data sets as NumPy arrays: Fashion-MNIST and MNIST from local copies, a cache, or mirrors.

``load(name, data_dir=None, download=True, val_fraction=0.1, seed=0) -> Dataset`` looks in
``data_dir``, ``$FASTMLP_DATA_DIR``, the user cache, and system copies, then downloads into
the user cache (see :mod:`fastmlp.data.locate` for the order and what is checksummed).
``load_idx`` / ``save_idx`` read and write the IDX format itself. Every problem raises
:class:`DataError` (a ``ValueError``) naming the file, folder or URL involved.

Modules: ``idx`` (file format), ``sources`` (data set definitions), ``locate`` (search order,
cache), ``download`` (mirrors, progress, atomic write, checksums), ``split`` (train/val),
``dataset`` (``Dataset`` and ``load``).
"""

from __future__ import annotations

from fastmlp.data.dataset import Dataset, load
from fastmlp.data.errors import DataError
from fastmlp.data.idx import load_idx, save_idx
from fastmlp.data.locate import user_cache_dir
from fastmlp.data.sources import names
from fastmlp.data.split import split_indices

__all__ = [
    "DataError",
    "Dataset",
    "load",
    "load_idx",
    "names",
    "save_idx",
    "split_indices",
    "user_cache_dir",
]
