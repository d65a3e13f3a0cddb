"""Boundary checks shared by every public function.

Each check names the offending argument, its value (or shape/dtype) and what was expected,
in the style ``"density == 1.5, must be in (0, 1]"``. Public functions call these once and
then hand C-contiguous arrays of the right dtype to trusting kernels.
"""
from __future__ import annotations

import numbers
import zipfile

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(a: np.ndarray) -> str:
    return f"array of shape {a.shape} and dtype {a.dtype}"


def as_float_array(name: str, a, *, ndim: tuple[int, ...] | None = None,
                   shape: tuple[int, ...] | None = None, finite: bool = True) -> np.ndarray:
    """Return ``a`` as a C-contiguous float32/float64 array (a copy only when needed).

    Raises ``TypeError`` for non-arrays or non-float dtypes, ``ValueError`` for a wrong
    ``ndim``/``shape``, for empty arrays, and (when ``finite``) for NaN or inf entries.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}.dtype == {a.dtype}, must be float32 or float64")
    _check_shape(name, a, ndim, shape)
    if finite and not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a.ravel()))
        raise ValueError(f"{name} contains {bad.size} non-finite value(s) (NaN or inf), "
                         f"first at flat index {bad[0]}; must be finite")
    return np.ascontiguousarray(a)


def as_mask(name: str, m, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``m`` as a C-contiguous bool array; ``TypeError`` if it is not bool."""
    if not isinstance(m, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype bool, got {type(m).__name__}")
    if m.dtype != np.bool_:
        raise TypeError(f"{name}.dtype == {m.dtype}, must be bool")
    _check_shape(name, m, None, shape)
    return np.ascontiguousarray(m)


def _check_shape(name, a, ndim, shape) -> None:
    if ndim is not None and a.ndim not in ndim:
        want = " or ".join(str(n) for n in ndim)
        raise ValueError(f"{name}.ndim == {a.ndim} ({_describe(a)}), must be {want}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{name}.shape == {a.shape}, must be {tuple(shape)}")
    if a.size == 0:
        raise ValueError(f"{name} is empty ({_describe(a)}), must have at least one element")


def check_shape(name: str, shape) -> tuple[int, ...]:
    """Return a weight shape as a tuple of positive ints (ndim >= 2, PyTorch layout)."""
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} == {shape!r}, must be a sequence of ints") from None
    if any(not isinstance(s, numbers.Integral) for s in shape):
        raise TypeError(f"{name} == {shape!r}, must contain ints only")
    if len(shp) < 2 or min(shp) < 1:
        raise ValueError(f"{name} == {shp}, must have ndim >= 2 and positive sizes "
                         f"([out, in] or [out, C_in, kh, kw])")
    return shp


def check_real(name: str, value, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a finite Python float in the given interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} == {value!r}, must be a real number")
    v = float(value)
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not np.isfinite(v) or not (lo_ok and hi_ok):
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} == {value!r}, must be in {lb}{lo}, {hi}{rb}")
    return v


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as a Python int in ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} == {value!r}, must be an int")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} == {v}, must be in [{lo}, {hi}]")
    return v


def check_density(name: str, value) -> float:
    """A density in (0, 1]."""
    return check_real(name, value, low=0.0, high=1.0, low_open=True)


def check_sparsity(name: str, value) -> float:
    """A sparsity in [0, 1)."""
    return check_real(name, value, low=0.0, high=1.0, high_open=True)


def check_choice(name: str, value, choices) -> str:
    """``value`` must be one of ``choices`` (strings)."""
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} == {value!r}, must be one of {opts}")
    return value


def check_generator(name: str, rng) -> np.random.Generator:
    """Every random choice takes a ``numpy.random.Generator`` (never a seed or global state)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} must be a numpy.random.Generator "
                        f"(e.g. numpy.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def read_npz(path, *, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` of plain arrays (``allow_pickle=False``).

    Raises
    ------
    ValueError
        ``"<path>: no such <what>"``, ``"<path>: is a directory, expected a .npz <what>"``
        or ``"<path>: not a readable .npz <what> (...)"``.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, expected a .npz {what}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz {what} ({e})") from None
