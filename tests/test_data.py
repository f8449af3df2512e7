"""The data module: IDX files, where data sets are found, the split, downloads, bad files.

No test touches the network or the real user cache: every test runs with
``XDG_CACHE_HOME`` in a temporary folder, ``FASTMLP_DATA_DIR`` unset, no system copies
(except the one test on the real Fashion-MNIST), and an ``urlopen`` that fails the test.
Downloads are exercised against a fake web server that serves generated IDX files.
MNIST cannot be downloaded here, so its path is tested on small generated data sets.
"""

import dataclasses
import gzip
import hashlib
import io
import math
import re
import shutil
from pathlib import Path
from urllib.error import HTTPError, URLError

import numpy as np
import pytest

from fastmlp import data
from fastmlp.data import DataError, load, load_idx, save_idx, sources, split_indices
from fastmlp.data import download as download_module
from fastmlp.data.idx import idx_bytes
from fastmlp.files import file_digest

REAL_SOURCES = dict(sources.SOURCES)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = sources.FILES  # role -> published file name
MNIST_MIRRORS = sources.MNIST.mirrors
FASHION_MIRROR = sources.FASHION_MNIST.mirrors[0]

N_TRAIN, N_TEST = 200, 50


# ------------------------------------------------------------------------ helpers


def no_network(url, *args, **kwargs):
    raise AssertionError(f"a test tried to reach the network: {url}")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A private user cache, no $FASTMLP_DATA_DIR, no system copies, no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("FASTMLP_DATA_DIR", raising=False)
    for name, source in REAL_SOURCES.items():
        no_system = dataclasses.replace(source, system_dirs=(tmp_path / f"system-{name}",))
        monkeypatch.setitem(sources.SOURCES, name, no_system)
    monkeypatch.setattr(download_module, "urlopen", no_network)


def patch_source(monkeypatch, name, **changes):
    source = dataclasses.replace(sources.SOURCES[name], **changes)
    monkeypatch.setitem(sources.SOURCES, name, source)
    return source


