"""Layers with hand-written backward passes: linear, conv2d, relu, max-pool, global average
pool, flatten.

Every layer is a frozen dataclass holding its hyper-parameters and exposing one pair::

    y, cache = layer.forward(x, params)      # params: dict of the layer's arrays ({} if none)
    dx, grads = layer.backward(dy, cache)    # grads: dict with the keys of params

plus ``param_shapes()`` (what ``params`` must hold) and ``output_shape(in_shape)`` (the
per-example shape after the layer). Activations are batch-first: ``[B, features]`` or
``[B, C, H, W]``. Weights use PyTorch's layout: Linear ``[out, in]``, Conv2d
``[out, C_in, kh, kw]``. Gradients are dense (a gradient at every weight position, active or
not): masking is the optimizer's job (docs/algorithm.md §5). float32 for training; float64 is
accepted (for gradient checks); ``x``, ``params`` and ``dy`` must share one dtype.

Forward checks shapes and dtypes (not finiteness: that is checked once, on the model's
input); backward checks ``dy`` against the shape the forward produced. No input is mutated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, check_int
from . import _kernels


def _check_input(layer, x, in_shape: tuple[int, ...] | None, ndim: int) -> np.ndarray:
    """``x`` as a C-contiguous float array [B, *in_shape] (``in_shape`` None: any sizes)."""
    x = as_float_array("x", x, ndim=(ndim,), finite=False)
    if in_shape is not None and x.shape[1:] != in_shape:
        raise ValueError(f"x.shape == {x.shape}, must be (batch, {', '.join(map(str, in_shape))})"
                         f" for {layer}")
    return x


def _check_params(layer, params, dtype) -> dict[str, np.ndarray]:
    """The layer's parameter arrays, each of its declared shape and of ``x``'s dtype."""
    shapes = layer.param_shapes()
    if not isinstance(params, dict) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params has keys {got}, must have keys {sorted(shapes)} for {layer}")
    out = {}
    for key, shape in shapes.items():
        a = as_float_array(f"params[{key!r}]", params[key], shape=shape, finite=False)
        if a.dtype != dtype:
            raise TypeError(f"params[{key!r}].dtype == {a.dtype}, must equal x.dtype == {dtype}")
        out[key] = a
    return out


def _check_grad(dy, y_shape: tuple[int, ...], dtype) -> np.ndarray:
    """``dy`` must have the shape and dtype of the forward's output."""
    dy = as_float_array("dy", dy, shape=y_shape, finite=False)
    if dy.dtype != dtype:
        raise TypeError(f"dy.dtype == {dy.dtype}, must equal the forward's dtype {dtype}")
    return dy


@dataclass(frozen=True)
class Linear:
    """``y = x @ W.T + b`` with ``W`` [out, in], ``b`` [out]."""
    in_features: int
    out_features: int

    def __post_init__(self):
        check_int("in_features", self.in_features, low=1)
        check_int("out_features", self.out_features, low=1)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_features,)

    def forward(self, x, params):
        """Parameters
        ----------
        x : ndarray of shape (B, in), float32 or float64
        params : dict with ``weight`` (out, in) and ``bias`` (out,), dtype of x

        Returns
        -------
        y : ndarray of shape (B, out), dtype of x
        cache : tuple, for ``backward``
        """
        x = _check_input(self, x, (self.in_features,), 2)
        p = _check_params(self, params, x.dtype)
        y = x @ p["weight"].T                      # [B, out]
        y += p["bias"]
        return y, (x, p["weight"])

    def backward(self, dy, cache, *, need_dx: bool = True):
        """``dx = dY @ W``, ``dW = dY.T @ X``, ``db = sum_b dY``.

        Parameters
        ----------
        dy : ndarray of shape (B, out), dtype of the forward
        cache : the forward's cache
        need_dx : bool
            False skips the input gradient (a model's first layer: its input needs none).

        Returns
        -------
        dx : ndarray of shape (B, in), or None when ``need_dx`` is False
        grads : dict with ``weight`` (out, in) and ``bias`` (out,)
        """
        x, weight = cache
        dy = _check_grad(dy, (x.shape[0], self.out_features), x.dtype)
        dx = dy @ weight if need_dx else None
        return dx, {"weight": dy.T @ x, "bias": dy.sum(axis=0)}


# Stride-1 convolutions with at most this many ``in_channels * out_channels`` run the direct
# kernels (``_kernels.conv2d_direct*``), larger ones im2col + GEMM: a GEMM with 64 or more
# output rows and a few hundred inner terms uses BLAS well, below that the direct loops win
# (and need no unfolded matrix). Measured by ``bench/train_step.py --conv-rule`` (results in
# bench/README.md).
DIRECT_MAX_CHANNEL_PRODUCT = 1024


