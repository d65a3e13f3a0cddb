"""Datasets: IDX (Fashion-MNIST, MNIST) and CIFAR-10 readers, dataset lookup and download, a
synthetic dataset, normalisation and mini-batches.

Lookup (``find_dataset``), first match wins:

1. ``data_dir`` (the ``--data-dir`` option): the folder itself, then ``data_dir/<name>``;
2. ``$SRIGL_REF_DATA``: likewise;
3. the user cache ``$XDG_CACHE_HOME/srigl-ref/<name>`` (``~/.cache/srigl-ref/<name>``);
4. the system folder of Debian's package (``/usr/share/datasets/fashion-mnist`` from
   ``apt-get install dataset-fashion-mnist``; Fashion-MNIST only);
5. a download from the dataset's host (``base_url`` argument, else ``$SRIGL_REF_DATA_URL``,
   else the official host) into the user cache: each file is streamed to a temporary name
   in the cache folder, its length and SHA-256 checked, then renamed into place, so the
   cache never holds a partial or unverified file. A progress line goes to stderr.

When all fail, a ``ValueError`` names every place looked and the remedies. Files:
Fashion-MNIST / MNIST ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without
``.gz``; CIFAR-10 ``cifar-10-binary.tar.gz`` (what is downloaded) or its extracted
``cifar-10-batches-bin/``, or the python version ``cifar-10-python.tar.gz`` /
``cifar-10-batches-py/`` (read through a restricted unpickler that admits only NumPy's
array-reconstruction globals, so no pickle can run code).

Every corrupt, truncated or inconsistent file raises ``ValueError`` naming the file and
what is wrong. Images are returned as float32 ``[n, C, H, W]`` normalised per channel with
the training set's mean and standard deviation; labels as int64.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import sys
import tarfile
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np

from ._validate import check_choice, check_generator, check_int, check_real

DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")

#: Where each dataset is downloaded from (``base_url + file name``). MNIST's original host
#: (yann.lecun.com) no longer serves the files reliably; the mirror holds the same bytes.
BASE_URLS = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}

#: SHA-256 of the files a download fetches: the official files (the published Fashion-MNIST
#: and MNIST .gz files, the CIFAR-10 binary archive).
CHECKSUMS = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz":
            "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz":
            "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz":
            "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "cifar10": {
        "cifar-10-binary.tar.gz":
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    },
}

#: Folders of Debian's dataset packages.
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}

_IDX_SPLITS = {"train": "train", "test": "t10k"}
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR_RECORD = 1 + 3 * 32 * 32                 # label byte + CHW image bytes
_DOWNLOAD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Dataset:
    """A classification dataset in memory.

    Attributes
    ----------
    name : str
    x_train : ndarray of shape (n_train, C, H, W), float32, C-contiguous, read-only
    y_train : ndarray of shape (n_train,), int64, in [0, n_classes)
    x_test : ndarray of shape (n_test, C, H, W), float32, C-contiguous, read-only
    y_test : ndarray of shape (n_test,), int64
    n_classes : int
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# --- readers -----------------------------------------------------------------------------

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed (detected by content).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray
        Of the shape and element type the header declares, native byte order, writable.

    Raises
    ------
    ValueError
        Naming the file: corrupt gzip data, a wrong magic number, a truncated header, or a
        data size that differs from what the header declares (truncated or trailing bytes).
    """
    path = Path(path)
    data = _read_file(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, the header alone "
                         f"needs at least 4)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] or data[1] or data[2] not in _IDX_DTYPES or not data[3]:
        raise ValueError(f"{path}: not an IDX file: magic number 0x{magic:08x}, expected "
                         f"0x0000TTDD (TT an element type in "
                         f"{{{', '.join(f'0x{t:02x}' for t in _IDX_DTYPES)}}}, DD >= 1 "
                         f"dimensions)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions "
                         f"need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes"
        raise ValueError(f"{path}: {what}: the header declares shape {dims} of {dtype.name} "
                         f"({expected} data bytes), the file holds {got}")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read_file(path: Path) -> bytes:
    """A file's bytes, gunzipped when they start with the gzip magic ``1f 8b``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_cifar10_binary(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of CIFAR-10's binary version (``data_batch_1.bin`` ...).

    Each record is one label byte and 3072 image bytes (channels, rows, columns).

    Returns
    -------
    images : ndarray of shape (n, 3, 32, 32), uint8
    labels : ndarray of shape (n,), int64, in [0, 10)

    Raises
    ------
    ValueError
        Naming the file: a size that is not a positive multiple of 3073, labels >= 10.
    """
    path = Path(path)
    return _parse_cifar_binary(_read_file(path), str(path))


def _parse_cifar_binary(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    if not data or len(data) % _CIFAR_RECORD:
        raise ValueError(f"{source}: {len(data)} bytes, must be a positive multiple of "
                         f"{_CIFAR_RECORD} (one label byte + 3x32x32 image bytes per record)")
    records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, _cifar_labels(records[:, 0], source)


def _cifar_labels(labels, source: str) -> np.ndarray:
    labels = np.asarray(labels, np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{source}: labels in [{labels.min()}, {labels.max()}], must be in "
                         f"[0, 9]")
    return labels


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals CIFAR-10's python batches hold: NumPy's array reconstruction
    (under its NumPy 1 and NumPy 2 module names), ``ndarray`` and ``dtype``. Anything else
    (``os.system``, ``builtins.eval``, ...) raises before it is looked up or called."""
    _reconstruct = np.empty(0).__reduce__()[0]   # numpy's array-reconstruction function
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                ("numpy", "ndarray"): np.ndarray,
                ("numpy", "dtype"): np.dtype}

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed") from None