def make_arrays(n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """Random images and labels in the MNIST layout (every image distinct, all labels 0..9)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    rng.shuffle(arrays["train_labels"])
    return arrays


def write_set(directory, n_train=N_TRAIN, n_test=N_TEST, seed=0, gz=True, dotted=False):
    """Write a generated data set as the four IDX files; return its arrays by role."""
    arrays = make_arrays(n_train, n_test, seed)
    for role, array in arrays.items():
        name = FILES[role] if gz else FILES[role].removesuffix(".gz")
        if dotted:
            name = name.replace("-idx", ".idx")
        save_idx(Path(directory) / name, array)
    return arrays


def use_checksums_of(monkeypatch, name, directory):
    """Make the files in ``directory`` the 'official' ones of ``name`` (for cache/download)."""
    source = sources.SOURCES[name]
    digests = {f: file_digest(Path(directory) / f, source.algorithm) for f in FILES.values()}
    return patch_source(monkeypatch, name, checksums=digests)


def pairs(images, labels):
    """The multiset of (image bytes, label) pairs, to compare splits with the original set."""
    return sorted((image.tobytes(), int(label)) for image, label in zip(images, labels))


def assert_train_and_val_make_the_training_set(ds, arrays):
    """train + val hold exactly the official training examples, each image with its label."""
    split = pairs(np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val]))
    assert split == pairs(arrays["train_images"], arrays["train_labels"])


def rewrite_gz(path, raw):
    path.write_bytes(gzip.compress(raw))


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns: readable bytes plus headers; may break off midway."""

    def __init__(self, body, content_length=None, fail_after=None):
        super().__init__(body)
        length = len(body) if content_length is None else content_length
        self.headers = {"Content-Length": str(length)}
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        if self.fail_after is not None:
            size = min(size, self.fail_after - self.tell())
        return super().read(size)


class FakeWeb:
    """A fake ``urlopen``: url -> bytes, an exception to raise, or a FakeResponse factory."""

    def __init__(self):
        self.routes = {}
        self.requests = []

    def serve_directory(self, mirror, directory):
        for filename in FILES.values():
            self.routes[mirror + filename] = (Path(directory) / filename).read_bytes()

    def __call__(self, url, timeout=None):
        self.requests.append(url)
        route = self.routes.get(url, HTTPError(url, 404, "Not Found", None, None))
        if isinstance(route, BaseException):
            raise route
        return route() if callable(route) else FakeResponse(route)


@pytest.fixture
def web(monkeypatch):
    fake = FakeWeb()
    monkeypatch.setattr(download_module, "urlopen", fake)
    return fake


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A generated MNIST-format set in a 'server' folder, declared official for mnist."""
    directory = tmp_path / "server"
    arrays = write_set(directory)
    use_checksums_of(monkeypatch, "mnist", directory)
    return directory, arrays


def cache_dir(name="mnist"):
    return data.user_cache_dir(name)


# ------------------------------------------------------------------------ IDX format


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize(
    "dtype, shape",
    [
        ("uint8", (5, 28, 28)),
        ("uint8", (7,)),
        ("int8", (3, 4)),
        ("int16", (2, 3, 4)),
        ("int32", (6,)),
        ("float32", (2, 5)),
        ("float64", (1, 2, 3, 2)),
    ],
)
def test_idx_round_trip_gzipped_and_raw(tmp_path, suffix, dtype, shape):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = save_idx(tmp_path / f"array-idx{suffix}", array)
    signature = b"\x1f\x8b" if suffix else b"\0\0"  # gzip, or the IDX magic's zero bytes
    assert path.read_bytes()[:2] == signature
    loaded = load_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    assert loaded.shape == shape
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


def test_idx_header_is_big_endian_with_the_standard_magic_numbers():
    images = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    assert images[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")
    labels = idx_bytes(np.array([1, 2], np.uint8))
    assert labels == bytes.fromhex("00000801 00000002 01 02")
    assert idx_bytes(np.array([1], np.int32))[-4:] == b"\x00\x00\x00\x01"


def test_save_idx_rejects_dtypes_idx_cannot_store(tmp_path):
    with pytest.raises(DataError, match="int64"):
        save_idx(tmp_path / "labels-idx1-ubyte", np.arange(3))


def test_save_idx_leaves_no_temporary_files(tmp_path):
    save_idx(tmp_path / "a.gz", np.zeros(3, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


# ------------------------------------------------------------------------ loading local files


def test_generated_mnist_loads_from_data_dir(tmp_path):
    arrays = write_set(tmp_path)
    ds = load("mnist", data_dir=tmp_path)
    assert ds.name == "mnist"
    assert ds.class_names == tuple("0123456789") and ds.num_classes == 10
    assert ds.source == str(tmp_path)
    assert ds.x_train.shape == (180, 28, 28) and ds.x_val.shape == (20, 28, 28)
    assert ds.y_train.shape == (180,) and ds.y_val.shape == (20,)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.uint8
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int64
    np.testing.assert_array_equal(ds.x_test, arrays["test_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert_train_and_val_make_the_training_set(ds, arrays)
    assert "train=180" in repr(ds) and len(repr(ds)) < 200


@pytest.mark.parametrize(
    "layout",
    ["gz", "raw", "dotted-raw", "dotted-gz", "sub:mnist", "sub:MNIST/raw"],
)
def test_accepted_file_names_and_folder_layouts(tmp_path, layout):
    folder = tmp_path / layout.split(":")[1] if layout.startswith("sub:") else tmp_path
    write_set(folder, gz="raw" not in layout, dotted=layout.startswith("dotted"))
    ds = load("mnist", data_dir=tmp_path, download=False)
    assert ds.source == str(folder)
    assert len(ds.y_train) + len(ds.y_val) == N_TRAIN


@pytest.mark.parametrize(
    "name", ["fashion_mnist", "fashion-mnist", "Fashion-MNIST", "FASHION_MNIST"]
)
def test_fashion_mnist_names_are_accepted(tmp_path, name):
    write_set(tmp_path)
    ds = load(name, data_dir=tmp_path)
    assert ds.name == "fashion_mnist"
    assert ds.class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip


def test_unknown_name_is_a_data_error():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'.*fashion_mnist, mnist"):
        load("cifar10")


def test_source_order_data_dir_then_env_then_cache_then_system(tmp_path, monkeypatch):
    given, env = tmp_path / "given", tmp_path / "env"
    cache, system = cache_dir("mnist"), tmp_path / "system"
    write_set(given, n_train=20, seed=1)
    write_set(env, n_train=30, seed=2)
    write_set(cache, n_train=40, seed=3)
    write_set(system, n_train=50, seed=4)
    use_checksums_of(monkeypatch, "mnist", cache)
    patch_source(monkeypatch, "mnist", system_dirs=(system,))
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(env))

    def found():
        ds = load("mnist", data_dir=data_dir, download=False, val_fraction=0)
        return ds.source, len(ds.y_train)

    data_dir = given
    assert found() == (str(given), 20)
    data_dir = None
    assert found() == (str(env), 30)
    monkeypatch.delenv("FASTMLP_DATA_DIR")
    assert found() == (str(cache), 40)
    shutil.rmtree(cache)
    assert found() == (str(system), 50)
    shutil.rmtree(system)
    with pytest.raises(DataError, match="not found"):
        found()


def test_incomplete_data_dir_falls_through_with_a_warning(tmp_path, monkeypatch):
    given, env = tmp_path / "given", tmp_path / "env"
    write_set(given)
    (given / FILES["test_labels"]).unlink()
    write_set(env)
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(env))
    with pytest.warns(UserWarning, match=r"data_dir.*missing t10k-labels-idx1-ubyte\.gz"):
        ds = load("mnist", data_dir=given)
    assert ds.source == str(env)


def test_xdg_cache_home_decides_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    assert data.user_cache_dir("mnist") == tmp_path / "elsewhere" / "fastmlp" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.user_cache_dir("mnist") == tmp_path / "home" / ".cache" / "fastmlp" / "mnist"


@pytest.mark.parametrize("name, hint", [("fashion_mnist", "apt-get install dataset-fashion-mnist"),
                                        ("mnist", "data_dir=")])  # fmt: skip
def test_not_found_without_download_names_every_place_and_the_fix(tmp_path, name, hint):
    with pytest.raises(DataError) as error:
        load(name, data_dir=tmp_path / "nowhere", download=False)
    message = str(error.value)
    for place in [tmp_path / "nowhere", "FASTMLP_DATA_DIR", cache_dir(name), tmp_path / "system-"]:
        assert str(place) in message
    assert hint in message and "download=True" in message


# ------------------------------------------------------------------------ split


def test_split_sizes_and_seeded_reproducibility():
    train, val = split_indices(60000, 0.1, seed=0)
    assert (len(train), len(val)) == (54000, 6000)
    again_train, again_val = split_indices(60000, 0.1, seed=0)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(val, split_indices(60000, 0.1, seed=1)[1])


@pytest.mark.parametrize("n, fraction", [(200, 0.1), (60000, 0.1), (7, 0.5), (10, 0.0)])
def test_split_is_disjoint_and_covers_the_training_set(n, fraction):
    train, val = split_indices(n, fraction, seed=3)
    assert len(val) == math.floor(n * fraction + 0.5)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))


def test_load_split_depends_only_on_the_seed(tmp_path):
    write_set(tmp_path)
    a = load("mnist", data_dir=tmp_path, seed=5)
    b = load("mnist", data_dir=tmp_path, seed=5)
    c = load("mnist", data_dir=tmp_path, seed=6)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)
    np.testing.assert_array_equal(a.x_test, c.x_test)  # the test set is never split


def test_val_fraction_zero_gives_an_empty_validation_set(tmp_path):
    write_set(tmp_path)
    ds = load("mnist", data_dir=tmp_path, val_fraction=0)
    assert ds.x_train.shape == (N_TRAIN, 28, 28)
    assert ds.x_val.shape == (0, 28, 28) and ds.y_val.shape == (0,)
    assert ds.x_val.dtype == np.uint8 and ds.y_val.dtype == np.int64


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), "a lot"])
def test_val_fraction_outside_zero_to_one_is_rejected(tmp_path, fraction):
    write_set(tmp_path)
    with pytest.raises(DataError, match="val_fraction"):
        load("mnist", data_dir=tmp_path, val_fraction=fraction)


# ------------------------------------------------------------------------ bad files


def corrupt(directory, kind):
    """Damage one file of a generated set; return (the damaged file, expected message)."""
    arrays = make_arrays()
    images, labels = directory / FILES["train_images"], directory / FILES["train_labels"]
    raw_images = idx_bytes(arrays["train_images"])
    if kind == "wrong magic number":
        rewrite_gz(images, b"\x00\x00\x08\x04" + raw_images[4:])
        return images, r"wrong magic number 0x00000804.*expected 0x00000803"
    if kind == "not an IDX file at all":
        rewrite_gz(images, b"<html>Not Found</html>" * 10)
        return images, "wrong magic number"
    if kind == "labels file where images belong":
        shutil.copy(labels, images)
        return images, "wrong magic number 0x00000801"
    if kind == "truncated IDX data":
        rewrite_gz(images, raw_images[:-100])
        expected = len(raw_images)
        return images, f"truncated: expected {expected} bytes .* got {expected - 100}"
    if kind == "trailing data":
        rewrite_gz(images, raw_images + b"\0")
        return images, "trailing data"
    if kind == "truncated gzip stream":
        images.write_bytes(images.read_bytes()[:-1000])
        return images, "corrupt gzip data"
    if kind == "not gzip although named .gz":
        images.write_bytes(raw_images)
        return images, "not a gzip file"
    if kind == "empty file":
        images.write_bytes(b"")
        return images, "not a gzip file .*empty"
    if kind == "images of 27x27":
        save_idx(images, arrays["train_images"][:, :27, :27])
        return images, r"wrong image shape \(27, 27\): expected \(28, 28\)"
    if kind == "label count differs from image count":
        save_idx(labels, arrays["train_labels"][:-1])
        return images, f"count mismatch: 200 images but {re.escape(str(labels))} holds 199 labels"
    if kind == "labels out of range":
        bad = arrays["train_labels"].copy()
        bad[17] = 10
        save_idx(labels, bad)
        return labels, r"labels out of range: 1 labels up to 10, expected 0\.\.9"
    raise AssertionError(kind)


CORRUPTIONS = [
    "wrong magic number",
    "not an IDX file at all",
    "labels file where images belong",
    "truncated IDX data",
    "trailing data",
    "truncated gzip stream",
    "not gzip although named .gz",
    "empty file",
    "images of 27x27",
    "label count differs from image count",
    "labels out of range",
]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_bad_file_raises_data_error_naming_the_file_and_the_problem(tmp_path, kind):
    write_set(tmp_path)
    path, problem = corrupt(tmp_path, kind)
    with pytest.raises(DataError, match=f"{re.escape(str(path))}: .*{problem}"):
        load("mnist", data_dir=tmp_path, download=False)


def test_truncated_raw_file_is_reported(tmp_path):
    write_set(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=f"{re.escape(str(path))}: truncated: expected 58 bytes"):
        load("mnist", data_dir=tmp_path)


def test_user_files_with_unofficial_checksums_are_accepted(tmp_path):
    """data_dir files are validated by structure only: own or synthetic IDX files are fine."""
    write_set(tmp_path)
    assert (
        file_digest(tmp_path / FILES["train_images"], "md5")
        != sources.MNIST.checksums[FILES["train_images"]]
    )
    assert len(load("mnist", data_dir=tmp_path).y_test) == N_TEST


# ------------------------------------------------------------------------ downloads


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_download_fills_the_cache_and_later_loads_use_it(tmp_path, monkeypatch, web, name):
    server = tmp_path / "server"
    arrays = write_set(server)
    use_checksums_of(monkeypatch, name, server)
    mirror = sources.SOURCES[name].mirrors[0]
    web.serve_directory(mirror, server)

    ds = load(name)
    assert ds.source == mirror
    assert sorted(web.requests) == sorted(mirror + f for f in FILES.values())
    assert sorted(p.name for p in cache_dir(name).iterdir()) == sorted(FILES.values())
    np.testing.assert_array_equal(ds.x_test, arrays["test_images"])

    web.requests.clear()
    again = load(name, download=True)
    assert again.source == str(cache_dir(name)) and web.requests == []
    np.testing.assert_array_equal(again.x_val, ds.x_val)


@pytest.mark.parametrize("bar", ["tqdm", "plain line"])
def test_download_shows_progress(served, web, monkeypatch, capsys, bar):
    if bar == "tqdm":
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setattr(download_module, "_tqdm_class", lambda: None)
    web.serve_directory(MNIST_MIRRORS[0], served[0])
    load("mnist")
    err = capsys.readouterr().err
    for filename in FILES.values():
        assert filename in err
    assert "100%" in err


def test_failed_transfer_leaves_no_partial_file(served, web):
    server, _ = served
    body = (server / FILES["train_images"]).read_bytes()
    for mirror in MNIST_MIRRORS:
        web.routes[mirror + FILES["train_images"]] = lambda: FakeResponse(
            body, fail_after=len(body) // 2
        )
    with pytest.raises(DataError, match="connection reset by peer") as error:
        load("mnist")
    assert MNIST_MIRRORS[0] + FILES["train_images"] in str(error.value)
    assert list(cache_dir().glob("*")) == []


def test_short_transfer_is_detected(served, web):
    server, _ = served
    body = (server / FILES["train_labels"]).read_bytes()
    web.serve_directory(MNIST_MIRRORS[0], server)
    web.routes[MNIST_MIRRORS[0] + FILES["train_labels"]] = lambda: FakeResponse(
        body[:-10], content_length=len(body)
    )
    web.routes[MNIST_MIRRORS[1] + FILES["train_labels"]] = URLError("timed out")
    with pytest.raises(DataError, match=f"truncated transfer: expected {len(body)} bytes"):
        load("mnist")
    assert not (cache_dir() / FILES["train_labels"]).exists()
    assert not list(cache_dir().glob(".*part"))


def test_checksum_mismatch_is_an_error_and_no_file_is_kept(served, web):
    server, _ = served
    web.serve_directory(MNIST_MIRRORS[0], server)
    web.serve_directory(MNIST_MIRRORS[1], server)
    tampered = gzip.compress(b"\0\0\x08\x01\0\0\0\0")
    for mirror in MNIST_MIRRORS:
        web.routes[mirror + FILES["test_images"]] = tampered
    with pytest.raises(DataError) as error:
        load("mnist")
    message = str(error.value)
    assert "wrong md5 checksum " + hashlib.md5(tampered).hexdigest() in message
    assert all(mirror + FILES["test_images"] in message for mirror in MNIST_MIRRORS)
    assert not (cache_dir() / FILES["test_images"]).exists()
    assert not list(cache_dir().glob(".*part"))


def test_second_mnist_mirror_is_used_when_the_first_fails(served, web):
    server, arrays = served
    web.serve_directory(MNIST_MIRRORS[1], server)
    for filename in FILES.values():
        web.routes[MNIST_MIRRORS[0] + filename] = HTTPError(
            MNIST_MIRRORS[0] + filename, 503, "Service Unavailable", None, None
        )
    ds = load("mnist")
    assert ds.source == MNIST_MIRRORS[1]
    assert web.requests[:2] == [MNIST_MIRRORS[0] + FILES["train_images"]] + [
        MNIST_MIRRORS[1] + FILES["train_images"]
    ]
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])


def test_network_failure_is_one_line_naming_every_url_tried(served, web):
    for mirror in MNIST_MIRRORS:
        web.routes[mirror + FILES["train_images"]] = URLError("[Errno -3] Temporary failure")
    with pytest.raises(DataError) as error:
        load("mnist")
    message = str(error.value)
    assert "\n" not in message
    assert "cannot download MNIST file train-images-idx3-ubyte.gz" in message
    assert "Temporary failure" in message
    for mirror in MNIST_MIRRORS:
        assert mirror + FILES["train_images"] in message


def test_corrupt_cached_file_is_replaced_by_a_fresh_download(served, web):
    server, arrays = served
    web.serve_directory(MNIST_MIRRORS[0], server)
    shutil.copytree(server, cache_dir())
    cached = cache_dir() / FILES["train_labels"]
    cached.write_bytes(cached.read_bytes()[:-3])  # e.g. a disk error or an old bad copy
    with pytest.warns(UserWarning, match=f"corrupt cached file {re.escape(str(cached))}"):
        ds = load("mnist")
    assert web.requests == [MNIST_MIRRORS[0] + FILES["train_labels"]]
    assert cached.read_bytes() == (server / FILES["train_labels"]).read_bytes()
    assert_train_and_val_make_the_training_set(ds, arrays)


def test_corrupt_cached_file_is_never_used_without_download(served):
    server, _ = served
    shutil.copytree(server, cache_dir())
    cached = cache_dir() / FILES["test_images"]
    cached.write_bytes(gzip.compress(b"something else"))
    deleted = r"deleted t10k-images-idx3-ubyte\.gz: wrong md5"
    with pytest.warns(UserWarning, match="corrupt cached"), pytest.raises(DataError, match=deleted):
        load("mnist", download=False)
    assert not cached.exists()


# ------------------------------------------------------------------------ the real data set


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_system_copy(monkeypatch):
    monkeypatch.setitem(sources.SOURCES, "fashion_mnist", REAL_SOURCES["fashion_mnist"])
    for filename, digest in sources.FASHION_MNIST.checksums.items():
        assert file_digest(FASHION_DIR / filename, "sha256") == digest, filename
    ds = load("fashion_mnist", download=False)
    assert ds.source == str(FASHION_DIR)
    assert ds.x_train.shape == (54000, 28, 28)
    assert ds.x_val.shape == (6000, 28, 28)
    assert ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == ds.x_val.dtype == ds.x_test.dtype == np.uint8
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int64 and y.min() == 0 and y.max() == 9
    # the official sets are balanced: 6000 per class in train (train + val), 1000 in test
    assert np.bincount(np.concatenate([ds.y_train, ds.y_val])).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.x_train.max() == 255
