"""Read PyTorch ``torch.save`` files without PyTorch, and without running their code.

A ``torch.save`` file (PyTorch >= 1.6) is a zip archive whose entries share one top-level
folder of arbitrary name (``archive/``, or the file's stem in recent versions)::

    <prefix>/data.pkl         the pickled object; tensors are persistent ids of storages
    <prefix>/data/<key>       the raw bytes of one storage
    <prefix>/version          serialization format version ("1".."3")
    <prefix>/byteorder        "little" or "big" (absent in old files: little)

``data.pkl`` is read with :class:`RestrictedUnpickler`, which admits only the globals a
state dict needs (tensor and parameter rebuild functions, storage types,
``collections.OrderedDict``, ``set``); any other global -- ``os.system``, ``builtins.eval``,
an ``nn.Module`` subclass, an ``omegaconf.DictConfig`` -- is refused *before* it is called,
with :class:`UnsafePickleError` naming it. Loading never executes code from the file.

Tensors become NumPy arrays (C-contiguous copies honouring storage offset, size and
stride): float32 and float64 as stored, float16 and bfloat16 widened to float32, integer
types and bool as stored. Legacy (non-zip, pre-1.6) files are refused.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .safetensors import bf16_to_float32

# storage class name -> dtype of its bytes (little-endian; byteorder "big" is honoured)
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"), "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"), "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
    "UntypedStorage": np.dtype("u1"),
}
SUPPORTED_VERSIONS = (1, 2, 3)
_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"


class UnsafePickleError(ValueError):
    """A pickle asked for a global outside the allow-list (nothing was executed)."""


@dataclass(frozen=True)
class _StorageType:
    name: str                      # "FloatStorage", ...


@dataclass(frozen=True)
class _Storage:
    """One storage: its elements as a 1-D array of the stored dtype and its type name."""
    data: np.ndarray               # [numel] of STORAGE_DTYPES[name]
    name: str


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """NumPy twin of ``torch._utils._rebuild_tensor_v2``: a strided view, copied."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor rebuild got {type(storage).__name__} as storage, must be "
                         f"a storage persistent id")
    size, stride = _int_tuple("size", size), _int_tuple("stride", stride)
    offset = _int_tuple("storage_offset", (storage_offset,))[0]
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    data = storage.data
    if 0 in size:
        a = np.zeros(size, data.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= data.size or offset >= data.size:
            raise ValueError(f"tensor of size {size}, stride {stride} and storage offset "
                             f"{offset} reaches element {last}, but its {storage.name} has "
                             f"{data.size} elements")
        a = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=[s * data.itemsize for s in stride]).copy()
    if storage.name == "BFloat16Storage":
        return bf16_to_float32(a)
    if storage.name == "HalfStorage":
        return a.astype(np.float32)
    return a