def read_cifar10_python(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of CIFAR-10's python version (``data_batch_1`` ...).

    The pickle is read with a restricted unpickler (only NumPy array globals), never with
    ``pickle.load``: a file that references anything else is rejected without running it.
    Returns ``(images, labels)`` as ``read_cifar10_binary`` does; raises ``ValueError``
    naming the file for a non-pickle, a forbidden global, missing keys or wrong shapes.
    """
    path = Path(path)
    return _parse_cifar_python(_read_file(path), str(path))


def _parse_cifar_python(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error) as e:
        raise ValueError(f"{source}: not a CIFAR-10 python batch ({type(e).__name__}: {e})"
                         ) from None
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: holds a {type(batch).__name__}, must hold a dict")
    images = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * 32 * 32:
        what = (f"shape {images.shape} and dtype {images.dtype}"
                if isinstance(images, np.ndarray) else type(images).__name__)
        raise ValueError(f"{source}: 'data' is {what}, must be uint8 of shape (n, 3072)")
    if not isinstance(labels, list) or len(labels) != len(images) \
            or not all(isinstance(v, int) for v in labels):
        raise ValueError(f"{source}: 'labels' must be a list of {len(images)} ints")
    return images.reshape(-1, 3, 32, 32).copy(), _cifar_labels(labels, source)


# --- lookup and download -----------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """One way a dataset can sit in a folder: the files it needs (each with the names it
    may have, first found wins) and how to read them."""
    kind: str                                  # "idx", "cifar-bin", "cifar-py" (+ "-tar")
    files: tuple[tuple[str, ...], ...]

    def resolve(self, folder: Path) -> list[Path] | None:
        found = []
        for names in self.files:
            path = next((folder / n for n in names if (folder / n).is_file()), None)
            if path is None:
                return None
            found.append(path)
        return found


def _idx_layout() -> _Layout:
    names = [f"{prefix}-{part}-ubyte" for prefix in _IDX_SPLITS.values()
             for part in ("images-idx3", "labels-idx1")]
    return _Layout("idx", tuple((n + ".gz", n) for n in names))


def _cifar_layouts() -> list[_Layout]:
    members = [b for split in ("train", "test") for b in _CIFAR_BATCHES[split]]
    return [_Layout("cifar-bin-tar", (("cifar-10-binary.tar.gz",),)),
            _Layout("cifar-bin", tuple((f"cifar-10-batches-bin/{m}.bin",) for m in members)),
            _Layout("cifar-py-tar", (("cifar-10-python.tar.gz",),)),
            _Layout("cifar-py", tuple((f"cifar-10-batches-py/{m}",) for m in members))]


_LAYOUTS = {"fashion-mnist": [_idx_layout()], "mnist": [_idx_layout()],
            "cifar10": _cifar_layouts()}


def cache_dir(name: str) -> Path:
    """The user cache folder of dataset ``name``: ``$XDG_CACHE_HOME/srigl-ref/<name>``
    (``~/.cache/srigl-ref/<name>`` when ``XDG_CACHE_HOME`` is unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "srigl-ref" / name


def _places(name: str, data_dir) -> list[tuple[str, Path | None]]:
    """(description, folder) in lookup order; folder None when the place is not set."""
    places = []
    for label, root in (("--data-dir", data_dir), ("$SRIGL_REF_DATA",
                                                   os.environ.get("SRIGL_REF_DATA") or None)):
        if root is None:
            places.append((f"{label}: not given" if label == "--data-dir" else
                           f"{label}: not set", None))
        else:
            places += [(label, Path(root)), (label, Path(root) / name)]
    places.append(("user cache", cache_dir(name)))
    if name in SYSTEM_DIRS:
        places.append((f"system folder of Debian's {APT_PACKAGES[name]}", SYSTEM_DIRS[name]))
    return places


def _find_local(name: str, data_dir, looked: list[str]) -> tuple[_Layout, list[Path]] | None:
    for label, folder in _places(name, data_dir):
        if folder is None:
            looked.append(label)
            continue
        for layout in _LAYOUTS[name]:
            paths = layout.resolve(folder)
            if paths is not None:
                return layout, paths
        state = "no such folder" if not folder.is_dir() else "the dataset's files are missing"
        looked.append(f"{label} {folder}: {state}")
    return None


def find_dataset(name, *, data_dir=None, download=True, base_url=None,
                 progress=True) -> tuple[str, list[Path]]:
    """Locate (and if need be download) the files of dataset ``name``.

    Parameters
    ----------
    name : {"fashion-mnist", "mnist", "cifar10"}
    data_dir : str or Path or None
        Looked in first (the folder, then ``data_dir/<name>``).
    download : bool
        Download into the user cache when no local copy is found.
    base_url : str or None
        Where to download from (``base_url + file name``); default ``$SRIGL_REF_DATA_URL``,
        else the official host (``BASE_URLS``).
    progress : bool
        Write a progress line to stderr while downloading.

    Returns
    -------
    kind : str
        How the files are laid out (``"idx"``, ``"cifar-bin-tar"``, ``"cifar-bin"``,
        ``"cifar-py-tar"``, ``"cifar-py"``).
    paths : list of Path
        The files, in the layout's order.

    Raises
    ------
    ValueError
        Nothing found and the download is off or failed: the message names every place
        looked, the download's error and the remedies. Also a checksum mismatch or an
        interrupted transfer (nothing is left in the cache).
    """
    check_choice("name", name, tuple(_LAYOUTS))
    looked: list[str] = []
    found = _find_local(name, data_dir, looked)
    if found is not None:
        return found[0].kind, found[1]
    url = base_url or os.environ.get("SRIGL_REF_DATA_URL") or BASE_URLS[name]
    if download:
        try:
            _download(name, url, progress)
        except (OSError, HTTPException) as e:
            looked.append(f"download from {url}: failed ({e})")
        else:
            layout = _LAYOUTS[name][0]
            return layout.kind, layout.resolve(cache_dir(name))
    else:
        looked.append(f"download from {url}: not attempted (download disabled)")
    remedies = [f"pass --data-dir DIR (or set SRIGL_REF_DATA) to a folder holding "
                f"{', '.join(CHECKSUMS[name])}",
                "run once with network access to download into the user cache"]
    if name in APT_PACKAGES:
        remedies.insert(0, f"install Debian's package: apt-get install {APT_PACKAGES[name]}")
    raise ValueError(f"dataset {name!r} not found. Looked in:\n"
                     + "".join(f"  - {p}\n" for p in looked)
                     + "Remedies: " + "; or ".join(remedies))


def _download(name: str, base_url: str, progress: bool) -> None:
    """Fetch every missing file of ``CHECKSUMS[name]`` into ``cache_dir(name)``."""
    folder = cache_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    for file, sha256 in CHECKSUMS[name].items():
        dest = folder / file
        if not dest.is_file():
            _fetch(base_url.rstrip("/") + "/" + file, dest, sha256, progress)


def _fetch(url: str, dest: Path, sha256: str, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, check its length and SHA-256,
    then rename it to ``dest``. On any failure the temporary file is removed."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest, n_bytes, last = hashlib.sha256(), 0, 0.0
        with os.fdopen(fd, "wb") as out, \
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                n_bytes += len(chunk)
                if progress and time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    _progress(url, n_bytes, total)
        if progress:
            _progress(url, n_bytes, total)
            print(file=sys.stderr)
        if total is not None and n_bytes != total:
            raise ValueError(f"{url}: transfer interrupted: received {n_bytes} of {total} "
                             f"bytes; nothing was written to {dest.parent}")
        if digest.hexdigest() != sha256:
            raise ValueError(f"{url}: SHA-256 mismatch: expected {sha256}, got "
                             f"{digest.hexdigest()} ({n_bytes} bytes); nothing was written "
                             f"to {dest.parent}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _progress(url: str, n_bytes: int, total: int | None) -> None:
    done = f"{n_bytes / 1e6:.1f}"
    of = f"/{total / 1e6:.1f} MB ({100 * n_bytes // max(total, 1)}%)" if total else " MB"
    print(f"\rdownloading {url}: {done}{of}", end="", file=sys.stderr, flush=True)


# --- loading -----------------------------------------------------------------------------

def load_dataset(name, *, data_dir=None, download=True, base_url=None, progress=True,
                 rng=None) -> Dataset:
    """Load dataset ``name``, normalised (``find_dataset`` says where it is looked for).

    Parameters
    ----------
    name : {"fashion-mnist", "mnist", "cifar10", "synthetic"}
    data_dir, download, base_url, progress
        As ``find_dataset``.
    rng : numpy.random.Generator or None
        Only for ``"synthetic"`` (required there): the generator that draws it.

    Returns
    -------
    Dataset
        Images normalised per channel with the training set's mean and std (``normalize``).

    Raises
    ------
    ValueError
        Unknown name, dataset not found, or a corrupt / truncated / mismatched file (the
        message names the file).
    """
    check_choice("name", name, DATASETS)
    if name == "synthetic":
        if rng is None:
            raise TypeError("load_dataset('synthetic') needs rng=numpy.random.Generator")
        return synthetic(rng=rng)
    kind, paths = find_dataset(name, data_dir=data_dir, download=download,
                               base_url=base_url, progress=progress)
    splits = _read_idx_splits(paths) if kind == "idx" else _read_cifar_splits(kind, paths)
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = channel_stats(x_train)
    return Dataset(name, _frozen(normalize(x_train, mean, std)), _frozen(y_train),
                   _frozen(normalize(x_test, mean, std)), _frozen(y_test), 10)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _read_idx_splits(paths: list[Path]):
    """(train, test) pairs of uint8 images [n, 1, 28, 28] and int64 labels [n]."""
    out = []
    for images_path, labels_path in (paths[0:2], paths[2:4]):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{images_path}: holds {images.dtype.name} of shape "
                             f"{images.shape}, must hold uint8 images of shape (n, 28, 28)")
        if labels.dtype != np.uint8 or labels.ndim != 1 or (labels.size and labels.max() > 9):
            raise ValueError(f"{labels_path}: must hold uint8 labels in [0, 9] of shape (n,), "
                             f"holds {labels.dtype.name} of shape {labels.shape}"
                             + (f" with max {labels.max()}" if labels.size else ""))
        if len(images) != len(labels):
            raise ValueError(f"mismatched files: {images_path} holds {len(images)} images "
                             f"but {labels_path} holds {len(labels)} labels")
        out.append((images[:, None], labels.astype(np.int64)))
    return out


def _read_cifar_splits(kind: str, paths: list[Path]):
    """(train, test) pairs of uint8 images [n, 3, 32, 32] and int64 labels [n]."""
    parse = _parse_cifar_binary if kind.startswith("cifar-bin") else _parse_cifar_python
    if kind.endswith("-tar"):
        folder = "cifar-10-batches-bin" if kind.startswith("cifar-bin") else "cifar-10-batches-py"
        suffix = ".bin" if kind.startswith("cifar-bin") else ""
        blobs = _tar_members(paths[0], {split: [f"{folder}/{b}{suffix}" for b in batches]
                                        for split, batches in _CIFAR_BATCHES.items()})
    else:
        n_train = len(_CIFAR_BATCHES["train"])
        blobs = {"train": [(str(p), _read_file(p)) for p in paths[:n_train]],
                 "test": [(str(p), _read_file(p)) for p in paths[n_train:]]}
    out = []
    for split in ("train", "test"):
        parts = [parse(data, source) for source, data in blobs[split]]
        out.append((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
    return out


def _tar_members(archive: Path, wanted: dict[str, list[str]]) -> dict[str, list]:
    """``{split: [(source, bytes), ...]}`` read from the members of a .tar.gz archive."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            out = {}
            for split, members in wanted.items():
                out[split] = []
                for member in members:
                    try:
                        f = tar.extractfile(member)
                    except KeyError:
                        f = None
                    if f is None:
                        raise ValueError(f"{archive}: has no file member {member!r}")
                    out[split].append((f"{archive}:{member}", f.read()))
            return out
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{archive}: corrupt or truncated archive ({e})") from None


# --- synthetic data, normalisation, batches ---------------------------------------------

def synthetic(*, rng, n_train=4096, n_test=1024, input_shape=(1, 28, 28), n_classes=10,
              noise=2.0) -> Dataset:
    """Deterministic Gaussian-cluster classification data ("synthetic").

    Each class ``c`` has a smooth random prototype image ``P_c`` (standard normal values on
    a grid 4x coarser than the image, each value repeated over a 4x4 block, per channel).
    An example of class ``y`` (uniform over classes) is ``(P_y + noise * N(0, I)) / sqrt(1 +
    noise**2)``, so every pixel has variance 1 (already normalised). Prototypes differ in
    about ``prod(input_shape)`` coordinates, so the classes are linearly separable with a
    wide margin relative to the noise: an MLP reaches high accuracy in an epoch or two.
    Draw order: prototypes, train labels, train noise, test labels, test noise; the same
    generator state gives the same dataset.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_train, n_test : int >= 1
    input_shape : (C, H, W)
    n_classes : int >= 2
    noise : float >= 0

    Returns
    -------
    Dataset
        float32 images of shape (n, C, H, W), int64 labels.
    """
    check_generator("rng", rng)
    n_train, n_test = check_int("n_train", n_train, low=1), check_int("n_test", n_test, low=1)
    n_classes = check_int("n_classes", n_classes, low=2)
    noise = check_real("noise", noise, low=0.0)
    shape = tuple(check_int(f"input_shape[{i}]", s, low=1) for i, s in enumerate(input_shape))
    if len(shape) != 3:
        raise ValueError(f"input_shape == {shape}, must be (channels, height, width)")
    c, h, w = shape
    coarse = rng.standard_normal((n_classes, c, -(-h // 4), -(-w // 4)))
    protos = coarse.repeat(4, axis=2).repeat(4, axis=3)[:, :, :h, :w]   # [K, C, H, W]
    scale = 1.0 / math.sqrt(1.0 + noise ** 2)

    def draw(n):
        labels = rng.integers(0, n_classes, n)                          # [n] int64
        x = (protos[labels] + noise * rng.standard_normal((n, c, h, w))) * scale
        return _frozen(x.astype(np.float32)), _frozen(labels)

    (x_train, y_train), (x_test, y_test) = draw(n_train), draw(n_test)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, n_classes)


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale.

    Exact (computed from per-channel histograms of the 256 byte values, in float64).

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W), uint8

    Returns
    -------
    mean, std : ndarray of shape (C,), float64
    """
    images = _check_images(images)
    values = np.arange(256) / 255.0
    mean, std = np.empty(images.shape[1]), np.empty(images.shape[1])
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256)
        mean[c] = counts @ values / counts.sum()
        std[c] = math.sqrt(counts @ (values - mean[c]) ** 2 / counts.sum())
    return mean, std


def normalize(images, mean, std) -> np.ndarray:
    """``(images / 255 - mean[c]) / std[c]`` per channel, as float32.

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W), uint8
    mean, std : array-like of shape (C,), on the [0, 1] scale; std > 0

    Returns
    -------
    ndarray of shape (n, C, H, W), float32, C-contiguous (a new array)
    """
    images = _check_images(images)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    n_chan = images.shape[1]
    if mean.shape != (n_chan,) or std.shape != (n_chan,) or not (std > 0).all():
        raise ValueError(f"mean.shape == {mean.shape}, std.shape == {std.shape} with std "
                         f"{std}, must both be ({n_chan},) with std > 0")
    lut = ((np.arange(256)[None, :] / 255.0 - mean[:, None]) / std[:, None])   # [C, 256]
    lut = lut.astype(np.float32)
    out = np.empty(images.shape, np.float32)
    for c in range(n_chan):
        out[:, c] = lut[c][images[:, c]]
    return out


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        what = (f"{images.dtype} of shape {images.shape}" if isinstance(images, np.ndarray)
                else type(images).__name__)
        raise ValueError(f"images is {what}, must be uint8 of shape (n, C, H, W)")
    return images


def batches(x, y, batch_size, *, rng=None, drop_last=False):
    """Mini-batches of ``(x, y)``, shuffled when ``rng`` is given.

    Parameters
    ----------
    x : ndarray of shape (n, ...), float
    y : ndarray of shape (n,), integer
    batch_size : int >= 1
    rng : numpy.random.Generator or None
        None: the examples in order. Otherwise one ``rng.permutation(n)`` per call (call
        once per epoch).
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Returns
    -------
    iterator of (ndarray of shape (b, ...), float32, C-contiguous; ndarray (b,), int64)
    """
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray) or x.ndim < 1 \
            or y.shape != (len(x),):
        raise ValueError(f"x and y must be arrays with y.shape == (len(x),), got "
                         f"{getattr(x, 'shape', type(x).__name__)} and "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    batch_size = check_int("batch_size", batch_size, low=1)
    order = None if rng is None else check_generator("rng", rng).permutation(len(x))
    return _batches(x, y, batch_size, order, drop_last)


def _batches(x, y, batch_size, order, drop_last):
    n = len(x)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = slice(start, start + batch_size) if order is None else \
            order[start:start + batch_size]
        yield (np.ascontiguousarray(x[idx], dtype=np.float32),
               np.ascontiguousarray(y[idx], dtype=np.int64))
