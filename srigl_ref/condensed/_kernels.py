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


# --------------------------------------------------------------------------------------
# Training in condensed form (``training.py``): full-width outputs, ablated rows = bias.
#
# A layer being trained keeps every neuron's output, ``yT [out, B]``: the ``n_active``
# active neurons ``rows[r]`` are computed, an ablated neuron outputs its bias (what the
# masked-dense layer computes for an all-zero row), so the next layer's inputs and the
# bias gradients equal the masked engine's. ``rows`` is ascending and duplicate-free, so
# the rows written by different ``r`` never overlap.
#
# The backward allows reassociation (``fastmath={"contract", "reassoc"}``) so that the
# dot product over the batch (``dvalues``) vectorises: 4.3x faster than the scalar chain at
# 2048 x 2048, density 0.05, batch 128 (measured when written). The order is then the
# compiler's, fixed for a given build; results agree with the masked engine to rounding.
#
# Serial only: a ``prange`` twin of ``matmat_rows`` (rows split across 2 threads) took
# 15.5 ms instead of 2.1 ms at 2048 x 2048, k = 102, batch 128 on this shared 2-core
# machine (load ~3: the parallel region waits for a descheduled thread), and the
# backward's scatter into shared inputs does not split by rows.

TRAIN_BACKWARD_FASTMATH = {"contract", "reassoc"}


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _fill_bias_rows(bias, yT, o):
    """``yT[o, :] = bias[o]``."""
    yo = yT[o]
    for t in range(yo.shape[0]):
        yo[t] = bias[o]


@njit(cache=True, fastmath=FASTMATH)
def matmat_rows(xT, values, index, rows, bias, yT):
    """Full-width batched forward: ``yT[o] = bias[o]`` for every neuron ``o``, and for the
    active ones ``yT[rows[r], b] = bias[rows[r]] + sum_j values[r, j] * xT[index[r, j], b]``.

    xT : [in, B]; values : [n_active, k]; index : [n_active, k_pad] uint16/uint32;
    rows : [n_active] int64, ascending, in [0, out); bias : [out]; yT : [out, B] (written).
    Slow twin: ``tests/test_condensed_training.py::naive_forward``.
    """
    for o in range(yT.shape[0]):
        _fill_bias_rows(bias, yT, o)
    for r in range(values.shape[0]):
        _row_matmat(xT, values, index, bias[rows[r]], r, yT[rows[r]])


@njit(cache=True, fastmath=TRAIN_BACKWARD_FASTMATH, inline="always")
def _row_backward(dyT, xT, values, index, rows, r, dxT, dvalues, need_dx):
    """Row ``r``: ``dvalues[r, j] = sum_b dyT[rows[r], b] * xT[index[r, j], b]`` and, if
    ``need_dx``, ``dxT[index[r, j], :] += values[r, j] * dyT[rows[r], :]``, one pass per j."""
    dyr = dyT[rows[r]]
    for j in range(values.shape[1]):
        c = index[r, j]
        xr = xT[c]
        s = values.dtype.type(0)
        if need_dx:
            dxr = dxT[c]
            vj = values[r, j]
            for t in range(dyr.shape[0]):
                s += dyr[t] * xr[t]
                dxr[t] += vj * dyr[t]
        else:
            for t in range(dyr.shape[0]):
                s += dyr[t] * xr[t]
        dvalues[r, j] = s


@njit(cache=True, fastmath=TRAIN_BACKWARD_FASTMATH)
def backward_rows(dyT, xT, values, index, rows, dxT, dvalues, need_dx):
    """Backward of ``matmat_rows`` (without the bias gradient), serial.

    dyT : [out, B]; xT : [in, B]; values : [n_active, k]; index : [n_active, k_pad];
    rows : [n_active]; dxT : [in, B], zeroed by the caller (untouched when ``need_dx`` is
    False); dvalues : [n_active, k] (written); need_dx : bool. Rows of ``dyT`` of ablated
    neurons are never read. Slow twin: ``tests/test_condensed_training.py::naive_backward``.
    """
    for r in range(values.shape[0]):
        _row_backward(dyT, xT, values, index, rows, r, dxT, dvalues, need_dx)


@njit(cache=True, fastmath=FASTMATH)
def mlp_matvec_packed16(x, params, words, layout, buf):
    """A whole chain of linear layers at batch 1, in one call (``condensed/model.py``).

    x : [n_in] float32, the input; params : float32, every layer's weights and biases
    flattened; words : uint64, every condensed layer's uint16 index ``[n, k_pad]`` viewed
    as uint64 ``[n, k_pad // 4]`` and flattened; buf : float32 scratch holding the input
    (at 0) and every layer's output; layout : int64 [n_layers, 10], per layer
    ``kind`` (0 condensed, 1 dense), ``n`` (outputs), ``k`` (condensed: fan-in; dense:
    inputs), ``kq`` (uint64 words per index row), offsets of the values / dense weight
    ``[n, k]`` in ``params``, of the index in ``words``, of the bias in ``params``, ``relu``
    (0/1), and the offsets of the layer's input and output in ``buf``.

    Condensed rows use ``_dot_packed16`` (bit for bit ``matvec_packed16``); dense rows sum
    in four partial sums. Slow twin: ``naive_condensed.forward`` layer by layer, relu
    between (``tests/condensed/test_model.py``).
    """
    zero = params.dtype.type(0)
    buf[:x.shape[0]] = x
    for li in range(layout.shape[0]):
        kind, n, k, kq = layout[li, 0], layout[li, 1], layout[li, 2], layout[li, 3]
        vo, wo, bo, relu = layout[li, 4], layout[li, 5], layout[li, 6], layout[li, 7]
        io, oo = layout[li, 8], layout[li, 9]
        if kind == 0:
            xin = buf[io:]
            values = params[vo:vo + n * k].reshape(n, k)
            index = words[wo:wo + n * kq].reshape(n, kq)
            for r in range(n):
                s = _dot_packed16(xin, values, index, r, k) + params[bo + r]
                if relu != 0 and s < zero:
                    s = zero
                buf[oo + r] = s
        else:
            for r in range(n):
                w0 = vo + r * k
                s0 = s1 = s2 = s3 = zero
                k4 = k - k % 4
                for j in range(0, k4, 4):
                    s0 += params[w0 + j] * buf[io + j]
                    s1 += params[w0 + j + 1] * buf[io + j + 1]
                    s2 += params[w0 + j + 2] * buf[io + j + 2]
                    s3 += params[w0 + j + 3] * buf[io + j + 3]
                for j in range(k4, k):
                    s0 += params[w0 + j] * buf[io + j]
                s = (s0 + s1) + (s2 + s3) + params[bo + r]
                if relu != 0 and s < zero:
                    s = zero
                buf[oo + r] = s
