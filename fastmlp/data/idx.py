"""IDX files, the tensor format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Layout (all integers big-endian)::

    bytes 0-1        0x00 0x00
    byte  2          element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                     0x0D float32, 0x0E float64
    byte  3          number of dimensions d
    bytes 4..4+4d    the d dimension sizes, each a uint32
    then             prod(dims) elements in row-major (C) order, big-endian

The first four bytes read as one integer are the *magic number*: ``0x00000803`` (2051) for
uint8 images of shape (N, rows, cols), ``0x00000801`` (2049) for uint8 labels of shape (N,).

A file is gzip-compressed when it starts with the gzip signature ``1f 8b``; a file whose name
ends in ``.gz`` must be. Every structural problem raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from os import PathLike
from pathlib import Path

import numpy as np

from fastmlp.data.errors import DataError
from fastmlp.files import atomic_write

# element-type code -> big-endian NumPy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions: (N, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension: (N,)

_GZIP_SIGNATURE = b"\x1f\x8b"


def describe_magic(magic: int) -> str:
    """``0x00000803`` -> ``"uint8, 3 dimensions"`` (for error messages)."""
    dtype = IDX_DTYPES.get((magic >> 8) & 0xFF)
    kind = dtype.newbyteorder("=").name if dtype is not None else "unknown type"
    return f"{kind}, {magic & 0xFF} dimensions"


def read_idx_bytes(path: str | PathLike[str]) -> bytes:
    """The decompressed content of an IDX file (gunzipped when it is a gzip file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if data[:2] == _GZIP_SIGNATURE:
        try:
            return gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip data (truncated download?): {exc}") from exc
    if path.name.endswith(".gz"):
        raise DataError(
            f"{path}: not a gzip file although its name ends in .gz "
            f"(starts with {data[:4].hex(' ') or 'nothing, the file is empty'})"
        )
    return data


def parse_idx(data: bytes, name: str = "<bytes>", magic: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a writable, native-endian array.

    data:  the uncompressed file content.
    name:  the file name used in error messages.
    magic: when given, the expected magic number (e.g. :data:`IMAGES_MAGIC`).
    Returns an array of shape ``dims`` and the dtype of the element-type code.
    """
    if len(data) < 4:
        raise DataError(f"{name}: truncated: expected at least 4 header bytes, got {len(data)}")
    (found,) = struct.unpack(">I", data[:4])
    if magic is not None and found != magic:
        raise DataError(
            f"{name}: wrong magic number 0x{found:08X} ({describe_magic(found)}): expected "
            f"0x{magic:08X} ({describe_magic(magic)})"
        )
    if found >> 16 != 0:
        raise DataError(f"{name}: wrong magic number 0x{found:08X}: not an IDX file")
    code, ndim = (found >> 8) & 0xFF, found & 0xFF
    if code not in IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX element type 0x{code:02X} in magic 0x{found:08X}")
    dtype = IDX_DTYPES[code]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated: expected {header} header bytes, got {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing data"
        raise DataError(
            f"{name}: {what}: expected {expected} bytes for shape {dims}, got {len(data)}"
        )
    flat = np.frombuffer(data, dtype=dtype, offset=header)
    return flat.astype(dtype.newbyteorder("=")).reshape(dims)  # astype copies: writable


def load_idx(path: str | PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a NumPy array, validating its structure.

    magic: when given, the expected magic number (``0x803`` images, ``0x801`` labels).
    Raises :class:`DataError` naming the file when it is not a valid IDX file.
    """
    return parse_idx(read_idx_bytes(path), name=str(path), magic=magic)


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of ``array`` (header + big-endian elements)."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        supported = ", ".join(d.newbyteorder("=").name for d in IDX_DTYPES.values())
        raise DataError(f"IDX cannot store dtype {array.dtype}: use one of {supported}")
    if array.ndim > 255 or any(size >= 2**32 for size in array.shape):
        raise DataError(f"IDX cannot store shape {array.shape}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def save_idx(path: str | PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (cast int64 labels to
    uint8 first). The file is written atomically (temporary file + rename).
    """
    path = Path(path)
    payload = idx_bytes(array)
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_write(path) as stream:
        stream.write(payload)
    return path
