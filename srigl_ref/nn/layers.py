"""Layers with hand-written backward passes: linear, conv2d (with and without bias), relu,
max-pool, global average pool, flatten, batch normalisation and the residual block.

Every layer is a frozen dataclass holding its hyper-parameters and exposing one pair::

    y, cache = layer.forward(x, params)      # params: dict of the layer's arrays ({} if none)
    dx, grads = layer.backward(dy, cache)    # grads: dict with the keys of params

plus ``param_shapes()`` (what ``params`` must hold) and ``output_shape(in_shape)`` (the
per-example shape after the layer). Layers with running statistics (BatchNorm and the
residual block holding them) also have ``buffer_shapes()`` and take the buffers and the mode
explicitly, returning the updated buffers instead of mutating anything::

    y, cache, new_buffers = layer.forward(x, params, buffers, train=True) Activations are batch-first: ``[B, features]`` or
``[B, C, H, W]``. Weights use PyTorch's layout: Linear ``[out, in]``, Conv2d
``[out, C_in, kh, kw]``. Gradients are dense (a gradient at every weight position, active or
not): masking is the optimizer's job (docs/algorithm.md §5). float32 for training; float64 is
accepted (for gradient checks); ``x``, ``params`` and ``dy`` must share one dtype.

Forward checks shapes and dtypes (not finiteness: that is checked once, on the model's
input); backward checks ``dy`` against the shape the forward produced. No input is mutated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._validate import as_float_array, check_int, check_real
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
    return _check_arrays(layer, "params", params, layer.param_shapes(), dtype)


def _check_arrays(layer, what: str, arrays, shapes: dict, dtype) -> dict[str, np.ndarray]:
    """``arrays`` (named ``what`` in errors) has exactly the keys of ``shapes``, each array
    of its shape and of ``dtype``."""
    if not isinstance(arrays, dict) or set(arrays) != set(shapes):
        got = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise ValueError(f"{what} has keys {got}, must have keys {sorted(shapes)} for {layer}")
    out = {}
    for key, shape in shapes.items():
        a = as_float_array(f"{what}[{key!r}]", arrays[key], shape=shape, finite=False)
        if a.dtype != dtype:
            raise TypeError(f"{what}[{key!r}].dtype == {a.dtype}, must equal x.dtype == {dtype}")
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
            return dx, {"weight": self._direct_weight_grad(x, dy),
                        "bias": dy.sum(axis=(0, 2, 3))}
        k, (_, _, oh, ow) = self.kernel_size, y_shape
        dy_mat = dy.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)  # [O, B*oh*ow]
        d_weight = (dy_mat @ cols.T).reshape(w_shape)
        if need_dx:
            dx = np.zeros(x.shape, x.dtype)                                 # [B, C, H, W]
            dcols = weight.T @ dy_mat                                       # [C*k*k, B*oh*ow]
            _kernels.col2im(dcols.reshape(n_chan, k, k, n_batch, oh, ow), self.stride,
                            self.padding, dx)
        return dx, {"weight": d_weight, "bias": dy_mat.sum(axis=1)}

    def weight_grad(self, x, dy) -> np.ndarray:
        """The weight gradient alone, ``dW[o, c, p, q] = sum_{b,i,j} dy[b, o, i, j] *
        x_pad[b, c, i*s + p, j*s + q]``, by the implementation ``forward`` chooses by shape
        (the direct kernel or im2col + GEMM), e.g. for a layer trained in another form.

        Parameters
        ----------
        x : ndarray of shape (B, C_in, H, W), float32 or float64
        dy : ndarray of shape (B, C_out, oh, ow), dtype of x

        Returns
        -------
        ndarray of shape (C_out, C_in, k, k), dtype of x
        """
        x = _check_input(self, x, None, 4)
        dy = _check_grad(dy, (x.shape[0], *self.output_shape(x.shape[1:])), x.dtype)
        if self.direct:
            return self._direct_weight_grad(x, dy)
        dy_mat = dy.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)  # [O, B*oh*ow]
        cols = _im2col(x, self.kernel_size, self.stride, self.padding)     # [C*k*k, B*oh*ow]
        return (dy_mat @ cols.T).reshape(self.param_shapes()["weight"])

    def _direct_weight_grad(self, x, dy) -> np.ndarray:
        d_weight = np.empty(self.param_shapes()["weight"], x.dtype)         # [O, C, k, k]
        _kernels.conv2d_direct_weight_grad(x, dy, self.padding, d_weight)
        return d_weight


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




@dataclass(frozen=True)
class BiasFreeConv2d:
    """``Conv2d`` without a bias (PyTorch ``Conv2d(..., bias=False)``): the convolution of
    the ResNets, where a BatchNorm follows and its shift makes a bias redundant.

    Parameter ``weight`` [C_out, C_in, k, k]; forward and backward are ``Conv2d``'s with a
    zero bias (its bias gradient is dropped).
    """
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    conv: Conv2d = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "conv", Conv2d(self.in_channels, self.out_channels,
                                                self.kernel_size, self.stride, self.padding))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": self.conv.param_shapes()["weight"]}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.conv.output_shape(in_shape)

    def forward(self, x, params):
        """x : ndarray (B, C_in, H, W); params: ``weight`` (C_out, C_in, k, k), dtype of x
        -> y (B, C_out, oh, ow) and the cache of ``Conv2d.forward``."""
        x = _check_input(self, x, None, 4)
        p = _check_params(self, params, x.dtype)
        zero_bias = np.zeros(self.out_channels, x.dtype)                     # [C_out]
        return self.conv.forward(x, {"weight": p["weight"], "bias": zero_bias})

    def backward(self, dy, cache):
        """dy (B, C_out, oh, ow) -> dx (B, C_in, H, W), grads ``{"weight": dW}``."""
        dx, grads = self.conv.backward(dy, cache)
        return dx, {"weight": grads["weight"]}


def _check_buffers(layer, buffers, dtype) -> dict[str, np.ndarray]:
    """The layer's running statistics, each of its declared shape and of ``x``'s dtype."""
    return _check_arrays(layer, "buffers", buffers, layer.buffer_shapes(), dtype)


@dataclass(frozen=True)
class _BatchNorm:
    """Batch normalisation per channel (PyTorch ``BatchNorm1d``/``BatchNorm2d`` with
    ``affine=True, track_running_stats=True``); the subclasses fix the input rank.

    Training mode normalises with the batch's statistics over every axis but the channel
    one (``n`` values per channel)::

        mean = mean(x),  var = mean((x - mean)^2)            (biased: normalises the batch)
        y = weight * (x - mean) / sqrt(var + eps) + bias
        running_mean <- (1 - momentum) * running_mean + momentum * mean
        running_var  <- (1 - momentum) * running_var  + momentum * var * n / (n - 1)

    (the running variance takes the unbiased estimate, as PyTorch). Evaluation mode uses
    ``running_mean``/``running_var`` in place of the batch statistics and updates nothing.
    Parameters ``weight``, ``bias`` [C] (trainable, never sparse); buffers
    ``running_mean``, ``running_var`` [C] (not trainable; start at 0 and 1). PyTorch's
    ``num_batches_tracked`` is not kept: with a fixed ``momentum`` it is never read.

    Stateful layers take and return the buffers instead of mutating them::

        y, cache, new_buffers = layer.forward(x, params, buffers, train=True)
        dx, grads = layer.backward(dy, cache)
    """
    num_features: int
    momentum: float = 0.1
    eps: float = 1e-5
    input_ndim = 0                               # rank of x, set by the subclasses

    def __post_init__(self):
        check_int("num_features", self.num_features, low=1)
        check_real("momentum", self.momentum, low=0.0, high=1.0)
        check_real("eps", self.eps, low=0.0, low_open=True)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(in_shape) != self.input_ndim - 1 or in_shape[0] != self.num_features:
            raise ValueError(f"input shape {tuple(in_shape)} does not fit {self}: needs "
                             f"{self.input_ndim - 1} dimension(s), {self.num_features} "
                             f"channels first")
        return tuple(in_shape)

    @property
    def _axes(self) -> tuple[int, ...]:
        """The axes a channel's statistics run over: all but axis 1."""
        return (0,) + tuple(range(2, self.input_ndim))

    def _per_channel(self, v: np.ndarray) -> np.ndarray:
        """A [C] vector shaped to broadcast against x: [1, C] or [1, C, 1, 1]."""
        return v.reshape((1, self.num_features) + (1,) * (self.input_ndim - 2))

    def forward(self, x, params, buffers, *, train: bool):
        """Parameters
        ----------
        x : ndarray of shape (B, C) (1d) or (B, C, H, W) (2d), float32 or float64
        params : dict with ``weight``, ``bias`` (C,), dtype of x
        buffers : dict with ``running_mean``, ``running_var`` (C,), dtype of x
        train : bool
            Batch statistics (and updated running statistics) or the running ones.

        Returns
        -------
        y : ndarray, the shape of x
        cache : tuple, for ``backward``
        new_buffers : dict
            The updated running statistics (new arrays) in training mode, ``buffers``
            unchanged in evaluation mode.
        """
        x = _check_input(self, x, None, self.input_ndim)
        self.output_shape(x.shape[1:])
        p = _check_params(self, params, x.dtype)
        b = _check_buffers(self, buffers, x.dtype)
        m = self.momentum
        if train:
            n = x.size // self.num_features                       # values per channel
            if n < 2:
                raise ValueError(f"x.shape == {x.shape}: training mode needs more than one "
                                 f"value per channel for {self}")
            mean = x.mean(axis=self._axes)                         # [C]
            var = x.var(axis=self._axes)                           # [C], biased
            new_buffers = {"running_mean": (1 - m) * b["running_mean"] + m * mean,
                           "running_var": (1 - m) * b["running_var"] + m * var * (n / (n - 1))}
        else:
            mean, var, new_buffers = b["running_mean"], b["running_var"], b
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.eps))      # [C]
        x_hat = (x - self._per_channel(mean)) * self._per_channel(inv_std)   # shape of x
        y = x_hat * self._per_channel(p["weight"]) + self._per_channel(p["bias"])
        return y, (x_hat, inv_std, p["weight"], train), new_buffers

    def backward(self, dy, cache):
        """``dbias = sum dy``, ``dweight = sum dy * x_hat``; with ``g = dy * weight``:
        training mode ``dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` (the batch
        statistics depend on x), evaluation mode ``dx = g * inv_std``. Sums and means run
        over the axes of a channel's statistics.

        Parameters
        ----------
        dy : ndarray, the shape and dtype of the forward's output
        cache : the forward's cache

        Returns
        -------
        dx : ndarray, the shape of x
        grads : dict with ``weight`` and ``bias`` (C,)
        """
        x_hat, inv_std, weight, train = cache
        dy = _check_grad(dy, x_hat.shape, x_hat.dtype)
        grads = {"weight": (dy * x_hat).sum(axis=self._axes), "bias": dy.sum(axis=self._axes)}
        g = dy * self._per_channel(weight)                         # dL/dx_hat
        if train:
            g = (g - g.mean(axis=self._axes, keepdims=True)
                 - x_hat * (g * x_hat).mean(axis=self._axes, keepdims=True))
        return g * self._per_channel(inv_std), grads


