"""Numba kernels of the condensed (constant fan-in) layer: forward and backward.

Every kernel trusts its inputs (validated by ``matmul.py``): C-contiguous arrays, one float
dtype throughout (float32 or float64), indices in range. Numba does not bounds-check, so a
bad index here reads or writes arbitrary memory.

Layouts (SPEC section 9): ``values [n, k]``; ``index [n, k_pad]`` unsigned (uint16 when
``in <= 65536``, else uint32), ``k_pad >= k`` a multiple of 4, columns ``k..k_pad-1`` padding
that no kernel reads; activations of a batch are feature-major, ``xT [in, B]``, so each
gathered input is one contiguous row of ``B`` floats.

Floating point: ``fastmath={"contract"}`` only (a*b+c may become one FMA, which changes
the last bit, well inside every test tolerance); no reassociation, so each kernel sums in
the order written here. The serial and parallel builds inline the same per-row helper
(``inline="always"``: calling it instead cost 11-35%), hence agree bit for bit (tested).
Different kernels (batch 1 vs batched) sum in different orders and agree to rounding.

Measured on the development machine (AMD EPYC Zen 4, 1 thread; bench/README.md):

- batch 1: the floor is two floating-point loads per nonzero (its value and the gathered
  ``x``; Zen 4 feeds at most two loads per cycle to the FP unit) and the index arithmetic.
  Reading the uint16 indices four at a time as one uint64 word and splitting it with
  shifts cuts the index loads to a quarter: ~1.1 cycles per nonzero vs ~1.25 with one
  index load per nonzero and ~1.3 with ``vgatherdps`` (micro-coded on Zen 4). Four
  partial sums break the add dependency chain.
- batched: four nonzeros per pass over the ``B`` lanes (one load and one store of the
  output row per four FMAs; the loop vectorises over contiguous rows).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

FASTMATH = {"contract"}


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _dot_packed16(x, values, words, r, k):
    """``sum_j values[r, j] * x[index[r, j]]``, reading four uint16 indices per uint64 word.

    ``words[r, q]`` holds ``index[r, 4q .. 4q+3]`` in its 16-bit lanes, lowest first
    (little-endian view of the uint16 index). Four partial sums, combined pairwise.
    """
    s0 = s1 = s2 = s3 = values.dtype.type(0)
    k8 = k - k % 8
    for j in range(0, k8, 8):
        w = words[r, j >> 2]            # indices j .. j+3
        u = words[r, (j >> 2) + 1]      # indices j+4 .. j+7
        s0 += values[r, j] * x[w & 0xFFFF]
        s1 += values[r, j + 1] * x[(w >> 16) & 0xFFFF]
        s2 += values[r, j + 2] * x[(w >> 32) & 0xFFFF]
        s3 += values[r, j + 3] * x[w >> 48]
        s0 += values[r, j + 4] * x[u & 0xFFFF]
        s1 += values[r, j + 5] * x[(u >> 16) & 0xFFFF]
        s2 += values[r, j + 6] * x[(u >> 32) & 0xFFFF]
        s3 += values[r, j + 7] * x[u >> 48]
    for j in range(k8, k):
        s0 += values[r, j] * x[(words[r, j >> 2] >> np.uint64(16 * (j & 3))) & 0xFFFF]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, fastmath=FASTMATH)
def matvec_packed16(x, values, words, bias, y):
    """Batch 1: ``y[r] = bias[r] + sum_j values[r, j] * x[index[r, j]]``, serial.

    x : [in]; values : [n, k]; words : [n, k_pad // 4] uint64 (uint16 index viewed as
    uint64); bias, y : [n]. Slow twin: ``tests/condensed/naive_condensed.py::forward``.
    """
    k = values.shape[1]
    for r in range(values.shape[0]):
        y[r] = _dot_packed16(x, values, words, r, k) + bias[r]


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def matvec_packed16_parallel(x, values, words, bias, y):
    """``matvec_packed16`` with the rows split across threads (same per-row code)."""
    k = values.shape[1]
    for r in prange(values.shape[0]):
        y[r] = _dot_packed16(x, values, words, r, k) + bias[r]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _row_matmat(xT, values, index, bias_r, r, yr):
    """``yr[:] = bias_r + sum_j values[r, j] * xT[index[r, j], :]``, four nonzeros a pass."""
    k = values.shape[1]
    for t in range(yr.shape[0]):
        yr[t] = bias_r
    k4 = k - k % 4
    for j in range(0, k4, 4):
        x0 = xT[index[r, j]]            # [B] contiguous rows of the gathered inputs
        x1 = xT[index[r, j + 1]]
        x2 = xT[index[r, j + 2]]
        x3 = xT[index[r, j + 3]]
        v0 = values[r, j]
        v1 = values[r, j + 1]
        v2 = values[r, j + 2]
        v3 = values[r, j + 3]
        for t in range(yr.shape[0]):
            yr[t] = yr[t] + v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]
    for j in range(k4, k):
        xj = xT[index[r, j]]
        vj = values[r, j]
        for t in range(yr.shape[0]):
            yr[t] += vj * xj[t]


@njit(cache=True, fastmath=FASTMATH)
def matmat(xT, values, index, bias, yT):
    """Batched, feature-major: ``yT[r, b] = bias[r] + sum_j values[r, j] * xT[index[r, j], b]``.

    xT : [in, B]; values : [n, k]; index : [n, k_pad] uint16/uint32; bias : [n];
    yT : [n, B] (written). Serial. Slow twin: ``naive_condensed.forward``.
    """
    for r in range(values.shape[0]):
        _row_matmat(xT, values, index, bias[r], r, yT[r])


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def matmat_parallel(xT, values, index, bias, yT):
    """``matmat`` with the rows split across threads (same per-row code)."""
    for r in prange(values.shape[0]):
        _row_matmat(xT, values, index, bias[r], r, yT[r])


@njit(cache=True)
def transpose(x, xT):
    """``xT[:] = x.T`` in 32 x 32 tiles. x : [B, in]; xT : [in, B].

    Reads run along rows of ``x`` (measured ~4x faster than ``np.ascontiguousarray(x.T)``
    at 256 x 3072, whose 12 KiB-strided reads thrash L1 sets).
    """
    n0, n1 = x.shape
    for i0 in range(0, n0, 32):
        for j0 in range(0, n1, 32):
            for i in range(i0, min(i0 + 32, n0)):
                for j in range(j0, min(j0 + 32, n1)):
                    xT[j, i] = x[i, j]


@njit(cache=True, fastmath=FASTMATH)
def backward_dx(dyT, values, index, dxT):
    """Input gradient, scattered: ``dxT[index[r, j], :] += values[r, j] * dyT[r, :]``.

    dyT : [n, B]; values : [n, k]; index : [n, k_pad]; dxT : [in, B], zeroed by the caller.
    Serial (rows scatter into shared inputs). Slow twin: ``naive_condensed.backward``.
    """
    k = values.shape[1]
    for r in range(values.shape[0]):
        dyr = dyT[r]
        for j in range(k):
            dxr = dxT[index[r, j]]
            vj = values[r, j]
            for t in range(dyr.shape[0]):
                dxr[t] += vj * dyr[t]


@njit(cache=True, fastmath=FASTMATH)
def backward_dvalues(dyT, xT, index, dvalues):
    """Value gradient: ``dvalues[r, j] = sum_b dyT[r, b] * xT[index[r, j], b]``.

    dyT : [n, B]; xT : [in, B]; index : [n, k_pad]; dvalues : [n, k] (written).
    Slow twin: ``naive_condensed.backward``.
    """
    for r in range(dvalues.shape[0]):
        dyr = dyT[r]
        for j in range(dvalues.shape[1]):
            xr = xT[index[r, j]]
            s = dvalues.dtype.type(0)
            for t in range(dyr.shape[0]):
                s += dyr[t] * xr[t]
            dvalues[r, j] = s
