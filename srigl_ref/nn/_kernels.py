"""Numba kernels for the layers' hot loops: im2col / col2im (conv) and 2-D max pooling.

Self-contained (imports only numpy and numba, calls only helpers in this file). Callers in
``layers.py`` validate first; every kernel trusts its inputs: C-contiguous float32/float64
arrays of consistent shapes, ``stride >= 1``, ``padding >= 0``, output sizes >= 1.

Outputs are allocated by the caller with NumPy and filled in place: NumPy asks Linux for
transparent huge pages on large arrays and Numba's allocator does not, which made a kernel
that allocated its own 100 MB column matrix spend about half its time in page faults.

Column layout: ``cols[c, p, q, b, i, j] = x_pad[b, c, i*stride + p, j*stride + q]``, i.e.
``cols.reshape(C*k*k, B*oh*ow)`` has rows in the weight's C order, so a convolution is one
GEMM ``W.reshape(O, -1) @ cols``. Both loops walk ``cols`` in memory order with plain
element indexing (no per-row slices: creating array views in the inner loops made an
earlier version 2-3x slower). Measured against strided-NumPy twins in
``bench/train_step.py``.
"""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def im2col(x, stride, padding, cols):
    """Unfold x [B, C, H, W] into ``cols`` [C, k, k, B, oh, ow] (zero padding), in place.

    ``cols[c, p, q, b, i, j] = x[b, c, i*stride - padding + p, j*stride - padding + q]``,
    0 outside the image. Slow twin: ``tests/nn/naive.py::conv2d_naive`` (via the forward).
    """
    n_chan, k, _, n_batch, oh, ow = cols.shape
    height, width = x.shape[2], x.shape[3]
    for c in range(n_chan):
        for p in range(k):
            for q in range(k):
                for b in range(n_batch):
                    for i in range(oh):
                        y = i * stride - padding + p
                        for j in range(ow):
                            col = j * stride - padding + q
                            if 0 <= y < height and 0 <= col < width:
                                cols[c, p, q, b, i, j] = x[b, c, y, col]
                            else:
                                cols[c, p, q, b, i, j] = 0


@njit(cache=True)
def col2im(dcols, stride, padding, dx):
    """Scatter-add ``dcols`` [C, k, k, B, oh, ow] into ``dx`` [B, C, H, W] (zeros on entry),
    in place: the adjoint of ``im2col`` (entries it read from padding are dropped). Checked
    by the adjoint identity and gradient checks (``tests/nn/test_layers.py``)."""
    n_chan, k, _, n_batch, oh, ow = dcols.shape
    height, width = dx.shape[2], dx.shape[3]
    for c in range(n_chan):
        for p in range(k):
            for q in range(k):
                for b in range(n_batch):
                    for i in range(oh):
                        y = i * stride - padding + p
                        if y < 0 or y >= height:
                            continue
                        for j in range(ow):
                            col = j * stride - padding + q
                            if 0 <= col < width:
                                dx[b, c, y, col] += dcols[c, p, q, b, i, j]


@njit(cache=True)
def maxpool2d_forward(x, size, stride, y, arg):
    """Max over ``size x size`` windows at ``stride`` of x [B, C, H, W] into ``y``
    [B, C, oh, ow], and into ``arg`` (int64, same shape) the flat index ``row * W + col`` of
    each window's first maximum in row-major order. Slow twin:
    ``tests/nn/naive.py::maxpool2d_naive``."""
    n_batch, n_chan, oh, ow = y.shape
    width = x.shape[3]
    for b in range(n_batch):
        for c in range(n_chan):
            xc = x[b, c]                                       # [H, W]
            for i in range(oh):
                for j in range(ow):
                    r0, c0 = i * stride, j * stride
                    best, best_at = xc[r0, c0], r0 * width + c0
                    for p in range(size):
                        for q in range(size):
                            v = xc[r0 + p, c0 + q]
                            if v > best:
                                best, best_at = v, (r0 + p) * width + c0 + q
                    y[b, c, i, j] = best
                    arg[b, c, i, j] = best_at


@njit(cache=True)
def maxpool2d_backward(dy, arg, dx):
    """Add each ``dy`` [B, C, oh, ow] entry to its window's maximum in ``dx`` [B, C, H*W]
    (zeros on entry), in place."""
    n_batch, n_chan, oh, ow = dy.shape
    for b in range(n_batch):
        for c in range(n_chan):
            for i in range(oh):
                for j in range(ow):
                    dx[b, c, arg[b, c, i, j]] += dy[b, c, i, j]