@dataclass(frozen=True)
class BatchNorm1d(_BatchNorm):
    """``_BatchNorm`` over features: x (B, C), statistics over the batch."""
    input_ndim = 2


@dataclass(frozen=True)
class BatchNorm2d(_BatchNorm):
    """``_BatchNorm`` over channels: x (B, C, H, W), statistics over (B, H, W)."""
    input_ndim = 4


@dataclass(frozen=True)
class BasicBlock:
    """The residual block of ResNet-18/20 (He et al. 2016, "BasicBlock")::

        y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    ``conv1`` 3x3 with ``stride`` (padding 1), ``conv2`` 3x3 (padding 1), both bias-free
    (``BiasFreeConv2d``). The shortcut is the identity when the shape is kept
    (``stride == 1`` and ``in_channels == out_channels``), else a 1x1 projection
    ``shortcut.1(shortcut.0(x))``: a bias-free 1x1 convolution with ``stride`` and a
    BatchNorm2d (He et al.'s option B, the form of the authors' CIFAR ResNet-18).

    Sub-layer names are PyTorch's (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``shortcut.0``,
    ``shortcut.1``); parameters and buffers are keyed ``"<sub-layer>.<key>"``. Like
    ``_BatchNorm``, the block is stateful: ``forward(x, params, buffers, train=...)`` ->
    ``(y, cache, new_buffers)``.
    """
    in_channels: int
    out_channels: int
    stride: int = 1
    sublayers: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        c_in, c_out, s = self.in_channels, self.out_channels, self.stride
        subs = [("conv1", BiasFreeConv2d(c_in, c_out, 3, s, 1)), ("bn1", BatchNorm2d(c_out)),
                ("conv2", BiasFreeConv2d(c_out, c_out, 3, 1, 1)), ("bn2", BatchNorm2d(c_out))]
        if self.projection:
            subs += [("shortcut.0", BiasFreeConv2d(c_in, c_out, 1, s, 0)),
                     ("shortcut.1", BatchNorm2d(c_out))]
        object.__setattr__(self, "sublayers", tuple(subs))

    @property
    def projection(self) -> bool:
        """True when the shortcut is a 1x1 projection (the shape changes)."""
        return self.stride != 1 or self.in_channels != self.out_channels

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{name}.{key}": shape for name, layer in self.sublayers
                for key, shape in layer.param_shapes().items()}

    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{name}.{key}": shape for name, layer in self.sublayers
                if isinstance(layer, _BatchNorm) for key, shape in layer.buffer_shapes().items()}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.sublayers[0][1].output_shape(in_shape)

    def forward(self, x, params, buffers, *, train: bool):
        """Parameters
        ----------
        x : ndarray of shape (B, C_in, H, W), float32 or float64
        params, buffers : dicts keyed ``"<sub-layer>.<key>"`` (``param_shapes()``,
            ``buffer_shapes()``), dtype of x
        train : bool
            BatchNorm mode (see ``_BatchNorm.forward``).

        Returns
        -------
        y : ndarray of shape (B, C_out, oh, ow)
        cache : dict, for ``backward``
        new_buffers : dict, the block's running statistics after this batch
        """
        x = _check_input(self, x, None, 4)
        p = _check_params(self, params, x.dtype)
        b = _check_buffers(self, buffers, x.dtype)
        subs, cache, new_buffers = dict(self.sublayers), {}, {}

        def run(name, h):
            layer = subs[name]
            own = {k.rpartition(".")[2]: v for k, v in p.items() if k.rpartition(".")[0] == name}
            if isinstance(layer, _BatchNorm):
                state = {key: b[f"{name}.{key}"] for key in layer.buffer_shapes()}
                h, cache[name], new = layer.forward(h, own, state, train=train)
                new_buffers.update({f"{name}.{key}": v for key, v in new.items()})
            else:
                h, cache[name] = layer.forward(h, own)
            return h

        h = run("bn1", run("conv1", x))                            # [B, C_out, oh, ow]
        h, cache["relu1"] = ReLU().forward(h, {})
        h = run("bn2", run("conv2", h))                            # [B, C_out, oh, ow]
        shortcut = run("shortcut.1", run("shortcut.0", x)) if self.projection else x
        y, cache["relu2"] = ReLU().forward(h + shortcut, {})
        return y, cache, new_buffers

    def backward(self, dy, cache):
        """Back through ``relu2``, then both branches; ``dx`` is the sum of the main
        branch's and the shortcut's input gradients.

        Parameters
        ----------
        dy : ndarray of shape (B, C_out, oh, ow), dtype of the forward
        cache : the forward's cache

        Returns
        -------
        dx : ndarray of shape (B, C_in, H, W)
        grads : dict keyed like ``params``
        """
        subs, grads = dict(self.sublayers), {}

        def back(name, d):
            d, own = subs[name].backward(d, cache[name])
            grads.update({f"{name}.{key}": g for key, g in own.items()})
            return d

        d_sum, _ = ReLU().backward(dy, cache["relu2"])             # dL/d(main + shortcut)
        d_main = back("bn2", d_sum)
        d_main = back("conv2", d_main)
        d_main, _ = ReLU().backward(d_main, cache["relu1"])
        dx = back("conv1", back("bn1", d_main))                    # [B, C_in, H, W]
        if self.projection:
            dx = dx + back("shortcut.0", back("shortcut.1", d_sum))
        else:
            dx = dx + d_sum
        return dx, {key: grads[key] for key in self.param_shapes()}


Layer = (Linear | Conv2d | BiasFreeConv2d | ReLU | MaxPool2d | GlobalAvgPool | Flatten
         | BatchNorm1d | BatchNorm2d | BasicBlock)
