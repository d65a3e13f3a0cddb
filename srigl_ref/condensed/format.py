"""The condensed layer: ``CondensedLinear`` and ``condense`` (docs/algorithm.md §9).

With constant fan-in every active neuron keeps exactly ``k`` inputs, so a layer is two
small dense arrays, ``values [n_active, k]`` and ``indices [n_active, k]``; ablated neurons
(empty mask rows) are dropped from the output. ``condense`` works on one layer; a
whole-model version applies it layer by layer, first removing from each weight the input
columns of the previous layer's ablated neurons (their constant output, e.g.
``relu(bias)``, folds into this layer's bias).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .._validate import as_float_array, as_mask, check_shape
from ..dst.masks import check_constant_fan_in
from . import matmul


@dataclass(frozen=True, eq=False)
class CondensedLinear:
    """A constant fan-in layer in condensed form; calling it runs the forward pass.

    Construction makes read-only copies and runs the cheap checks (dtypes, shapes, index
    ranges: kernels do not bounds-check); ``check()`` adds the full ones.

    Parameters
    ----------
    values : ndarray of shape (n_active, k), float32
        ``values[r, j] = W[active_rows[r], indices[r, j]]``.
    indices : ndarray of shape (n_active, k), integer (stored as int32)
        Column indices into the flattened input, ascending per row.
    active_rows : ndarray of shape (n_active,), integer (stored as int64)
        The rows of the dense weight kept, ascending.
    bias : ndarray of shape (n_active,), float32
        Bias of the kept rows.
    shape : tuple of int
        Shape of the dense weight: ``(out, in)``, or ``(out, C_in, kh, kw)`` for a conv
        layer condensed over its flattened receptive field (``in = C_in * kh * kw``).

    Notes
    -----
    Besides its public arrays and the bias padded to ``16 n_blocks`` rows, the layer keeps
    the forward kernels' layouts, each built on first use and then kept (so a layer only
    ever called at batch 1 holds just one of them):

    - ``_lanes`` (``matmul.lanes_layout``): rows in blocks of 16, position-major within a
      block, indices as the narrowest unsigned type that fits (``matmul.index_dtype``);
      read by batches above ``matmul.SMALL_BATCH`` and, without AVX-512, by batch 1. About
      1.5x the bytes of ``values``.
    - ``_windows`` (``matmul.window_layout``): the window-permute layout read at batch 1
      (and per example up to ``matmul.SMALL_BATCH``) where ``matmul.use_windows`` (an
      AVX-512 CPU, at least one nonzero per row and window on average). The values once,
      plus a byte per row and step: about 1.3-1.6x the bytes of ``values`` (bench/README.md).
    """
    values: np.ndarray       # [n_active, k] float32
    indices: np.ndarray      # [n_active, k] int32, ascending per row
    active_rows: np.ndarray  # [n_active] int64, ascending
    bias: np.ndarray         # [n_active] float32
    shape: tuple
    _bias: np.ndarray = field(init=False, repr=False)  # [16 n_blocks] float32, padded

    def __post_init__(self):
        shape = check_shape("shape", self.shape)
        values = _checked_copy("values", self.values, np.float32, 2)
        n_active, k = values.shape
        indices = _checked_copy("indices", self.indices, np.int32, 2, like=values)
        active_rows = _checked_copy("active_rows", self.active_rows, np.int64, 1,
                                    length=n_active)
        bias = _checked_copy("bias", self.bias, np.float32, 1, length=n_active)
        out, in_features = shape[0], math.prod(shape[1:])
        if n_active > out:
            raise ValueError(f"values.shape == {values.shape}: n_active must be <= out == {out}")
        if n_active and k == 0:
            raise ValueError(f"values.shape == {values.shape}: active rows need k >= 1")
        matmul.check_index_range("indices", self.indices, in_features,
                                 f"in_features == {in_features}")
        matmul.check_index_range("active_rows", self.active_rows, out, f"out == {out}")
        for name, value in (("shape", shape), ("values", _read_only(values)),
                            ("indices", _read_only(indices)),
                            ("active_rows", _read_only(active_rows)),
                            ("bias", _read_only(bias)),
                            ("_bias", matmul.padded_rows(bias))):
            object.__setattr__(self, name, value)

    @functools.cached_property
    def _lanes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(slab_values, slab_index)``, ``[n_blocks, k, 16]`` float32 and uint16/uint32
        (``matmul.lanes_layout``), built on first use."""
        return matmul.lanes_layout(self.values, self.indices, self.in_features)

    @property
    def _slab_values(self) -> np.ndarray:
        """``_lanes[0]``, ``[n_blocks, k, 16]`` float32."""
        return self._lanes[0]

    @property
    def _slab_index(self) -> np.ndarray:
        """``_lanes[1]``, ``[n_blocks, k, 16]`` uint16/uint32."""
        return self._lanes[1]

    @functools.cached_property
    def _windows_pay_off(self) -> bool:
        """``matmul.windows_pay_off(k, in_features)``, computed once."""
        return matmul.windows_pay_off(self.k, self.in_features)

    @functools.cached_property
    def _windows(self) -> matmul.WindowLayout:
        """The window-permute layout (``matmul.window_layout``), built on first use."""
        return matmul.window_layout(self.values, self.indices, self.in_features)

    @property
    def out_features(self) -> int:
        """Rows of the dense weight (ablated ones included)."""
        return self.shape[0]

    @property
    def in_features(self) -> int:
        """Columns of the flattened dense weight: ``in``, or ``C_in * kh * kw``."""
        return math.prod(self.shape[1:])

    @property
    def n_active(self) -> int:
        """Number of kept (non-ablated) neurons, the output width."""
        return self.values.shape[0]

    @property
    def k(self) -> int:
        """The constant fan-in (0 when every row is ablated)."""
        return self.values.shape[1]

    def __repr__(self) -> str:
        return (f"CondensedLinear(shape={self.shape}, k={self.k}, n_active={self.n_active}, "
                f"index_dtype={matmul.index_dtype(self.in_features)})")

    def check(self) -> None:
        """The full checks: sorted, distinct indices and rows; finite values and bias.

        Raises
        ------
        ValueError
            naming the first offending row or entry.
        """
        for name, a in (("values", self.values), ("bias", self.bias)):
            if not np.isfinite(a).all():
                pos = np.unravel_index(np.argmin(np.isfinite(a)), a.shape)
                raise ValueError(f"{name} contains {a[pos]} at "
                                 f"{tuple(int(p) for p in pos)}, must be finite")
        if self.k > 1:
            steps = np.diff(self.indices, axis=1)                    # [n_active, k-1]
            if (steps <= 0).any():
                r = int(np.flatnonzero((steps <= 0).any(axis=1))[0])
                raise ValueError(f"indices row {r} == {self.indices[r].tolist()}, "
                                 f"must be strictly ascending")
        if self.n_active > 1 and (np.diff(self.active_rows) <= 0).any():
            raise ValueError(f"active_rows == {self.active_rows.tolist()}, "
                             f"must be strictly ascending")

    def todense(self) -> np.ndarray:
        """The dense weight: ``values`` scattered into zeros of shape ``shape``, float32."""
        weight = np.zeros((self.out_features, self.in_features), dtype=np.float32)
        weight[self.active_rows[:, None], self.indices] = self.values
        return weight.reshape(self.shape)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Forward: ``y[b, r] = sum_j values[r, j] * x[b, indices[r, j]] + bias[r]``.

        Parameters
        ----------
        x : ndarray of shape (B, in_features) or (in_features,), float32 or float64
            float64 is rounded to float32 first: the layer computes in float32, its
            storage precision. Any layout; an F-contiguous batch (e.g. the output of
            another ``CondensedLinear``) is read without a copy. Not checked for NaN/inf:
            they propagate to the outputs whose rows read them.

        out : ndarray of shape (B, n_active) or (n_active,), float32, C-contiguous, optional
            Where to write ``y`` at batch ``B <= matmul.SMALL_BATCH`` (8): saves the
            allocation of a repeated batch-1 call. Checked.

        Returns
        -------
        y : ndarray of shape (B, n_active) or (n_active,), float32
            ``out`` when given. F-contiguous when ``B > matmul.SMALL_BATCH``, else
            C-ordered rows.

        Raises
        ------
        TypeError, ValueError
            ``x`` or ``out`` of the wrong type, dtype or shape (``out`` with a batch above
            ``matmul.SMALL_BATCH``).
        """
        x = matmul.check_activations("x", x, self.in_features).astype(np.float32, copy=False)
        small = x.ndim == 1 or x.shape[0] <= matmul.SMALL_BATCH
        if out is not None:
            _check_out(out, x.shape[:-1] + (self.n_active,), small)
        if small and matmul.WINDOW_KERNEL and self._windows_pay_off:
            return matmul.forward_windows(x, self._windows, self._bias, self.n_active,
                                          self.k, out)
        y = matmul.forward(x, self._slab_values, self._slab_index, self._bias,
                           self.n_active)
        if out is None:
            return y
        out[...] = y
        return out


def _check_out(out, shape, small) -> None:
    """Raise unless ``out`` is a C-contiguous float32 array of ``shape`` at a small batch."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    flags = out.flags
    if out.dtype != np.float32 or not (flags.c_contiguous and flags.writeable):
        raise TypeError(f"out must be a writeable C-contiguous float32 array, got dtype "
                        f"{out.dtype}, C-contiguous {flags.c_contiguous}, writeable "
                        f"{flags.writeable}")
    if out.shape != shape or not small:
        raise ValueError(f"out.shape == {out.shape}, must be {shape} with a batch of at "
                         f"most matmul.SMALL_BATCH == {matmul.SMALL_BATCH}")