@dataclass(frozen=True)
class Conv2d:
    """2-D cross-correlation (PyTorch ``Conv2d``): square kernel, stride, zero padding.

    ``y[b, o, i, j] = bias[o] + sum_{c,p,q} W[o, c, p, q] * x_pad[b, c, i*s + p, j*s + q]``.
    Two exact implementations, chosen by shape (``direct``): direct loops for stride 1 and
    few channels (``srigl_ref.nn._kernels.conv2d_direct``, ``conv2d_direct_input_grad``,
    ``conv2d_direct_weight_grad``), else one GEMM over im2col columns with a ``col2im``
    scatter in the backward. They agree up to float rounding (tested).
    """
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self):
        check_int("in_channels", self.in_channels, low=1)
        check_int("out_channels", self.out_channels, low=1)
        check_int("kernel_size", self.kernel_size, low=1)
        check_int("stride", self.stride, low=1)
        check_int("padding", self.padding, low=0)

    @property
    def direct(self) -> bool:
        """Whether forward and backward use the direct kernels (see
        ``DIRECT_MAX_CHANNEL_PRODUCT``) rather than im2col + GEMM."""
        return (self.stride == 1
                and self.in_channels * self.out_channels <= DIRECT_MAX_CHANNEL_PRODUCT)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        k = self.kernel_size
        return {"weight": (self.out_channels, self.in_channels, k, k),
                "bias": (self.out_channels,)}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = in_shape
        oh, ow = (_conv_size(n, self.kernel_size, self.stride, self.padding) for n in (h, w))
        if c != self.in_channels or oh < 1 or ow < 1:
            raise ValueError(f"input shape {tuple(in_shape)} does not fit {self}: needs "
                             f"{self.in_channels} channels and a padded size >= kernel_size")
        return (self.out_channels, oh, ow)

    def forward(self, x, params, *, direct: bool | None = None):
        """Parameters
        ----------
        x : ndarray of shape (B, C_in, H, W), float32 or float64
        params : dict with ``weight`` (C_out, C_in, k, k) and ``bias`` (C_out,), dtype of x
        direct : bool or None
            Force the direct kernels (True, stride 1 only) or im2col (False); None chooses
            by shape (``self.direct``). The backward follows the forward's choice.

        Returns
        -------
        y : ndarray of shape (B, C_out, oh, ow), ``oh = (H + 2*padding - k) // stride + 1``
        cache : tuple, for ``backward``
        """
        x = _check_input(self, x, None, 4)
        _, oh, ow = self.output_shape(x.shape[1:])
        p = _check_params(self, params, x.dtype)
        direct = self.direct if direct is None else direct
        if direct and self.stride != 1:
            raise ValueError(f"direct == True needs stride == 1, got stride == {self.stride}")
        n_batch = x.shape[0]
        if direct:
            y = np.empty((n_batch, self.out_channels, oh, ow), x.dtype)
            _kernels.conv2d_direct(x, p["weight"], p["bias"], self.padding, y)
            return y, (x, p["weight"], None)
        cols = _im2col(x, self.kernel_size, self.stride, self.padding)     # [C*k*k, B*oh*ow]
        w_mat = p["weight"].reshape(self.out_channels, -1)                 # [O, C*k*k]
        y = w_mat @ cols                                                   # [O, B*oh*ow]
        y += p["bias"][:, None]
        y = y.reshape(self.out_channels, n_batch, oh, ow).transpose(1, 0, 2, 3)
        return np.ascontiguousarray(y), (x, w_mat, cols)

    def backward(self, dy, cache, *, need_dx: bool = True):
        """``dW = dY @ cols.T``, ``db = sum dY``, ``dx = col2im(W.T @ dY)`` (im2col), or
        the same sums by the direct kernels.

        Parameters
        ----------
        dy : ndarray of shape (B, C_out, oh, ow), dtype of the forward
        cache : the forward's cache
        need_dx : bool
            False skips the input gradient (a model's first layer: its input needs none).

        Returns
        -------
        dx : ndarray of shape (B, C_in, H, W), or None when ``need_dx`` is False
        grads : dict with ``weight`` (C_out, C_in, k, k) and ``bias`` (C_out,)
        """
        x, weight, cols = cache                   # weight [O, C, k, k] or w_mat [O, C*k*k]
        n_batch, n_chan = x.shape[:2]
        y_shape = (n_batch, *self.output_shape(x.shape[1:]))
        dy = _check_grad(dy, y_shape, x.dtype)
        w_shape = self.param_shapes()["weight"]
        dx = None
        if cols is None:
            if need_dx:
                dx = np.empty(x.shape, x.dtype)                             # [B, C, H, W]
                _kernels.conv2d_direct_input_grad(dy, weight, self.padding, dx)
            d_weight = np.empty(w_shape, x.dtype)                           # [O, C, k, k]
            _kernels.conv2d_direct_weight_grad(x, dy, self.padding, d_weight)
            return dx, {"weight": d_weight, "bias": dy.sum(axis=(0, 2, 3))}
        k, (_, _, oh, ow) = self.kernel_size, y_shape
        dy_mat = dy.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)  # [O, B*oh*ow]
        d_weight = (dy_mat @ cols.T).reshape(w_shape)
        if need_dx:
            dx = np.zeros(x.shape, x.dtype)                                 # [B, C, H, W]
            dcols = weight.T @ dy_mat                                       # [C*k*k, B*oh*ow]
            _kernels.col2im(dcols.reshape(n_chan, k, k, n_batch, oh, ow), self.stride,
                            self.padding, dx)
        return dx, {"weight": d_weight, "bias": dy_mat.sum(axis=1)}


