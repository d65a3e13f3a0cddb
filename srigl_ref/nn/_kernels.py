"""Numba kernels for the layers' and the optimizer's hot loops: im2col / col2im, direct
stride-1 convolution (forward, input gradient, weight gradient), ReLU's backward, 2-D max
pooling, and the fused SGD step.

Self-contained (imports only numpy and numba, calls only helpers in this file). Callers in
``layers.py`` and ``optim.py`` validate first; every kernel trusts its inputs: C-contiguous
float32/float64 arrays of consistent shapes, ``stride >= 1``, ``padding >= 0``, output sizes
>= 1.

Outputs are allocated by the caller with NumPy and filled in place: NumPy asks Linux for
transparent huge pages on large arrays and Numba's allocator does not, which made a kernel
that allocated its own 100 MB column matrix spend about half its time in page faults. The
direct convolution kernels allocate only per-image scratch rows (a few KB).

Column layout: ``cols[c, p, q, b, i, j] = x_pad[b, c, i*stride + p, j*stride + q]``, i.e.
``cols.reshape(C*k*k, B*oh*ow)`` has rows in the weight's C order, so a convolution is one
GEMM ``W.reshape(O, -1) @ cols``. Both loops walk ``cols`` in memory order with plain
element indexing (no per-row slices: creating array views in the inner loops measured
2-3x slower). Measured against strided-NumPy twins in
``bench/train_step.py --conv-rule``.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def im2col(x, stride, padding, cols):
    """Unfold x [B, C, H, W] into ``cols`` [C, k, k, B, oh, ow] (zero padding), in place.

    ``cols[c, p, q, b, i, j] = x[b, c, i*stride - padding + p, j*stride - padding + q]``,
    0 outside the image. Slow twin: ``tests/nn/naive_layers.py::conv2d`` (via the forward).
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
    [B, C, oh, ow], and into ``arg`` (int32, same shape) the flat index ``row * W + col`` of
    each window's first maximum in row-major order. The running maximum is updated by
    selects, not branches (random data mispredicts about every other comparison). Slow twin:
    ``tests/nn/naive_layers.py::maxpool2d``."""
    n_batch, n_chan, oh, ow = y.shape
    width = x.shape[3]
    for b in range(n_batch):
        for c in range(n_chan):
            for i in range(oh):
                r0 = i * stride
                for j in range(ow):
                    c0 = j * stride
                    best, best_at = x[b, c, r0, c0], r0 * width + c0
                    for p in range(size):
                        for q in range(size):
                            v = x[b, c, r0 + p, c0 + q]
                            take = v > best
                            best = v if take else best
                            best_at = (r0 + p) * width + c0 + q if take else best_at
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



@njit(cache=True)
def relu_backward(dy, y, dx):
    """``dx = dy * (y > 0)`` over flat arrays, in place (the product with the 0/1 factor as
    NumPy's ``dy * (x > 0)``: a masked negative gradient gives -0.0, a NaN stays NaN)."""
    for i in range(dy.shape[0]):
        dx[i] = dy[i] * (y[i] > 0)

# Direct stride-1 convolution. One image at a time, the padded image is flattened row by row
# (``xp[c, r * Wp + s]``, ``Wp = W + 2 * padding``) and the output is computed on a "wide"
# grid of ``Wp`` columns: ``acc[o, i * Wp + j] = sum_{c,p,q} W[o, c, p, q] *
# xp[c, (i + p) * Wp + j + q]``. Each tap is then a shift of one contiguous vector, so the
# innermost loop runs over ``t = i * Wp + j`` (long, unit stride, vectorised by LLVM); the
# columns ``j >= ow`` are computed and dropped. Up to five taps of one kernel row are summed
# inside that loop, for two output channels at once (``_add_row_taps``): the accumulator
# rows are loaded and stored once per kernel row of size 3 or 5 (the models' sizes), not
# once per tap, and each input load serves both channels. An odd channel count pairs the
# last channel with a scratch row of zero weights. Scratch rows are a few KB per image (no
# unfolded matrix). Measurements: ``bench/train_step.py --conv-rule``, bench/README.md.


@njit(cache=True)
def _pad_image(x, b, padding, xp):
    """Copy image ``x[b]`` [C, H, W] into the interior of ``xp`` [C, Hp*Wp] (borders zero)."""
    n_chan, height, width = x.shape[1], x.shape[2], x.shape[3]
    wp = width + 2 * padding
    for c in range(n_chan):
        for i in range(height):
            base = (i + padding) * wp + padding
            for j in range(width):
                xp[c, base + j] = x[b, c, i, j]


@njit(cache=True, inline="always", fastmath={"contract"})
def _add_row_taps(acc0, acc1, xs, wr0, wr1, n_t):
    """``acc0[t] += sum_q wr0[q] * xs[t + q]`` and the same for ``acc1``/``wr1``, for
    ``t < n_t``: one kernel row's taps for two output channels, five or three taps per pass
    (``acc*`` [>= n_t], ``xs`` [>= n_t + len(wr0) - 1]).

    Inlined (``inline="always"``) so LLVM sees the loops inside the caller's loop nest;
    ``contract`` allows fused multiply-adds (rounding differs from mul-then-add only in
    the last bit)."""
    k = wr0.shape[0]
    q = 0
    while q + 5 <= k:
        u0, u1, u2, u3, u4 = wr0[q], wr0[q + 1], wr0[q + 2], wr0[q + 3], wr0[q + 4]
        v0, v1, v2, v3, v4 = wr1[q], wr1[q + 1], wr1[q + 2], wr1[q + 3], wr1[q + 4]
        xq = xs[q:]                                   # constant offsets below: one stream
        for t in range(n_t):
            x0, x1, x2, x3, x4 = xq[t], xq[t + 1], xq[t + 2], xq[t + 3], xq[t + 4]
            acc0[t] += u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3 + u4 * x4
            acc1[t] += v0 * x0 + v1 * x1 + v2 * x2 + v3 * x3 + v4 * x4
        q += 5
    while q + 3 <= k:
        u0, u1, u2 = wr0[q], wr0[q + 1], wr0[q + 2]
        v0, v1, v2 = wr1[q], wr1[q + 1], wr1[q + 2]
        xq = xs[q:]
        for t in range(n_t):
            x0, x1, x2 = xq[t], xq[t + 1], xq[t + 2]
            acc0[t] += u0 * x0 + u1 * x1 + u2 * x2
            acc1[t] += v0 * x0 + v1 * x1 + v2 * x2
        q += 3
    while q < k:
        u0, v0 = wr0[q], wr1[q]
        xq = xs[q:]
        for t in range(n_t):
            acc0[t] += u0 * xq[t]
            acc1[t] += v0 * xq[t]
        q += 1


@njit(cache=True)
def _paired_rows(weight):
    """``weight`` [O, C, k, k] with a zero channel appended when O is odd: [2*ceil(O/2), C,
    k, k] (a copy), so channels can always be taken two at a time."""
    n_out = weight.shape[0]
    paired = np.zeros((n_out + n_out % 2,) + weight.shape[1:], weight.dtype)
    paired[:n_out] = weight
    return paired


@njit(cache=True, fastmath={"contract"})
def conv2d_direct(x, weight, bias, padding, y):
    """Stride-1 convolution ``y[b, o, i, j] = bias[o] + sum_{c,p,q} W[o, c, p, q] *
    x_pad[b, c, i + p, j + q]`` of x [B, C, H, W] with weight [O, C, k, k] into ``y``
    [B, O, oh, ow] (``oh = H + 2*padding - k + 1``), in place, without an unfolded matrix.
    Slow twin: ``tests/nn/naive_layers.py::conv2d``.
    """
    n_batch, n_chan, height, width = x.shape
    n_out, _, k, _ = weight.shape
    oh, ow = y.shape[2], y.shape[3]
    hp, wp = height + 2 * padding, width + 2 * padding
    n_t = (oh - 1) * wp + ow                          # wide positions up to the last output
    w2 = _paired_rows(weight)                         # [O2, C, k, k], O2 even
    xp = np.zeros((n_chan, hp * wp), x.dtype)         # [C, Hp*Wp] padded image
    acc = np.zeros((w2.shape[0], oh * wp), x.dtype)   # [O2, oh*Wp] wide output
    for b in range(n_batch):
        _pad_image(x, b, padding, xp)
        for o in range(n_out):
            for t in range(n_t):
                acc[o, t] = bias[o]
        for c in range(n_chan):
            for p in range(k):
                xr = xp[c, p * wp:]                   # the image rows under kernel row p
                for o in range(0, w2.shape[0], 2):
                    _add_row_taps(acc[o], acc[o + 1], xr, w2[o, c, p], w2[o + 1, c, p], n_t)
        for o in range(n_out):
            for i in range(oh):
                for j in range(ow):
                    y[b, o, i, j] = acc[o, i * wp + j]


@njit(cache=True, fastmath={"contract"})
def conv2d_direct_input_grad(dy, weight, padding, dx):
    """Input gradient of a stride-1 convolution, ``dx[b, c, h, w] = sum_{o,p,q}
    W[o, c, p, q] * dy[b, o, h + padding - p, w + padding - q]`` (terms inside ``dy``
    only), dy [B, O, oh, ow], weight [O, C, k, k], into ``dx`` [B, C, H, W], in place.

    The forward's scatter ``dx_pad[c, p * Wp + t + q] += W[o, c, p, q] * dy_wide[o, t]``
    read as a gather over ``s = t + q``: the same tap loops as ``conv2d_direct`` (input
    channels in pairs) with each kernel row reversed and ``dy`` (wide, 0 in the dropped
    columns) shifted by ``k - 1`` zeros. Checked against the im2col backward
    (``tests/nn/test_layers.py``).
    """
    n_batch, n_out, oh, ow = dy.shape
    _, n_chan, k, _ = weight.shape
    height, width = dx.shape[2], dx.shape[3]
    hp, wp = height + 2 * padding, width + 2 * padding
    n_s = (oh - 1) * wp + ow + k - 1                  # padded positions a tap reaches
    w_rev = np.empty((n_chan, n_out, k, k), weight.dtype)   # [C, O, k, k], rows reversed
    for o in range(n_out):
        for c in range(n_chan):
            for p in range(k):
                for q in range(k):
                    w_rev[c, o, p, k - 1 - q] = weight[o, c, p, q]
    w2 = _paired_rows(w_rev)                          # [C2, O, k, k], C2 even
    dyw = np.zeros((n_out, oh * wp + 2 * (k - 1)), dy.dtype)  # [O, ...] k-1 zeros, wide dy
    dxp = np.empty((w2.shape[0], hp * wp), dy.dtype)  # [C2, Hp*Wp] padded input gradient
    for b in range(n_batch):
        for o in range(n_out):
            for i in range(oh):
                for j in range(ow):
                    dyw[o, k - 1 + i * wp + j] = dy[b, o, i, j]
        dxp[:] = 0
        for p in range(k):                            # kernel row p adds at rows p, p+1, ..
            for o in range(n_out):
                for c in range(0, w2.shape[0], 2):
                    _add_row_taps(dxp[c, p * wp:], dxp[c + 1, p * wp:], dyw[o],
                                  w2[c, o, p], w2[c + 1, o, p], n_s)
        for c in range(n_chan):
            for i in range(height):
                base = (i + padding) * wp + padding
                for j in range(width):
                    dx[b, c, i, j] = dxp[c, base + j]


@njit(cache=True, inline="always", fastmath={"reassoc", "nsz", "contract"})
def _add_row_tap_dots(dwr0, dwr1, d0, d1, xs, n_t):
    """``dwr0[q] += sum_t d0[t] * xs[t + q]`` and the same for ``dwr1``/``d1``, for
    ``t < n_t``: one kernel row's weight gradient for two output channels, five or three
    taps per pass over ``d*`` and ``xs``."""
    k = dwr0.shape[0]
    q = 0
    while q + 5 <= k:
        xq = xs[q:]
        s0, s1, s2, s3, s4 = d0[0] * xq[0], d0[0] * xq[1], d0[0] * xq[2], d0[0] * xq[3], \
            d0[0] * xq[4]
        r0, r1, r2, r3, r4 = d1[0] * xq[0], d1[0] * xq[1], d1[0] * xq[2], d1[0] * xq[3], \
            d1[0] * xq[4]
        for t in range(1, n_t):
            a, b = d0[t], d1[t]
            x0, x1, x2, x3, x4 = xq[t], xq[t + 1], xq[t + 2], xq[t + 3], xq[t + 4]
            s0 += a * x0
            s1 += a * x1
            s2 += a * x2
            s3 += a * x3
            s4 += a * x4
            r0 += b * x0
            r1 += b * x1
            r2 += b * x2
            r3 += b * x3
            r4 += b * x4
        dwr0[q] += s0
        dwr0[q + 1] += s1
        dwr0[q + 2] += s2
        dwr0[q + 3] += s3
        dwr0[q + 4] += s4
        dwr1[q] += r0
        dwr1[q + 1] += r1
        dwr1[q + 2] += r2
        dwr1[q + 3] += r3
        dwr1[q + 4] += r4
        q += 5
    while q + 3 <= k:
        xq = xs[q:]
        s0, s1, s2 = d0[0] * xq[0], d0[0] * xq[1], d0[0] * xq[2]
        r0, r1, r2 = d1[0] * xq[0], d1[0] * xq[1], d1[0] * xq[2]
        for t in range(1, n_t):
            a, b = d0[t], d1[t]
            x0, x1, x2 = xq[t], xq[t + 1], xq[t + 2]
            s0 += a * x0
            s1 += a * x1
            s2 += a * x2
            r0 += b * x0
            r1 += b * x1
            r2 += b * x2
        dwr0[q] += s0
        dwr0[q + 1] += s1
        dwr0[q + 2] += s2
        dwr1[q] += r0
        dwr1[q + 1] += r1
        dwr1[q + 2] += r2
        q += 3
    while q < k:
        xq = xs[q:]
        s0, r0 = d0[0] * xq[0], d1[0] * xq[0]
        for t in range(1, n_t):
            s0 += d0[t] * xq[t]
            r0 += d1[t] * xq[t]
        dwr0[q] += s0
        dwr1[q] += r0
        q += 1


@njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def conv2d_direct_weight_grad(x, dy, padding, dweight):
    """``dW[o, c, p, q] = sum_{b,i,j} dy[b, o, i, j] * x_pad[b, c, i + p, j + q]`` of a
    stride-1 convolution, x [B, C, H, W], dy [B, O, oh, ow], into ``dweight`` [O, C, k, k]
    (overwritten).

    Per image and tap a dot product over the wide grid, with the dropped columns of ``dy``
    set to 0, output channels in pairs (an odd last one paired with a zero row of ``dy``).
    ``reassoc`` lets LLVM vectorise these sums (reductions); the result differs from a
    sequential sum only by rounding. Checked against the im2col GEMM
    (``tests/nn/test_layers.py``).
    """
    n_batch, n_chan, height, width = x.shape
    n_out, _, k, _ = dweight.shape
    oh, ow = dy.shape[2], dy.shape[3]
    hp, wp = height + 2 * padding, width + 2 * padding
    n_t = (oh - 1) * wp + ow
    n_out2 = n_out + n_out % 2
    xp = np.zeros((n_chan, hp * wp), x.dtype)         # [C, Hp*Wp] padded image
    dyw = np.zeros((n_out2, oh * wp), x.dtype)        # [O2, oh*Wp] wide dy, 0 off the image
    dw2 = np.zeros((n_out2, n_chan, k, k), x.dtype)   # [O2, C, k, k] accumulated gradient
    for b in range(n_batch):
        _pad_image(x, b, padding, xp)
        for o in range(n_out):
            for i in range(oh):
                for j in range(ow):
                    dyw[o, i * wp + j] = dy[b, o, i, j]
        for c in range(n_chan):
            for p in range(k):
                xs = xp[c, p * wp:]
                for o in range(0, n_out2, 2):
                    _add_row_tap_dots(dw2[o, c, p], dw2[o + 1, c, p], dyw[o], dyw[o + 1], xs,
                                      n_t)
    dweight[:] = dw2[:n_out]


# SGD: the optimizer's whole update of one parameter in one pass over its arrays (no
# temporaries). Every operation is the one NumPy performs in the readable sequence of
# ``srigl_ref.nn.optim`` (float32 stays float32: the caller passes the hyper-parameters in
# the arrays' dtype, as NumPy converts a Python float for a float32 array; no fused
# multiply-add), so the results are bit-identical to it (tested).


@njit(cache=True, inline="always")
def _sgd_element(w, g, buf, lr, momentum, nesterov, weight_decay):
    """One element of the step: returns the new ``(w, buf)`` for gradient ``g``."""
    if weight_decay != 0:
        g = g + weight_decay * w
    if momentum != 0:
        buf = buf * momentum + g
        g = g + momentum * buf if nesterov else buf
    return w - lr * g, buf


@njit(cache=True)
def sgd_step(w, grad, buf, lr, momentum, nesterov, weight_decay):
    """SGD with momentum, Nesterov and weight decay on a dense parameter, in place: ``w``,
    ``buf`` updated, ``grad`` read (all flat, same length and dtype; scalars of that dtype)."""
    for i in range(w.shape[0]):
        w[i], buf[i] = _sgd_element(w[i], grad[i], buf[i], lr, momentum, nesterov,
                                    weight_decay)


@njit(cache=True)
def sgd_step_masked(w, grad, mask, buf, lr, momentum, nesterov, weight_decay):
    """``sgd_step`` of a sparse weight: the gradient is masked before the step, ``w`` and
    ``buf`` after it (``mask`` flat bool), so inactive entries stay exactly 0."""
    for i in range(w.shape[0]):
        m = mask[i]
        w_new, buf_new = _sgd_element(w[i], grad[i] * m, buf[i], lr, momentum, nesterov,
                                      weight_decay)
        w[i], buf[i] = w_new * m, buf_new * m
