"""Whole-model condensation: a trained masked model -> a condensed inference model.

``docs/algorithm.md §9``.

``condense_model(model, masks)`` walks ``model.layers`` once and builds a list of inference
ops that compute the same logits as the masked dense ``model.forward(x, train=False)``:

- every sparse Linear / Conv2d becomes a condensed layer (``CondensedLinear``): its ablated
  neurons (all-False mask rows) are removed from the output, and the next weighted layer
  drops the input columns (Linear) or input channels (Conv2d) they fed;
- the output of a removed neuron is a constant: ``bias_i``, or ``relu(bias_i)`` when a ReLU
  follows (its weight row is all zero). For a conv channel that constant fills the whole
  map, passes max pooling and global average pooling unchanged, and after ``Flatten`` is a
  constant over that channel's ``H * W`` positions. The next weighted layer adds it to its
  bias: ``bias += W[:, dropped] @ const[dropped]`` for a Linear; for a Conv2d the sum runs
  over the taps inside the image, so with zero padding it differs at the borders and is
  kept as a per-position bias map ``[n_active, oh * ow]`` (a per-channel bias otherwise);
- after the columns are dropped an active row may keep fewer than ``k`` inputs (those it
  read from removed neurons are gone). Rows are padded back to a common ``k_eff`` (the
  largest count; at least 1) with zero weights on unused columns, so the layer stays
  constant fan-in;
- dense layers (sparsity 0: an all-True mask) stay dense (a BLAS product over the kept
  input columns);
- a ReLU right after a weighted layer is applied in place on that layer's output;
- conv layers run as im2col (``srigl_ref.nn._kernels.im2col``) followed by the condensed
  product over the patch rows (``conv="condensed"``: each output channel gathers its
  ``k_eff`` taps), or a dense GEMM over the kept channels (``conv="dense"``);
- if the last layer has removed rows, the logits are scattered back to ``n_classes``
  columns, the removed ones holding their constant;
- a model of linear layers only (the MLP) runs a single example through every layer in
  one Numba call (``_kernels.mlp_matvec_lanes``): no Python or allocation per layer.

``CondensedModel`` computes in float32. Saving and loading it (``condensed.npz``), and
rebuilding the masked model of a training checkpoint, live in ``storage.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import as_mask, check_choice
from ..dst.masks import check_constant_fan_in
from ..nn import _kernels as nn_kernels
from ..nn.layers import Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU
from ..nn.models import Model
from . import _kernels, matmul
from .format import CondensedLinear, condense

CONV_STRATEGIES = ("condensed", "dense")
DEFAULT_CONV = "condensed"


# ----------------------------------------------------------------------------- report

@dataclass(frozen=True)
class LayerReport:
    """What condensing did to one weighted layer.

    Attributes
    ----------
    name : str
        The weight's parameter name (``fc1.weight``, ``conv2.weight``, ...).
    shape : tuple of int
        The dense weight's shape.
    format : str
        ``"condensed"`` (``values``/``indices``), ``"dense"`` (kept dense, sparsity 0) or
        ``"dense-conv"`` (a sparse conv run densely over its kept channels, ``conv="dense"``).
    k : int
        The mask's constant fan-in (``prod(shape[1:])`` for a dense layer).
    k_eff : int
        Inputs per row actually stored: ``k`` minus the largest number of inputs a row lost
        to the previous layer's removed neurons, padded (see the module docstring); the
        kept input width for a dense layer.
    n_active, n_ablated : int
        Output neurons kept / removed (``n_active + n_ablated == shape[0]``).
    n_inputs_dropped : int
        Input columns (Linear) or channels (Conv2d) removed with the previous layer's
        ablated neurons.
    bytes_dense : int
        float32 weight and bias of the dense layer.
    bytes_condensed : int
        What the inference op reads: values, padded index, bias (and bias map), or the
        reduced dense weight and bias.
    """
    name: str
    shape: tuple
    format: str
    k: int
    k_eff: int
    n_active: int
    n_ablated: int
    n_inputs_dropped: int
    bytes_dense: int
    bytes_condensed: int

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["shape"] = list(self.shape)
        return d


# ----------------------------------------------------------------------------- ops

class _LinearOp:
    """A weighted layer's inference op (Linear or Conv2d; condensed or dense form).

    Condensed form: ``layer`` is a ``CondensedLinear`` over the kept inputs (its ``shape``
    is ``(out, n_in_kept)`` or ``(out, C_kept, kh, kw)``). Dense form: ``weight``
    ``[n_active, n_in_kept]`` (or ``[n_active, C_kept, kh, kw]``), ``bias [n_active]`` and
    ``active_rows``. ``bias_map [n_active, oh * ow]`` (conv only, optional) is added after
    the product. ``conv`` holds ``(kernel_size, stride, padding)`` for a conv layer.
    """

    def __init__(self, name, *, relu, layer=None, weight=None, bias=None, active_rows=None,
                 out_features=None, conv=None, bias_map=None):
        self.name, self.relu, self.layer, self.conv = name, bool(relu), layer, conv
        if layer is not None:
            self.active_rows, self.out_features = layer.active_rows, layer.out_features
            self.in_shape = layer.shape[1:]
            self._w = None
        else:
            self.weight, self.bias = weight, bias
            self.active_rows, self.out_features = active_rows, int(out_features)
            self.in_shape = tuple(weight.shape[1:])
            self._w = weight.reshape(weight.shape[0], -1)            # [n_active, in]
        self.bias_map = bias_map
        self.n_active = int(self.active_rows.size)

    @property
    def dense(self) -> bool:
        return self.layer is None

    def _matmul(self, x2):
        """``x2 [N, in]`` (any layout) -> ``[N, n_active]`` (bias added)."""
        if self._w is None:
            lay = self.layer
            return matmul.forward(x2, lay._slab_values, lay._slab_index, lay._bias,
                                  lay.n_active)
        y = x2 @ self._w.T
        y += self.bias
        return y

    def __call__(self, x):
        """x [B, in] -> [B, n_active], or x [B, C_kept, H, W] -> [B, n_active, oh, ow]."""
        if self.conv is None:                                        # x [B, in]
            y = self._matmul(x)                                      # [B, n_active]
        else:                                                        # x [B, C, H, W]
            ksize, stride, padding = self.conv
            n_batch, n_chan, height, width = x.shape
            oh = (height + 2 * padding - ksize) // stride + 1
            ow = (width + 2 * padding - ksize) // stride + 1
            cols = np.empty((n_chan, ksize, ksize, n_batch, oh, ow), np.float32)
            nn_kernels.im2col(x, stride, padding, cols)
            cols = cols.reshape(n_chan * ksize * ksize, n_batch * oh * ow)  # [C*k*k, N]
            if self._w is None:
                yT = self._matmul(cols.T).T                          # [n_active, N]
            else:
                yT = self._w @ cols                                  # [n_active, N]
                yT += self.bias[:, None]
            yT = yT.reshape(self.n_active, n_batch, oh * ow)
            if self.bias_map is not None:
                yT += self.bias_map[:, None, :]
            y = yT.reshape(self.n_active, n_batch, oh, ow).transpose(1, 0, 2, 3)
            y = np.ascontiguousarray(y)                              # [B, n_active, oh, ow]
        if self.relu:
            np.maximum(y, 0, out=y)
        return y

    def output_shape(self, in_shape):
        if tuple(in_shape[:1]) != tuple(self.in_shape[:1]) or (
                self.conv is None and len(in_shape) != 1):
            raise ValueError(f"op {self.name!r} expects input of shape "
                             f"{self._want_input()}, gets {tuple(in_shape)}")
        if self.conv is None:
            return (self.n_active,)
        ksize, stride, padding = self.conv
        if tuple(self.in_shape[1:]) != (ksize, ksize) or min(ksize, stride) < 1 or padding < 0:
            raise ValueError(f"op {self.name!r}: weight taps {tuple(self.in_shape[1:])}, "
                             f"kernel_size {ksize}, stride {stride}, padding {padding}: must "
                             f"be (k, k), k, >= 1, >= 0")
        if len(in_shape) != 3:
            raise ValueError(f"op {self.name!r} expects input of shape "
                             f"{self._want_input()}, gets {tuple(in_shape)}")
        oh, ow = ((n + 2 * padding - ksize) // stride + 1 for n in in_shape[1:])
        if oh < 1 or ow < 1:
            raise ValueError(f"op {self.name!r}: input {tuple(in_shape)} too small for "
                             f"kernel {ksize}")
        if self.bias_map is not None and self.bias_map.shape != (self.n_active, oh * ow):
            raise ValueError(f"op {self.name!r}: bias_map.shape == {self.bias_map.shape}, "
                             f"must be {(self.n_active, oh * ow)}")
        return (self.n_active, oh, ow)

    def _want_input(self):
        return f"({self.in_shape[0]}, H, W)" if self.conv else f"({self.in_shape[0]},)"


class _ReluOp:
    name = "relu"

    def __call__(self, x):
        return np.maximum(x, 0)

    def output_shape(self, in_shape):
        return tuple(in_shape)


class _MaxPoolOp:
    def __init__(self, kernel_size, stride):
        self.kernel_size, self.stride, self.name = int(kernel_size), int(stride), "maxpool"

    def __call__(self, x):
        y = np.empty((x.shape[0], *self.output_shape(x.shape[1:])), np.float32)
        arg = np.empty(y.shape, np.int64)
        nn_kernels.maxpool2d_forward(x, self.kernel_size, self.stride, y, arg)
        return y

    def output_shape(self, in_shape):
        return tuple(MaxPool2d(self.kernel_size, self.stride).output_shape(tuple(in_shape)))


class _GapOp:
    name = "gap"

    def __call__(self, x):
        return x.mean(axis=(2, 3))

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"global average pooling needs (C, H, W), gets {tuple(in_shape)}")
        return (in_shape[0],)


class _FlattenOp:
    name = "flatten"

    def __call__(self, x):
        return x.reshape(x.shape[0], -1)

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)


class _MlpPlan:
    """Batch-1 fast path of a model made of linear ops only (after an optional flatten):
    every layer in one ``_kernels.mlp_matvec_windows`` call (when ``matmul.use_windows``
    holds for every condensed layer) or ``_kernels.mlp_matvec_lanes`` call (no per-layer
    Python, no per-layer allocation). ``None`` from ``build`` when the ops do not qualify (a conv or
    pool, or lanes layouts with index dtypes that differ)."""

    def __init__(self, params, index, layout, n_buf, out_offset, n_out, steps=None):
        self.params, self.index, self.layout = params, index, layout
        self.n_buf, self.out_offset, self.n_out = n_buf, out_offset, n_out
        self.steps = steps                                           # window plan only

    @classmethod
    def build(cls, ops, n_in):
        lin = [op for op in ops if not isinstance(op, _FlattenOp)]
        windows = matmul.WINDOW_KERNEL and all(
            op.dense or matmul.use_windows(op.layer.k, op.layer.in_features)
            for op in lin if isinstance(op, _LinearOp))
        index_dtypes = {np.dtype(np.uint8) if windows else op.layer._slab_index.dtype
                        for op in lin if isinstance(op, _LinearOp) and not op.dense}
        if (not lin or not all(isinstance(op, _LinearOp) and op.conv is None for op in lin)
                or any(isinstance(op, _FlattenOp) for op in ops[1:])
                or len(index_dtypes) > 1):
            return None
        index_dtype = index_dtypes.pop() if index_dtypes else np.dtype(np.uint16)
        params, index, layout, steps = [], [], [], []
        n_params = n_index = n_steps = 0
        io, oo = 0, n_in                                             # offsets in buf
        for op in lin:
            windows_at = [0, 0]                                      # steps offset, in
            if op.dense:
                w, b = op._w, op.bias                                # [n, k], [n]
                n, k = w.shape
                n_blocks, idx, n_space = 0, np.zeros(0, index_dtype), n
            elif windows:
                lay = op.layer
                win = matmul.window_layout(lay.values, lay.indices, lay.in_features)
                b = lay._bias
                n, k, n_blocks = lay.n_active, lay.k, b.size // _kernels.LANES
                w, n_space = win.values, n
                idx = win.offsets.ravel()
                steps.append(np.concatenate([win.group_start, win.step_start,
                                             win.step_input]))
                windows_at = [n_steps, lay.in_features]
                n_steps += steps[-1].size
            else:
                lay = op.layer
                w, b = lay._slab_values, lay._bias                   # [n_blocks, k, 16]
                n_blocks, k = w.shape[:2]
                n, idx, n_space = lay.n_active, lay._slab_index.ravel(), b.size
            layout.append([int(op.dense), n, k, n_blocks, n_params, n_index,
                           n_params + w.size, int(op.relu), io, oo, *windows_at])
            params += [w.ravel(), b]
            index.append(idx)
            n_params += w.size + b.size
            n_index += idx.size
            io, oo = oo, oo + n_space
        n_out = layout[-1][1]
        return cls(np.concatenate(params).astype(np.float32),
                   np.concatenate(index).astype(index_dtype),
                   np.array(layout, dtype=np.int64), oo, io, n_out,
                   np.concatenate([np.zeros(0, np.int32)] + steps).astype(np.int32)
                   if windows else None)

    def __call__(self, x):
        """x : [n_in] float32, C-contiguous -> logits [n_out] float32 (a new array)."""
        buf = np.empty(self.n_buf, np.float32)
        if self.steps is None:
            _kernels.mlp_matvec_lanes(x, self.params, self.index, self.layout, buf)
        else:
            _kernels.mlp_matvec_windows(x, self.params, self.index, self.steps, self.layout,
                                        buf)
        return buf[self.out_offset:self.out_offset + self.n_out]


# ----------------------------------------------------------------------------- the model

class CondensedModel:
    """A condensed inference model; calling it returns logits (see the module docstring).

    Build it with ``condense_model``, ``from_checkpoint`` or ``load_condensed``.

    Attributes
    ----------
    name : str
        The source model's name (``"mlp"``, ``"lenet5"``, ``"cnn"``).
    input_shape : tuple of int
        Per-example input shape.
    n_classes : int
    conv : str
        The conv strategy, ``"condensed"`` or ``"dense"``.
    report : list of LayerReport
        One per weighted layer, in model order.
    """

    def __init__(self, name, input_shape, n_classes, ops, report, *, conv,
                 out_index=None, out_const=None):
        self.name = str(name)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_classes = int(n_classes)
        self.ops = list(ops)
        self.report = list(report)
        self.conv = conv
        self.out_index, self.out_const = out_index, out_const   # scatter of the last layer
        shape = self.input_shape
        for op in self.ops:
            shape = op.output_shape(shape)
        want = (self.n_classes,) if out_index is None else (out_index.size,)
        if shape != want:
            raise ValueError(f"the ops end in shape {shape}, must be {want}")
        if out_index is not None and (out_const.shape != (self.n_classes,) or (
                out_index.size and (out_index.min() < 0 or out_index.max() >= self.n_classes
                                    or (np.diff(out_index) <= 0).any()))):
            raise ValueError(f"out/index == {out_index.tolist()} and out/const of shape "
                             f"{out_const.shape}: must be ascending in [0, {self.n_classes}) "
                             f"and ({self.n_classes},)")
        self._n_in = math.prod(self.input_shape)
        self._mlp = _MlpPlan.build(self.ops, self._n_in)

    def __repr__(self) -> str:
        return (f"CondensedModel({self.name!r}, input_shape={self.input_shape}, "
                f"n_classes={self.n_classes}, layers={[r.name for r in self.report]})")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits, as the masked dense model's ``forward(x, train=False)`` (float32).

        Parameters
        ----------
        x : ndarray of shape (B, *input_shape) or input_shape, float32 or float64
            float64 is rounded to float32. Not checked for NaN/inf (they propagate).

        Returns
        -------
        logits : ndarray of shape (B, n_classes) or (n_classes,), float32
        """
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"x.dtype == {x.dtype}, must be float32 or float64")
        single = x.shape == self.input_shape
        if not single and (x.shape[1:] != self.input_shape or x.shape[0] == 0):
            raise ValueError(f"x.shape == {x.shape}, must be (B, "
                             f"{', '.join(map(str, self.input_shape))}) with B >= 1, or "
                             f"{self.input_shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._mlp is not None and (single or x.shape[0] == 1):
            x = self._mlp(x.reshape(-1))[None]                       # [1, n_out]
        else:
            if single:
                x = x[None]
            for op in self.ops:
                x = op(x)
        if self.out_index is not None:
            y = np.empty((x.shape[0], self.n_classes), np.float32)
            y[:] = self.out_const
            y[:, self.out_index] = x
            x = y
        return x[0] if single else np.asarray(x)

    # ------------------------------------------------------------------ files (storage.py)
    def to_arrays(self) -> dict[str, np.ndarray]:
        """``storage.to_arrays(self)``: plain arrays and a JSON ``meta`` entry."""
        from .storage import to_arrays
        return to_arrays(self)

    def write(self, file) -> None:
        """``storage.write_condensed(self, file)``: an ``.npz`` to a binary file or path.

        For an atomic file: ``srigl_ref.checkpoint.atomic_write(path, cmodel.write)``.
        """
        from .storage import write_condensed
        write_condensed(self, file)

    @classmethod
    def from_arrays(cls, arrays, *, source: str = "arrays") -> "CondensedModel":
        """``storage.from_arrays(arrays, source=source)``: rebuild and validate."""
        from .storage import from_arrays
        return from_arrays(arrays, source=source)


# ----------------------------------------------------------------------------- condensing

def condense_model(model: Model, masks: dict, *, conv: str = DEFAULT_CONV) -> CondensedModel:
    """Condense a trained masked model for inference (docs/algorithm.md §9, whole model).

    Parameters
    ----------
    model : Model
        From ``srigl_ref.nn.models`` (``mlp``, ``lenet5``, ``cnn``; any stack of Linear,
        Conv2d, ReLU, MaxPool2d, GlobalAvgPool, Flatten). Its weights must be zero outside
        their masks (the optimizer keeps them so).
    masks : dict[str, ndarray of bool]
        ``{weight name: mask}``; every active row of a mask holds the same number ``k`` of
        True entries (constant fan-in), ablated rows none. A weight without a mask, or with
        an all-True one, is dense and stays dense.
    conv : {"condensed", "dense"}
        How a sparse conv runs: condensed product over im2col patches, or a dense GEMM over
        the kept channels (bench/README.md, "condense (whole model)", compares them).

    Returns
    -------
    CondensedModel
        ``cmodel(x)`` equals ``model.forward(x, train=False)[0]`` up to float32 rounding.

    Raises
    ------
    TypeError
        ``model`` is not a Model, a mask is not bool, or a layer type is unknown.
    ValueError
        A mask of the wrong shape or breaking constant fan-in, a weight nonzero outside its
        mask, a weight or bias that is not finite, or a layer whose inputs were all removed.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a srigl_ref.nn.models.Model, got {type(model).__name__}")
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict of bool arrays, got {type(masks).__name__}")
    check_choice("conv", conv, CONV_STRATEGIES)
    unknown = sorted(set(masks) - set(model.sparse_names))
    if unknown:
        raise ValueError(f"masks has name(s) {unknown} that are not weights of model "
                         f"{model.name!r} {model.sparse_names}")
    shape = model.input_shape            # per-example shape of the full (dense) activation
    keep = np.ones(shape[0], np.bool_)   # features (1-d) or channels (3-d) kept
    const = np.zeros(shape[0])           # float64 value of each removed feature / channel
    ops, report = [], []
    layers = list(model.layers)
    i = 0
    while i < len(layers):
        lname, layer = layers[i]
        if isinstance(layer, (Linear, Conv2d)):
            relu = i + 1 < len(layers) and isinstance(layers[i + 1][1], ReLU)
            op, rep, out_const = _condense_layer(model, lname, layer, masks, shape, keep,
                                                 const, relu, conv)
            ops.append(op)
            report.append(rep)
            shape = layer.output_shape(shape)
            keep = np.zeros(shape[0], np.bool_)
            keep[op.active_rows] = True
            const = np.maximum(out_const, 0) if relu else out_const
            i += 2 if relu else 1
            continue
        if isinstance(layer, ReLU):
            ops.append(_ReluOp())
            const = np.maximum(const, 0)
        elif isinstance(layer, MaxPool2d):
            ops.append(_MaxPoolOp(layer.kernel_size, layer.step))
        elif isinstance(layer, GlobalAvgPool):
            ops.append(_GapOp())
        elif isinstance(layer, Flatten):
            ops.append(_FlattenOp())
            spatial = math.prod(shape[1:])
            keep, const = np.repeat(keep, spatial), np.repeat(const, spatial)
        else:
            raise TypeError(f"layer {lname!r} is a {type(layer).__name__}; condense_model "
                            f"handles Linear, Conv2d, ReLU, MaxPool2d, GlobalAvgPool, Flatten")
        shape = layer.output_shape(shape)
        i += 1
    out_index = out_const = None
    if not keep.all():
        out_index = np.flatnonzero(keep)
        out_const = np.where(keep, 0.0, const).astype(np.float32)
    return CondensedModel(model.name, model.input_shape, model.n_classes, ops, report,
                          conv=conv, out_index=out_index, out_const=out_const)


def _condense_layer(model, lname, layer, masks, in_shape, keep, const, relu, conv):
    """One weighted layer -> (op, LayerReport, float64 [out] output of each neuron if removed)."""
    wname, bname = f"{lname}.weight", f"{lname}.bias"
    weight, bias = model.params[wname], model.params[bname]
    for name, a in ((wname, weight), (bname, bias)):
        if not np.isfinite(a).all():
            raise ValueError(f"model.params[{name!r}] has non-finite values, must be finite")
    out = weight.shape[0]
    if wname in masks:
        mask = as_mask(f"masks[{wname!r}]", masks[wname], shape=weight.shape)
    else:
        mask = np.ones(weight.shape, np.bool_)
    if (weight[~mask] != 0).any():
        raise ValueError(f"model.params[{wname!r}] is nonzero outside masks[{wname!r}]; "
                         f"the masked model must hold zeros there")
    k = check_constant_fan_in(mask.reshape(out, -1))
    is_conv = isinstance(layer, Conv2d)
    w64, b64 = weight.astype(np.float64), bias.astype(np.float64)
    dropped = ~keep                                                  # [in] or [C_in]
    # Constant contribution of the removed inputs, per output neuron (and position for conv).
    bias_map = None
    if not dropped.any():
        fold = np.zeros(out)
    elif is_conv:
        x_const = np.where(dropped, const, 0.0)[None, :, None, None] * np.ones((1,) + in_shape)
        fmap, _ = layer.forward(x_const, {"weight": w64, "bias": np.zeros(out)})
        fmap = fmap[0].reshape(out, -1)                              # [out, oh*ow]
        fold = fmap[:, 0]
        if (fmap != fold[:, None]).any():                            # zero padding: borders
            bias_map, fold = fmap, np.zeros(out)
    else:
        fold = w64[:, dropped] @ const[dropped]                      # [out]
    if keep.sum() == 0:
        raise ValueError(f"layer {lname!r}: every input was removed (the previous layer "
                         f"ablated all its neurons); the model's output is constant")
    w_red = np.ascontiguousarray(weight[:, keep])                    # [out, n_keep(, k, k)]
    m_red = mask[:, keep]
    active = mask.reshape(out, -1).any(axis=1)                       # [out]
    rows = np.flatnonzero(active)
    new_bias = (b64 + fold).astype(np.float32)
    counts = m_red.reshape(out, -1).sum(axis=1)                      # [out]
    is_dense = bool(mask.all())
    per_row = math.prod(weight.shape[1:])
    bytes_dense = 4 * (weight.size + out)
    geometry = (layer.kernel_size, layer.stride, layer.padding) if is_conv else None
    bmap = None if bias_map is None else bias_map[rows].astype(np.float32)
    if is_dense or (is_conv and conv == "dense"):
        w_op = np.ascontiguousarray(w_red[rows])
        op = _LinearOp(wname, relu=relu, weight=w_op, bias=new_bias[rows], active_rows=rows,
                       out_features=out, conv=geometry, bias_map=bmap)
        fmt = "dense" if is_dense else "dense-conv"
        k_eff = math.prod(w_op.shape[1:])
        bytes_op = 4 * (w_op.size + rows.size)
    else:
        k_eff = max(int(counts[rows].max()) if rows.size else 0, 1)
        m_pad = m_red.reshape(out, -1).copy()                        # [out, in_kept]
        for r in rows[counts[rows] < k_eff]:                         # rows that lost inputs
            free = np.flatnonzero(~m_pad[r])[:k_eff - counts[r]]
            m_pad[r, free] = True                                    # zero weights there
        lay = condense(w_red, m_pad.reshape(w_red.shape), new_bias)
        op = _LinearOp(wname, relu=relu, layer=lay, conv=geometry, bias_map=bmap)
        fmt = "condensed"
        bytes_op = lay._slab_values.nbytes + lay._slab_index.nbytes + lay._bias.nbytes
    if bmap is not None:
        bytes_op += bmap.nbytes
    rep = LayerReport(wname, tuple(weight.shape), fmt, per_row if is_dense else k, k_eff,
                      int(rows.size), int(out - rows.size), int(dropped.sum()), bytes_dense,
                      int(bytes_op))
    return op, rep, b64
