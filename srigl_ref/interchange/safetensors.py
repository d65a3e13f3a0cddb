"""A small, validating reader and writer of the ``.safetensors`` format (no dependency).

Layout: 8 bytes little-endian ``u64`` header length ``n``; ``n`` bytes of UTF-8 JSON (a
map ``name -> {"dtype", "shape", "data_offsets": [begin, end]}`` plus an optional
``"__metadata__"`` map of strings), padded with spaces; then the raw little-endian bytes
of every tensor, ``data_offsets`` counted from the end of the header. As the reference
implementation (huggingface/safetensors) does, the reader refuses overlapping, out-of-range
or non-contiguous offsets, sizes that disagree with ``dtype x shape``, unknown dtypes, bad
JSON and truncated files, each with a ``ValueError`` naming the file.

Half precision (``F16``, ``BF16``) is widened to float32 on read, as the ``.pt`` reader
does; every other dtype is returned as stored.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write

# safetensors dtype name -> numpy dtype of the stored bytes (little-endian)
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
# numpy dtype -> safetensors dtype name, for writing (no bfloat16 in numpy)
_NAMES = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items() if k != "BF16"}
MAX_HEADER = 100_000_000          # the reference implementation's limit


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 values, exactly (bfloat16 is float32's top half).

    Parameters
    ----------
    raw : ndarray of uint16, any shape

    Returns
    -------
    ndarray of float32, the same shape
    """
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every tensor of a ``.safetensors`` file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    tensors : dict of str to ndarray
        In header order; native-endian, C-contiguous, writable arrays that share one buffer
        holding the file (independent of the file). ``F16``/``BF16`` become float32.
    metadata : dict of str to str
        The ``__metadata__`` map (empty if absent).

    Raises
    ------
    ValueError
        Missing or unreadable file, truncated file, bad JSON, unknown dtype, bad shape,
        overlapping / out-of-range / non-contiguous offsets; the message names the file.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            blob = bytearray(path.stat().st_size)        # one buffer; tensors are views
            n_read = f.readinto(blob)
        if n_read != len(blob):
            raise ValueError(f"{path}: file changed while being read")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    if len(blob) < 8:
        raise ValueError(f"{path}: truncated safetensors file ({len(blob)} bytes, must hold "
                         f"at least the 8-byte header length)")
    n = int.from_bytes(blob[:8], "little")
    if n > MAX_HEADER:
        raise ValueError(f"{path}: header length {n} exceeds {MAX_HEADER} bytes; not a "
                         f"safetensors file?")
    if 8 + n > len(blob):
        raise ValueError(f"{path}: truncated safetensors file (header length {n} needs "
                         f"{8 + n} bytes, file has {len(blob)})")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: bad JSON header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: JSON header is a {type(header).__name__}, must be an object")
    metadata = _check_metadata(path, header.pop("__metadata__", {}))
    data = memoryview(blob)[8 + n:]
    entries = [(name, *_check_entry(path, name, info, len(data)))
               for name, info in header.items()]
    _check_layout(path, entries, len(data))
    tensors = {}
    for name, dtype, raw, shape, begin, end in entries:
        a = np.frombuffer(data[begin:end], dtype=raw).reshape(shape)
        tensors[name] = bf16_to_float32(a) if dtype == "BF16" else _native(a, dtype)
    return tensors, metadata


def _native(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F16":
        return a.astype(np.float32)
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def _check_metadata(path, metadata) -> dict[str, str]:
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings, got "
                         f"{metadata!r:.80}")
    return dict(metadata)


def _check_entry(path, name, info, n_data):
    """``(dtype, raw numpy dtype, shape, begin, end)`` of one header entry, validated."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{path}: tensor {name!r} has header {info!r:.120}, must be an "
                         f"object with exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}, must be one "
                         f"of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        raise ValueError(f"{path}: tensor {name!r} has shape {shape!r}, must be a list of "
                         f"non-negative ints")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)):
        raise ValueError(f"{path}: tensor {name!r} has data_offsets {offsets!r}, must be "
                         f"[begin, end] with non-negative ints")
    begin, end = offsets
    if not begin <= end <= n_data:
        raise ValueError(f"{path}: tensor {name!r} has data_offsets [{begin}, {end}] out of "
                         f"range; the data section has {n_data} bytes (truncated file?)")
    raw = DTYPES[dtype]
    nbytes = math.prod(shape) * raw.itemsize
    if end - begin != nbytes:
        raise ValueError(f"{path}: tensor {name!r} spans {end - begin} bytes, but dtype "
                         f"{dtype} and shape {shape} need {nbytes}")
    return dtype, raw, tuple(shape), begin, end


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_layout(path, entries, n_data) -> None:
    """Tensors must tile the data section: no overlap, no gap, nothing after the last."""
    expect = 0
    for name, *_, begin, end in sorted(entries, key=lambda e: (e[4], e[5])):
        if begin < expect:
            raise ValueError(f"{path}: tensor {name!r} at data_offsets [{begin}, {end}] "
                             f"overlaps the previous tensor (which ends at {expect})")
        if begin > expect:
            raise ValueError(f"{path}: gap in the data section before tensor {name!r} "
                             f"(bytes {expect}..{begin} belong to no tensor)")
        expect = end
    if expect != n_data:
        raise ValueError(f"{path}: the data section has {n_data} bytes, but the tensors "
                         f"cover {expect}")


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``tensors`` to ``path`` as ``.safetensors``, atomically.

    Parameters
    ----------
    path : str or Path
    tensors : dict of str to ndarray
        float64/32/16, int64/32/16/8, uint64/32/16/8 or bool arrays, any shape; written
        in this order, little-endian, C order. Not modified.
    metadata : dict of str to str, optional
        Stored as ``__metadata__``.

    Raises
    ------
    TypeError
        A value that is not an ndarray, or of an unsupported dtype; non-string metadata.
    ValueError
        A tensor named ``__metadata__``.
    """
    header: dict = {}
    if metadata:
        header["__metadata__"] = _check_metadata("metadata", metadata)
    chunks, offset = [], 0
    for name, a in tensors.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"tensors[{name!r}] must be a numpy.ndarray, got "
                            f"{type(a).__name__}")
        if name == "__metadata__":
            raise ValueError("tensors may not contain the key '__metadata__'")
        dtype = _NAMES.get(a.dtype.newbyteorder("="))
        if dtype is None:
            raise TypeError(f"tensors[{name!r}].dtype == {a.dtype}, must be one of "
                            f"{', '.join(str(d) for d in _NAMES)}")
        raw = np.ascontiguousarray(a, dtype=DTYPES[dtype])      # little-endian, C order
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + raw.nbytes]}
        chunks.append(raw)
        offset += raw.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)                 # 8-byte alignment, as the reference does

    def write(f):
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in chunks:
            f.write(raw.data)
    atomic_write(path, write)
