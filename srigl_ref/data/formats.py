"""File formats: IDX (Fashion-MNIST, MNIST) and CIFAR-10 (binary and python versions).

Readers turn files (plain or gzip-compressed, or members of a ``.tar.gz``) into uint8
images and int64 labels. The python version is read through a restricted unpickler that
admits only NumPy's array-reconstruction globals, so no pickle can run code. Every corrupt,
truncated or inconsistent file raises ``ValueError`` naming the file and what is wrong.
"""
from __future__ import annotations

import gzip
import io
import math
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

#: File-name prefix of each split of the IDX datasets.
IDX_SPLITS = {"train": "train", "test": "t10k"}
#: CIFAR-10's batch files of each split.
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR_RECORD = 1 + 3 * 32 * 32                 # label byte + CHW image bytes


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


def read_idx_splits(paths: list[Path]):
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


def read_cifar_splits(kind: str, paths: list[Path]):
    """(train, test) pairs of uint8 images [n, 3, 32, 32] and int64 labels [n]."""
    parse = _parse_cifar_binary if kind.startswith("cifar-bin") else _parse_cifar_python
    if kind.endswith("-tar"):
        folder = "cifar-10-batches-bin" if kind.startswith("cifar-bin") else "cifar-10-batches-py"
        suffix = ".bin" if kind.startswith("cifar-bin") else ""
        blobs = _tar_members(paths[0], {split: [f"{folder}/{b}{suffix}" for b in batches]
                                        for split, batches in CIFAR_BATCHES.items()})
    else:
        n_train = len(CIFAR_BATCHES["train"])
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
