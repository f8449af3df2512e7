"""The data sets fastmlp knows: file names, checksums, mirrors, class names, local copies.

Both data sets use the same four file names, so each lives in its own folder
(``<cache>/fastmlp/<name>/``). Checksums are of the ``.gz`` files as published:
sha256 for Fashion-MNIST, md5 for MNIST (the digests their maintainers publish).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastmlp.data.errors import DataError
from fastmlp.registry import Registry, UnknownChoiceError

# role -> published file name; the roles are the same for every data set
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class Source:
    """Where a data set comes from and how to recognise its files.

    name:        canonical name, also the user-cache folder name.
    title:       the name people write ("Fashion-MNIST").
    class_names: label k -> name, one per class.
    algorithm:   hashlib name of the checksum algorithm.
    checksums:   published file name -> hex digest of the official ``.gz`` file.
    mirrors:     base URLs tried in order; a file's URL is ``mirror + file name``.
    system_dirs: folders where an OS package installs the files.
    subdirs:     sub-folders of ``data_dir`` / ``$FASTMLP_DATA_DIR`` that may hold the files
                 (checked before the folder itself; ``MNIST/raw`` is torchvision's layout).
    install_hint: how to get a local copy, for the not-found message.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    algorithm: str
    checksums: dict[str, str]
    mirrors: tuple[str, ...]
    system_dirs: tuple[Path, ...]
    subdirs: tuple[str, ...]
    install_hint: str = ""
    files: dict[str, str] = field(default_factory=lambda: dict(FILES))


def _by_file(*digests: str) -> dict[str, str]:
    """Map the digests, given in the order of :data:`FILES`, to the file names."""
    return dict(zip(FILES.values(), digests, strict=True))


FASHION_MNIST = Source(
    name="fashion_mnist",
    title="Fashion-MNIST",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    algorithm="sha256",
    checksums=_by_file(
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",  # train images
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",  # train labels
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",  # test images
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",  # test labels
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    subdirs=("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
    install_hint="sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu)",
)

MNIST = Source(
    name="mnist",
    title="MNIST",
    class_names=tuple(str(digit) for digit in range(10)),
    algorithm="md5",
    checksums=_by_file(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",  # train images
        "d53e105ee54ea40749a09fcbcd1e9432",  # train labels
        "9fb629c4189551a2d022fa330f9573f3",  # test images
        "ec29112dd5afa0611ce80d1b7f02629c",  # test labels
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    system_dirs=(Path("/usr/share/datasets/mnist"),),
    subdirs=("mnist", "MNIST/raw"),
)

# The data sets by name: fastmlp's registry of this concept (see fastmlp.registry).
DATASETS: Registry[Source] = Registry("dataset")
DATASETS.register(FASHION_MNIST.name, FASHION_MNIST, ("fashionmnist", "fmnist"))
DATASETS.register(MNIST.name, MNIST)
# canonical name -> Source; looked up at call time, so tests can swap entries
SOURCES: dict[str, Source] = DATASETS.entries


def names() -> list[str]:
    """The canonical names of the known data sets."""
    return sorted(SOURCES)


def canonical_dataset(name: object) -> str:
    """The canonical name of a data set (``fashion_mnist`` or ``mnist``; any case, - or _)."""
    try:
        return DATASETS.canonical(name)
    except UnknownChoiceError as error:
        raise DataError(str(error)) from None


def get_source(name: str) -> Source:
    """The :class:`Source` for ``name`` (``fashion_mnist`` or ``mnist``; any case, - or _)."""
    return SOURCES[canonical_dataset(name)]
