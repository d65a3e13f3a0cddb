"""Slow, literal references for srigl_ref.condensed (SPEC section 9), in float64 loops.

Twins: ``condense`` of ``format.condense``; ``forward`` of the ``_kernels`` forward kernels
(``matvec_lanes*``, ``matmat_lanes*``, ``mlp_matvec_lanes``); ``backward`` of
``backward_dx`` / ``backward_dvalues``.
"""
import numpy as np


def condense(weight, mask, bias):
    """``(values, indices, active_rows, bias)`` by walking the mask row by row."""
    out = weight.shape[0]
    w2, m2 = weight.reshape(out, -1), mask.reshape(out, -1)
    rows, vals, cols = [], [], []
    for i in range(out):
        c = [j for j in range(m2.shape[1]) if m2[i, j]]
        if c:
            rows.append(i)
            cols.append(c)
            vals.append([w2[i, j] for j in c])
    k = len(cols[0]) if cols else 0
    return (np.array(vals, dtype=np.float32).reshape(len(rows), k),
            np.array(cols, dtype=np.int32).reshape(len(rows), k),
            np.array(rows, dtype=np.int64),
            np.array([bias[i] for i in rows], dtype=np.float32))


def forward(x, values, indices, bias):
    """``y[b, r] = sum_j values[r, j] * x[b, indices[r, j]] + bias[r]`` in float64."""
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n, k = values.shape
    y = np.zeros((x2.shape[0], n))
    for b in range(x2.shape[0]):
        for r in range(n):
            s = float(bias[r])
            for j in range(k):
                s += float(values[r, j]) * x2[b, indices[r, j]]
            y[b, r] = s
    return y if np.ndim(x) == 2 else y[0]


def backward(dy, x, values, indices):
    """``(dx, dvalues)`` of ``forward`` by the chain rule, one nonzero at a time, float64."""
    x2 = np.atleast_2d(np.asarray(x, dtype=np.float64))
    dy2 = np.atleast_2d(np.asarray(dy, dtype=np.float64))
    dx = np.zeros_like(x2)
    dvalues = np.zeros(values.shape)
    for b in range(x2.shape[0]):
        for r in range(values.shape[0]):
            for j in range(values.shape[1]):
                dx[b, indices[r, j]] += values[r, j] * dy2[b, r]
                dvalues[r, j] += dy2[b, r] * x2[b, indices[r, j]]
    return (dx if np.ndim(x) == 2 else dx[0]), dvalues