def _conv_size(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def _im2col(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """Unfold x [B, C, H, W] into ``cols`` [C*k*k, B*oh*ow] (``_kernels.im2col``)."""
    n_batch, n_chan, height, width = x.shape
    oh, ow = (_conv_size(n, k, stride, padding) for n in (height, width))
    cols = np.empty((n_chan, k, k, n_batch, oh, ow), x.dtype)
    _kernels.im2col(x, stride, padding, cols)
    return cols.reshape(n_chan * k * k, n_batch * oh * ow)


@dataclass(frozen=True)
class ReLU:
    """``y = max(x, 0)``; the gradient at 0 is 0 (as PyTorch)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(in_shape)

    def forward(self, x, params):
        """x : ndarray (B, ...), float -> y of the same shape; cache: y itself (``y > 0``
        exactly where ``x > 0``: no separate mask array)."""
        x = as_float_array("x", x, finite=False)
        _check_params(self, params, x.dtype)
        y = np.maximum(x, 0)
        return y, y

    def backward(self, dy, cache):
        """``dx = dy * (x > 0)``, read as ``y > 0`` in one pass (``_kernels.relu_backward``);
        grads is ``{}``."""
        y = cache
        dy = _check_grad(dy, y.shape, y.dtype)
        dx = np.empty_like(y)
        _kernels.relu_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
        return dx, {}


@dataclass(frozen=True)
class MaxPool2d:
    """Max over ``kernel_size`` x ``kernel_size`` windows (stride defaults to the window),
    no padding, output size ``(H - k) // stride + 1``. The gradient goes to each window's
    first maximum in row-major order."""
    kernel_size: int
    stride: int | None = None

    def __post_init__(self):
        check_int("kernel_size", self.kernel_size, low=1)
        if self.stride is not None:
            check_int("stride", self.stride, low=1)

    @property
    def step(self) -> int:
        return self.kernel_size if self.stride is None else self.stride

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = in_shape
        oh, ow = (_conv_size(n, self.kernel_size, self.step, 0) for n in (h, w))
        if oh < 1 or ow < 1:
            raise ValueError(f"input shape {tuple(in_shape)} is smaller than the window of "
                             f"{self}")
        return (c, oh, ow)

    def forward(self, x, params):
        """x : ndarray (B, C, H, W), float -> y (B, C, oh, ow); cache for ``backward``."""
        x = _check_input(self, x, None, 4)
        _check_params(self, params, x.dtype)
        y_shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        y, arg = np.empty(y_shape, x.dtype), np.empty(y_shape, np.int32)   # arg < H*W
        _kernels.maxpool2d_forward(x, self.kernel_size, self.step, y, arg)
        return y, (x.shape, arg, x.dtype)

    def backward(self, dy, cache):
        """dy (B, C, oh, ow) -> dx (B, C, H, W); grads is ``{}``."""
        x_shape, arg, dtype = cache
        dy = _check_grad(dy, arg.shape, dtype)
        dx = np.zeros((*x_shape[:2], x_shape[2] * x_shape[3]), dtype)   # [B, C, H*W]
        _kernels.maxpool2d_backward(dy, arg, dx)
        return dx.reshape(x_shape), {}


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over the spatial dimensions: (B, C, H, W) -> (B, C)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (in_shape[0],)

    def forward(self, x, params):
        """x : ndarray (B, C, H, W), float -> y (B, C)."""
        x = _check_input(self, x, None, 4)
        _check_params(self, params, x.dtype)
        return x.mean(axis=(2, 3)), (x.shape, x.dtype)

    def backward(self, dy, cache):
        """``dx[b, c, h, w] = dy[b, c] / (H*W)``; grads is ``{}``."""
        x_shape, dtype = cache
        dy = _check_grad(dy, x_shape[:2], dtype)
        dx = np.empty(x_shape, dtype)
        dx[...] = (dy / (x_shape[2] * x_shape[3]))[:, :, None, None]
        return dx, {}


@dataclass(frozen=True)
class Flatten:
    """(B, d1, d2, ...) -> (B, d1*d2*...) in C order (a view of the input)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(in_shape),)

    def forward(self, x, params):
        """x : ndarray (B, ...), float -> y (B, prod(...))."""
        x = as_float_array("x", x, finite=False)
        _check_params(self, params, x.dtype)
        return x.reshape(x.shape[0], -1), (x.shape, x.dtype)

    def backward(self, dy, cache):
        """dy (B, prod(...)) -> dx (B, ...); grads is ``{}``."""
        x_shape, dtype = cache
        dy = _check_grad(dy, (x_shape[0], math.prod(x_shape[1:])), dtype)
        return dy.reshape(x_shape), {}


Layer = Linear | Conv2d | ReLU | MaxPool2d | GlobalAvgPool | Flatten