def _checked_copy(name, a, dtype, ndim, *, like=None, length=None) -> np.ndarray:
    """A C-contiguous copy of ``a`` as ``dtype`` after cheap type and shape checks."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if np.dtype(dtype).kind == "f" and a.dtype != dtype:
        raise TypeError(f"{name}.dtype == {a.dtype}, must be {np.dtype(dtype)}")
    if np.dtype(dtype).kind == "i" and a.dtype.kind not in "iu":
        raise TypeError(f"{name}.dtype == {a.dtype}, must be an integer dtype")
    if a.ndim != ndim or (like is not None and a.shape != like.shape) or (
            length is not None and a.shape[0] != length):
        want = like.shape if like is not None else (length,) if length is not None else \
            f"{ndim}-d"
        raise ValueError(f"{name}.shape == {a.shape}, must be {want}")
    return np.array(a, dtype=dtype, order="C")


def _read_only(a: np.ndarray) -> np.ndarray:
    """A view of ``a`` that cannot be written through."""
    view = a.view()
    view.flags.writeable = False
    return view


def condense(weight, mask, bias=None) -> CondensedLinear:
    """Condense one constant fan-in layer (docs/algorithm.md §9).

    The structure comes from ``mask``, never from ``weight != 0`` (a grown weight can be
    exactly 0): ``active_rows`` are the rows of ``mask`` with any True, ``indices[r]`` the
    ``k`` True columns of row ``active_rows[r]`` in ascending order, ``values`` the weights
    there (as float32).

    Parameters
    ----------
    weight : ndarray of shape (out, in) or (out, C_in, kh, kw), float32 or float64
        Entries outside ``mask`` are ignored (they may be anything, NaN included).
    mask : ndarray of the shape of ``weight``, bool
        Every row has the same number ``k`` of True entries, or none (an ablated neuron).
    bias : ndarray of shape (out,), float32 or float64, optional
        Defaults to zeros.

    Returns
    -------
    CondensedLinear

    Raises
    ------
    TypeError
        wrong types or dtypes.
    ValueError
        shapes disagree; a row of ``mask`` breaks constant fan-in (the message names the
        first such row); an active weight or the bias is not finite.
    """
    weight = as_float_array("weight", weight, finite=False)
    if weight.ndim < 2:
        raise ValueError(f"weight.shape == {weight.shape}, must be (out, in) or "
                         f"(out, C_in, kh, kw)")
    mask = as_mask("mask", mask, shape=weight.shape)
    out = weight.shape[0]
    bias = (np.zeros(out, dtype=np.float32) if bias is None
            else as_float_array("bias", bias, shape=(out,)))
    w2 = weight.reshape(out, -1)                                     # [out, in]
    m2 = mask.reshape(out, -1)                                       # [out, in]
    k = check_constant_fan_in(m2)
    active_rows = np.flatnonzero(m2.any(axis=1))                     # [n_active] int64
    indices = np.nonzero(m2[active_rows])[1].reshape(active_rows.size, k)  # [n_active, k]
    values = w2[active_rows[:, None], indices].astype(np.float32)           # [n_active, k]
    if not np.isfinite(values).all():
        r, j = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"weight[{active_rows[r]}, {indices[r, j]}] == {values[r, j]} "
                         f"(flattened index) is active in mask, must be finite")
    return CondensedLinear(values, indices.astype(np.int32), active_rows,
                           bias[active_rows].astype(np.float32), weight.shape)
