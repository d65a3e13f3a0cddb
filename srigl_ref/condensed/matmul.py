"""The condensed product ``y = x @ W.T`` from ``(values, indices)``: checks and kernel dispatch.

docs/algorithm.md §9: ``y[b, r] = sum_j values[r, j] * x[b, indices[r, j]] (+ bias[r])``.
``condensed_matmul`` and ``condensed_matmul_backward`` are the public raw operations (no
bias, any float dtype); ``CondensedLinear`` (``format.py``) calls ``forward`` directly with
its pre-validated arrays in the kernels' lanes layout (``lanes_layout``).

Activations. A 1-D ``x [in]``, or a batch of at most ``SMALL_BATCH`` examples, runs the
batch-1 kernel once per example (C-ordered rows). A larger batch runs feature-major, on
``xT [in, B]``; the result is returned as ``yT.T``, an F-contiguous ``[B, n]`` view, so the
next condensed layer gets its ``xT`` without a copy. A C-ordered ``x [B, in]`` is
transposed once (a tiled copy).

Non-finite inputs are not looked for (that would be an extra pass over ``x`` per call):
NaN and inf propagate, as IEEE arithmetic does, to exactly the outputs whose rows read them.
Unlike a masked dense product, a NaN in an input column that no row reads stays invisible.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from llvmlite import binding as llvm

from . import _kernels
from ._kernels import GROUP, LANES, PAD_OFFSET, WINDOW

# Below this many multiply-adds (nonzeros x batch) one thread is faster: a parallel region
# costs more than it saves (`bench/condensed_matmul.py --threshold`; bench/README.md,
# "## condensed_matmul"). When other processes keep the cores busy, a parallel region can
# wait milliseconds for its second thread: run with NUMBA_NUM_THREADS=1 (or
# numba.set_num_threads(1)) on a shared machine.
PARALLEL_MIN_WORK = 1 << 16

# Up to this many examples the batch-1 kernel, once per example, beats the feature-major
# one, whose per-nonzero loop overhead a batch of 2-8 floats does not amortise
# (`bench/condensed_matmul.py --small-batch`; bench/README.md).
SMALL_BATCH = 8


def _window_kernel_runs() -> bool:
    """Whether Numba compiles for a CPU with AVX-512 (AVX512F and AVX512VL), which the
    window-permute kernel needs (``vpermi2ps``): the host CPU, unless ``NUMBA_CPU_NAME``
    or ``NUMBA_CPU_FEATURES`` point Numba at another target."""
    if numba.config.CPU_NAME not in (None, "host") or numba.config.CPU_FEATURES:
        return False
    features = llvm.get_host_cpu_features()
    return bool(features.get("avx512f") and features.get("avx512vl"))


# The batch-1 kernel (and per-example small batches) of float32 layers: the window-permute
# kernel where the CPU has AVX-512 (and the layer is dense enough, ``use_windows``), else
# the lanes kernel. Both give the same bits. The window kernel is the faster one both when
# the layer stays in cache and when it streams from memory (bench/README.md, "### Window-
# permute kernel"), so this is the only switch: set it to False to run the lanes kernel
# always (read at every call; a whole-model plan reads it when built).
WINDOW_KERNEL = _window_kernel_runs()

# The window kernel needs a row to have about this many nonzeros per window on average:
# below, its padding (steps where most rows have nothing to take) costs more than the
# lanes kernel's per-nonzero gathers (bench/README.md, "### Window-permute kernel",
# *Density*).
WINDOW_MIN_NONZEROS = 1


def windows_pay_off(k: int, in_features: int) -> bool:
    """Whether a layer of fan-in ``k`` over ``in_features`` inputs is dense enough for the
    window kernel: ``k WINDOW >= WINDOW_MIN_NONZEROS in``."""
    return k * WINDOW >= WINDOW_MIN_NONZEROS * in_features


def use_windows(k: int, in_features: int) -> bool:
    """Whether such a layer runs the window kernel at small batches: ``WINDOW_KERNEL``
    (read at every call, so setting it takes effect at once) and ``windows_pay_off``."""
    return WINDOW_KERNEL and windows_pay_off(k, in_features)


def index_dtype(in_features: int) -> np.dtype:
    """The narrowest unsigned dtype that holds column indices below ``in_features``.

    uint16 when ``in_features <= 65536``, else uint32. (uint8 would only serve layers with
    at most 256 inputs, too small to matter, at the cost of more compiled kernels.)
    """
    return np.dtype(np.uint16) if in_features <= 1 << 16 else np.dtype(np.uint32)


def narrow_index(indices: np.ndarray, in_features: int) -> np.ndarray:
    """The row-major kernels' index (training, backward): ``indices`` as
    ``index_dtype(in_features)``.

    Parameters
    ----------
    indices : ndarray of shape (n, k), integer, each entry in ``[0, in_features)``
    in_features : int

    Returns
    -------
    index : ndarray of shape (n, k), uint16 or uint32, C-contiguous
    """
    return np.ascontiguousarray(indices, dtype=index_dtype(in_features))


def lanes_layout(values: np.ndarray, indices: np.ndarray,
                 in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The forward kernels' layout of a condensed layer: rows in blocks of ``LANES``.

    Parameters
    ----------
    values : ndarray of shape (n, k), float32 or float64
    indices : ndarray of shape (n, k), integer, each entry in ``[0, in_features)``
    in_features : int

    Returns
    -------
    slab_values : ndarray of shape (n_blocks, k, LANES), dtype of ``values``
        ``slab_values[b, j, l] = values[LANES * b + l, j]``; ``n_blocks = ceil(n / LANES)``,
        the rows past ``n`` are padding with value 0.
    slab_index : ndarray of shape (n_blocks, k, LANES), ``index_dtype(in_features)``
        The indices laid out alike; padding rows read input 0.
    """
    n_blocks, k = -(-values.shape[0] // LANES), values.shape[1]
    return tuple(np.ascontiguousarray(padded_rows(a).reshape(n_blocks, LANES, k)
                                      .transpose(0, 2, 1))
                 for a in (values, indices.astype(index_dtype(in_features), copy=False)))


class WindowLayout(NamedTuple):
    """The window-permute layout of a condensed layer (``window_layout``); float32.

    Attributes
    ----------
    values : ndarray of shape (n k,), float32
        The nonzeros in stream order (unit by unit, lane by lane; no padding): a unit's
        lanes that hold an input take the next values in turn. Group ``q``'s start at
        ``GROUP LANES q k``.
    offsets : ndarray of shape (n_units, LANES), uint8
        Each unit is one step of one block of ``LANES`` rows: each row's input's offset in
        the step's window, or ``PAD_OFFSET`` (a zero slot, and no value) for padding.
    step_input : ndarray of shape (n_steps,), int32
        The first input of each step's window, group by group; a step of a group of
        ``GROUP`` blocks (fewer in the last) is one unit per block.
    step_start : ndarray of shape (n_groups + 1,), int64
        The first step of each group (and the total).
    group_start : ndarray of shape (n_groups + 1,), int64
        The first unit of each group (and the total).
    """
    values: np.ndarray
    offsets: np.ndarray
    step_input: np.ndarray
    step_start: np.ndarray
    group_start: np.ndarray


def window_layout(values: np.ndarray, indices: np.ndarray, in_features: int) -> WindowLayout:
    """The batch-1 kernel's layout on AVX-512 CPUs (``_kernels.matvec_windows``).

    The rows go in blocks of ``LANES`` (16), ``GROUP`` (4) blocks a group (fewer in the
    last). A group runs a sequence of steps, each over a window of ``WINDOW`` (31)
    consecutive inputs that starts at the smallest next index of the group's rows
    (*sliding* starts; moved back to ``in_features - WINDOW`` near the end); every row whose
    next nonzero falls in the window takes it, the others pad (offset ``PAD_OFFSET``, the
    zero slot; the kernel gives them value 0, and the value stream stores none). So each
    row meets its nonzeros in order ``j = 0 .. k-1``, whatever their order: the sums are
    bit for bit the lanes kernel's (adding ``0 * 0`` to a sum that starts at +0.0 changes
    nothing), and a NaN or inf input reaches exactly the rows that read it.

    Parameters
    ----------
    values : ndarray of shape (n, k), float32
    indices : ndarray of shape (n, k), integer, each in ``[0, in_features)``
    in_features : int

    Returns
    -------
    WindowLayout
    """
    n_blocks = -(-values.shape[0] // LANES)
    n_groups = -(-n_blocks // GROUP)
    index = np.ascontiguousarray(indices, dtype=np.int64)            # [n, k]
    steps = np.empty(n_groups, dtype=np.int64)
    _kernels.window_steps(index, in_features, steps)
    group_blocks = np.minimum(GROUP, n_blocks - GROUP * np.arange(n_groups))  # [n_groups]
    step_start = np.concatenate(([0], np.cumsum(steps)))
    group_start = np.concatenate(([0], np.cumsum(steps * group_blocks)))
    n_units = int(group_start[-1])
    out_values = np.empty(values.size, dtype=np.float32)
    out_offsets = np.full((n_units, LANES), PAD_OFFSET, dtype=np.uint8)
    step_input = np.empty(int(step_start[-1]), dtype=np.int32)
    _kernels.window_fill(index, np.ascontiguousarray(values, dtype=np.float32),
                         in_features, step_start, group_start, out_values, out_offsets,
                         step_input)
    return WindowLayout(out_values, out_offsets, step_input, step_start, group_start)


def padded_rows(a: np.ndarray) -> np.ndarray:
    """``a [n, ...]`` with zero rows appended up to ``LANES * ceil(n / LANES)`` rows (the
    lanes layout's padding; a bias ``[n]`` becomes ``[n_pad]``)."""
    out = np.zeros((-(-a.shape[0] // LANES) * LANES,) + a.shape[1:], dtype=a.dtype)
    out[:a.shape[0]] = a
    return out


def check_activations(name: str, x, in_features: int | None) -> np.ndarray:
    """Return ``x`` if it is a float32/float64 ``[B, in_features]`` or ``[in_features]`` array.

    ``in_features=None`` accepts any width. The layout is left as it is (no copy), so a
    feature-major batch stays feature-major.

    Raises
    ------
    TypeError
        ``x`` is not an ndarray or not float32/float64.
    ValueError
        wrong ``ndim``, wrong last dimension, or an empty batch.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}.dtype == {x.dtype}, must be float32 or float64")
    if x.ndim not in (1, 2) or in_features not in (None, x.shape[-1]):
        width = "in" if in_features is None else in_features
        raise ValueError(f"{name}.shape == {x.shape}, must be (B, {width}) or "
                         f"({width},): the last dimension is in_features")
    if x.size == 0:
        raise ValueError(f"{name}.shape == {x.shape}, the batch must not be empty")
    return x


def forward(x: np.ndarray, slab_values: np.ndarray, slab_index: np.ndarray,
            bias: np.ndarray, n: int) -> np.ndarray:
    """Trusted forward: ``y = x @ W.T + bias`` on validated arrays (no checks here).

    Parameters
    ----------
    x : ndarray of shape (B, in) or (in,), any layout, same dtype as ``slab_values``
    slab_values, slab_index : ndarray of shape (n_blocks, k, LANES), from ``lanes_layout``
    bias : ndarray of shape (LANES * n_blocks,), dtype of ``slab_values`` (``padded_rows``)
    n : int
        Rows of the layer (``<= LANES * n_blocks``).

    Returns
    -------
    y : ndarray of shape (B, n) or (n,), dtype of ``slab_values``
        F-contiguous when ``B > SMALL_BATCH``, else C-ordered rows.
    """
    n_batch = x.shape[0] if x.ndim == 2 else 1
    work = n * slab_values.shape[1] * n_batch
    parallel = work >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1
    if n_batch <= SMALL_BATCH:
        rows = np.ascontiguousarray(x.reshape(n_batch, -1))           # [B, in]
        y = np.empty((n_batch, bias.shape[0]), dtype=slab_values.dtype)  # [B, n_pad]
        kernel = _kernels.matvec_lanes_parallel if parallel else _kernels.matvec_lanes
        kernel(rows, slab_values, slab_index, bias, y)
        return y[:, :n] if x.ndim == 2 else y[0, :n]
    xT = feature_major(x)                                            # [in, B]
    yT = np.empty((n, xT.shape[1]), dtype=slab_values.dtype)         # [n, B]
    kernel = _kernels.matmat_lanes_parallel if parallel else _kernels.matmat_lanes
    kernel(xT, slab_values, slab_index, bias, yT)
    return yT.T


def forward_windows(x: np.ndarray, windows: WindowLayout, bias: np.ndarray, n: int, k: int,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Trusted batch-1 forward in the window layout (AVX-512 CPUs only; no checks here):
    ``y = x @ W.T + bias``, bit for bit ``forward``.

    Parameters
    ----------
    x : ndarray of shape (B, in) or (in,), float32, ``B <= SMALL_BATCH``
    windows : WindowLayout
        From ``window_layout``.
    bias : ndarray of shape (LANES * n_blocks,), float32 (``padded_rows``)
    n, k : int
        Rows and fan-in of the layer (``n k`` nonzeros decide serial or parallel).
    out : ndarray of shape (B, n) or (n,) as ``x``, float32, C-contiguous, optional
        Written and returned; a new array when omitted.

    Returns
    -------
    y : ndarray of shape (B, n) or (n,), float32, C-contiguous
    """
    x = np.ascontiguousarray(x)                                      # [B, in] or [in]
    if out is None:
        out = np.empty(x.shape[:-1] + (n,), dtype=np.float32)
    parallel = (n * k * (x.shape[0] if x.ndim == 2 else 1) >= PARALLEL_MIN_WORK
                and numba.config.NUMBA_NUM_THREADS > 1 and numba.get_num_threads() > 1)
    kernel = _kernels.matvec_windows_parallel if parallel else _kernels.matvec_windows
    kernel(x, *windows, bias, out)
    return out


def feature_major(x: np.ndarray) -> np.ndarray:
    """``x [B, in]`` as a C-contiguous ``[in, B]`` array (``x [in]`` as ``[in, 1]``).

    A view when ``x`` is already F-contiguous (a previous layer's output), else a copy.
    """
    if x.ndim == 1:
        return np.ascontiguousarray(x)[:, None]
    if x.T.flags.c_contiguous:
        return x.T
    xT = np.empty(x.shape[::-1], dtype=x.dtype)
    _kernels.transpose(np.ascontiguousarray(x), xT)
    return xT


def _check_operands(x, values, indices, dtypes=()):
    """Shared checks of the raw operations; returns ``(x, values, dtype)`` (converted)."""
    if not isinstance(values, np.ndarray):
        raise TypeError(f"values must be a numpy.ndarray, got {type(values).__name__}")
    if values.dtype not in (np.float32, np.float64):
        raise TypeError(f"values.dtype == {values.dtype}, must be float32 or float64")
    if values.ndim != 2:
        raise ValueError(f"values.shape == {values.shape}, must be (n_active, k)")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices.dtype == {indices.dtype}, must be an integer dtype")
    if indices.shape != values.shape:
        raise ValueError(f"indices.shape == {indices.shape}, must equal "
                         f"values.shape == {values.shape}")
    x = check_activations("x", x, None)
    in_features = x.shape[-1]
    check_index_range("indices", indices, in_features, f"x.shape[-1] == {in_features}")
    dtype = np.result_type(x.dtype, values.dtype, *dtypes)
    return x.astype(dtype, copy=False), np.ascontiguousarray(values, dtype=dtype), dtype


def check_index_range(name: str, indices: np.ndarray, size: int, what: str) -> None:
    """Raise ``ValueError`` naming the first entry of ``indices`` outside ``[0, size)``."""
    bad = (indices < 0) | (indices >= size)
    if bad.any():
        pos = np.unravel_index(np.argmax(bad), indices.shape)
        raise ValueError(f"{name} contains {indices[pos]} at {tuple(int(p) for p in pos)}, "
                         f"must be in [0, {size}) ({what})")


def condensed_matmul(x, values, indices):
    """The raw condensed product, no bias: ``y[b, r] = sum_j values[r, j] * x[b, indices[r, j]]``.

    docs/algorithm.md §9. Validates everything and converts the index on every call (an O(nnz)
    pass); ``CondensedLinear`` keeps its index converted and is the fast path.

    Parameters
    ----------
    x : ndarray of shape (B, in) or (in,), float32 or float64
        ``in`` is ``x.shape[-1]``; any layout (F-contiguous batches avoid a transpose).
    values : ndarray of shape (n_active, k), float32 or float64
    indices : ndarray of shape (n_active, k), integer, each in ``[0, in)``

    Returns
    -------
    y : ndarray of shape (B, n_active) or (n_active,)
        float32 when ``x`` and ``values`` are float32, else float64 (computed in that dtype).

    Raises
    ------
    TypeError
        an argument is not an ndarray, or has a wrong dtype.
    ValueError
        shapes disagree, or an index is out of range (the message names the entry).
    """
    x, values, dtype = _check_operands(x, values, indices)
    slab_values, slab_index = lanes_layout(values, indices, x.shape[-1])
    bias = np.zeros(slab_values.shape[0] * LANES, dtype=dtype)      # [n_pad], none
    return forward(x, slab_values, slab_index, bias, values.shape[0])


def condensed_matmul_backward(dy, x, values, indices):
    """Gradients of ``y = condensed_matmul(x, values, indices)`` given ``dy = dL/dy``.

    ``dx[b, i] = sum_{r, j: indices[r, j] == i} values[r, j] * dy[b, r]`` and
    ``dvalues[r, j] = sum_b dy[b, r] * x[b, indices[r, j]]`` (the bias gradient is
    ``dy.sum(0)``, left to the caller).

    Parameters
    ----------
    dy : ndarray of shape (B, n_active) or (n_active,), float32 or float64
        Same ndim as ``x``.
    x, values, indices
        As in ``condensed_matmul``.

    Returns
    -------
    dx : ndarray of the shape of ``x``
    dvalues : ndarray of shape (n_active, k)
        Both float32 when every input is float32, else float64.

    Raises
    ------
    TypeError, ValueError
        As ``condensed_matmul``; also ``dy`` of the wrong shape or dtype.
    """
    if not isinstance(dy, np.ndarray):
        raise TypeError(f"dy must be a numpy.ndarray, got {type(dy).__name__}")
    if dy.dtype not in (np.float32, np.float64):
        raise TypeError(f"dy.dtype == {dy.dtype}, must be float32 or float64")
    x, values, dtype = _check_operands(x, values, indices, (dy.dtype,))
    index = narrow_index(indices, x.shape[-1])                       # [n, k]
    want = (x.shape[0], values.shape[0]) if x.ndim == 2 else (values.shape[0],)
    if dy.shape != want:
        raise ValueError(f"dy.shape == {dy.shape}, must be {want} (batch of x, n_active)")
    xT = feature_major(x)                                            # [in, B]
    dyT = feature_major(dy.astype(dtype, copy=False))                # [n, B]
    dxT = np.zeros(xT.shape, dtype=dtype)                            # [in, B]
    dvalues = np.empty(values.shape, dtype=dtype)                    # [n, k]
    _kernels.backward_dx(dyT, values, index, dxT)
    _kernels.backward_dvalues(dyT, xT, index, dvalues)
    return (dxT.T if x.ndim == 2 else dxT[:, 0]), dvalues