def _int_tuple(name, value) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"tensor {name} == {value!r}, must be a tuple of non-negative ints")
    return value


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """``torch._utils._rebuild_parameter`` (and ``_with_state``): the tensor itself."""
    if not isinstance(data, np.ndarray):
        raise ValueError(f"parameter rebuild got {type(data).__name__}, must be a tensor")
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("torch", "Size"): tuple,
}
_ALLOWED.update({(mod, name): _StorageType(name) for name in STORAGE_DTYPES
                 for mod in ("torch", "torch.storage")})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of ``data.pkl`` that admits only state-dict globals (module docstring).

    Parameters
    ----------
    file : binary file object
        The pickle stream.
    load_storage : callable ``(key: str, type_name: str, numel: int) -> _Storage``
        Reads ``<prefix>/data/<key>``.
    path : str
        Named in error messages.
    """

    def __init__(self, file, *, load_storage, path: str):
        super().__init__(file)
        self._load_storage = load_storage
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            pass
        hint = ""
        if module.startswith("torch.nn"):
            hint = "; save model.state_dict() rather than the module"
        elif "Storage" in name:
            hint = f"; unsupported storage dtype (supported: {', '.join(STORAGE_DTYPES)})"
        raise UnsafePickleError(f"{self._path}: refused global {module}.{name} in data.pkl: "
                                f"only tensors, storages and plain containers are admitted "
                                f"(nothing was executed){hint}")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int)):
            raise ValueError(f"{self._path}: unsupported persistent id {pid!r:.100} in "
                             f"data.pkl, must be ('storage', type, key, location, numel)")
        _, storage_type, key, _location, numel = pid
        return self._load_storage(key, storage_type.name, numel)


def load_torch(path) -> object:
    """Load a ``torch.save`` zip file as plain Python containers and NumPy arrays.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    object
        What was saved (usually a dict / OrderedDict of str to ndarray), with every tensor
        an ndarray: float32 (also from float16/bfloat16), float64, int64/32/16/8, uint8 or
        bool.

    Raises
    ------
    UnsafePickleError (a ValueError)
        The pickle needs a global outside the allow-list; nothing from it was executed.
    ValueError
        Missing file; legacy non-zip format; wrong magic bytes; truncated or corrupt zip;
        no ``*/data.pkl``; unsupported version or byte order; missing or short storage
        data; unsupported storage dtype; a view reaching outside its storage.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    if head != _ZIP_MAGIC:
        if head[:1] == _PICKLE_MAGIC:
            raise ValueError(f"{path}: legacy (non-zip) torch.save format or a bare pickle; "
                             f"not supported: re-save it with torch >= 1.6 "
                             f"(torch.save(torch.load(f), g))")
        raise ValueError(f"{path}: not a PyTorch checkpoint: wrong magic bytes {head!r}, a "
                         f"torch.save file is a zip archive starting with {_ZIP_MAGIC!r}")
    try:
        with zipfile.ZipFile(path) as zf:
            return _load_archive(path, zf)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        raise ValueError(f"{path}: truncated or corrupt zip archive ({e})") from None


def _load_archive(path: Path, zf: zipfile.ZipFile) -> object:
    pickles = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError(f"{path}: zip archive has {len(pickles)} '<prefix>/data.pkl' "
                         f"entries, must have exactly one (not a torch.save file?)")
    prefix = pickles[0][:-len("data.pkl")]
    names = set(zf.namelist())
    if prefix + "version" in names:
        text = zf.read(prefix + "version").decode("ascii", "replace").strip()
        if not text.isdigit() or int(text) not in SUPPORTED_VERSIONS:
            raise ValueError(f"{path}: {prefix}version == {text!r}, must be one of "
                             f"{SUPPORTED_VERSIONS}")
    order = "little"
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise ValueError(f"{path}: {prefix}byteorder == {order!r}, must be 'little' or "
                             f"'big'")
    cache: dict[str, _Storage] = {}

    def load_storage(key: str, type_name: str, numel: int) -> _Storage:
        if key not in cache:
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise ValueError(f"{path}: storage {key!r} has no entry {entry}")
            dtype = STORAGE_DTYPES[type_name]
            if order == "big":
                dtype = dtype.newbyteorder(">")
            raw = zf.read(entry)
            if len(raw) < numel * dtype.itemsize:
                raise ValueError(f"{path}: {entry} has {len(raw)} bytes, its {type_name} of "
                                 f"{numel} elements needs {numel * dtype.itemsize} "
                                 f"(truncated?)")
            data = np.frombuffer(raw, dtype=dtype, count=numel)
            cache[key] = _Storage(data.astype(dtype.newbyteorder("=")), type_name)
        return cache[key]

    unpickler = RestrictedUnpickler(io.BytesIO(zf.read(pickles[0])),
                                    load_storage=load_storage, path=str(path))
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except ValueError as e:
        if str(e).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: {e}") from None
    except Exception as e:            # any other failure of a crafted or damaged pickle
        raise ValueError(f"{path}: corrupt data.pkl ({type(e).__name__}: {e})") from None
