"""Slow, literal references for the layer kernels (``srigl_ref.nn._kernels``)."""
from __future__ import annotations

import numpy as np


def conv2d(x, weight, bias, stride, padding):
    """``y[b, o, i, j] = bias[o] + sum_{c,p,q} W[o, c, p, q] * x_pad[b, c, i*s+p, j*s+q]``,
    one output position at a time. x [B, C, H, W], weight [O, C, k, k] -> y [B, O, oh, ow]."""
    n_batch, _, height, width = x.shape
    n_out, _, k, _ = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (height + 2 * padding - k) // stride + 1
    ow = (width + 2 * padding - k) // stride + 1
    y = np.empty((n_batch, n_out, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]  # [B,C,k,k]
            y[:, :, i, j] = np.einsum("bcpq,ocpq->bo", window, weight) + bias
    return y


def maxpool2d(x, size, stride):
    """Max over each ``size x size`` window at ``stride``, one output position at a time."""
    n_batch, n_chan, height, width = x.shape
    oh, ow = (height - size) // stride + 1, (width - size) // stride + 1
    y = np.empty((n_batch, n_chan, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, i * stride:i * stride + size,
                              j * stride:j * stride + size].max(axis=(2, 3))
    return y
