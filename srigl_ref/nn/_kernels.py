"""Numba kernels for the layers' hot loops: im2col / col2im and 2-D max pooling.

Self-contained (imports only numpy and numba, calls only helpers in this file). Callers in
``layers.py`` validate first; every kernel trusts its inputs: C-contiguous float32/float64
arrays of consistent shapes, ``stride >= 1``, ``padding >= 0``, output sizes >= 1.

Column layout. ``im2col`` writes ``cols`` of shape ``[C*kh*kw, B*oh*ow]`` (rows in the
weight's C order ``(c, p, q)``, columns in ``(b, i, j)`` order), so a convolution is one
GEMM ``W.reshape(O, -1) @ cols``. Each kernel row ``(c, p, q, b, i)`` is a contiguous run
of ``ow`` values, which is what makes the copy fast (measured faster than the strided
NumPy ``sliding_window_view`` + transpose copy; see bench/README.md "## train_step").
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _valid_columns(q, stride, padding, width, ow):
    """Output columns ``j`` in ``[j_lo, j_hi)`` read input column ``j*stride - padding + q``
    inside ``[0, width)``; the others read zero padding."""
    j_lo = min(ow, max(0, (padding - q + stride - 1) // stride))
    j_hi = max(j_lo, min(ow, (width - 1 + padding - q) // stride + 1))
    return j_lo, j_hi


@njit(cache=True)
def im2col(x, kh, kw, stride, padding, oh, ow):
    """Unfold ``x`` [B, C, H, W] into ``cols`` [C*kh*kw, B*oh*ow] (zero padding).

    ``cols[(c, p, q), (b, i, j)] = x[b, c, i*stride - padding + p, j*stride - padding + q]``
    (0 outside the image). Slow twin: ``tests/nn/naive.py::conv2d_naive`` (via the forward).
    """
    n_batch, n_chan, height, width = x.shape
    cols = np.empty((n_chan, kh, kw, n_batch, oh, ow), x.dtype)
    for b in range(n_batch):
        for c in range(n_chan):
            for p in range(kh):
                for q in range(kw):
                    j_lo, j_hi = _valid_columns(q, stride, padding, width, ow)
                    off = q - padding
                    for i in range(oh):
                        row = cols[c, p, q, b, i]          # [ow]
                        y = i * stride - padding + p
                        if y < 0 or y >= height:
                            row[:] = 0
                            continue
                        row[:j_lo] = 0
                        row[j_hi:] = 0
                        xr = x[b, c, y]                    # [W]
                        for j in range(j_lo, j_hi):
                            row[j] = xr[j * stride + off]
    return cols.reshape(n_chan * kh * kw, n_batch * oh * ow)


@njit(cache=True)
def col2im(dcols, n_batch, n_chan, height, width, kh, kw, stride, padding, oh, ow):
    """Adjoint of ``im2col``: scatter-add ``dcols`` [C*kh*kw, B*oh*ow] into dx [B, C, H, W].

    Every ``dcols`` entry that ``im2col`` read from padding is dropped.
    """
    d = dcols.reshape(n_chan, kh, kw, n_batch, oh, ow)
    dx = np.zeros((n_batch, n_chan, height, width), dcols.dtype)
    for b in range(n_batch):
        for c in range(n_chan):
            for p in range(kh):
                for q in range(kw):
                    j_lo, j_hi = _valid_columns(q, stride, padding, width, ow)
                    off = q - padding
                    for i in range(oh):
                        y = i * stride - padding + p
                        if y < 0 or y >= height:
                            continue
                        xr = dx[b, c, y]                   # [W]
                        dr = d[c, p, q, b, i]              # [ow]
                        for j in range(j_lo, j_hi):
                            xr[j * stride + off] += dr[j]
    return dx


@njit(cache=True)
def maxpool2d_forward(x, size, stride, oh, ow):
    """Max over ``size x size`` windows at ``stride``: y [B, C, oh, ow] and the flat index
    ``y_in * W + x_in`` of each window's first maximum (int64, same shape)."""
    n_batch, n_chan, height, width = x.shape
    y = np.empty((n_batch, n_chan, oh, ow), x.dtype)
    arg = np.empty((n_batch, n_chan, oh, ow), np.int64)
    for b in range(n_batch):
        for c in range(n_chan):
            xc = x[b, c]                                   # [H, W]
            for i in range(oh):
                for j in range(ow):
                    best = xc[i * stride, j * stride]
                    best_at = i * stride * width + j * stride
                    for p in range(size):
                        for q in range(size):
                            v = xc[i * stride + p, j * stride + q]
                            if v > best:
                                best = v
                                best_at = (i * stride + p) * width + j * stride + q
                    y[b, c, i, j] = best
                    arg[b, c, i, j] = best_at
    return y, arg


@njit(cache=True)
def maxpool2d_backward(dy, arg, height, width):
    """Route each ``dy`` [B, C, oh, ow] entry to its window's maximum: dx [B, C, H, W]."""
    n_batch, n_chan, oh, ow = dy.shape
    dx = np.zeros((n_batch, n_chan, height * width), dy.dtype)
    for b in range(n_batch):
        for c in range(n_chan):
            for i in range(oh):
                for j in range(ow):
                    dx[b, c, arg[b, c, i, j]] += dy[b, c, i, j]
    return dx.reshape(n_batch, n_chan, height, width)
