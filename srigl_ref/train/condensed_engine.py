"""Truly sparse training of constant fan-in layers: the condensed engine.

The masked engine (``Model`` + ``SGD`` with masks, ``engine.MaskedEngine``) is the readable
reference:
it multiplies dense weights that are zero outside the mask, so forward, backward and the
optimizer step cost the dense amount of work whatever the density. With constant fan-in
every active neuron of a layer has exactly ``k`` inputs, so the layer trains as two small
arrays (docs/algorithm.md §9)::

    values  [n_active, k]   the trained parameters (what SGD updates)
    indices [n_active, k]   int32, ascending per row; rows [n_active] int64, ascending

    forward   yT[rows[r], b] = bias[rows[r]] + sum_j values[r, j] * xT[indices[r, j], b]
              yT[o, b]       = bias[o]               for an ablated neuron o (its row is 0)
    backward  dvalues[r, j]  = sum_b dY[b, rows[r]] * X[b, indices[r, j]]   (active only)
              dX[b, i]       = sum_{r, j: indices[r, j] == i} values[r, j] * dY[b, rows[r]]
              dbias          = sum_b dY[b, :]                              (every neuron)
              dW = dY^T X    only on the grad_accumulation_n steps before an update

An ablated neuron costs nothing but its bias: the masked model still computes ``y = b``
for an all-zero row, and the next layer reads ``relu(b)`` through whatever columns its
mask holds, so we keep every neuron's output (full width) and train every bias, and the
loss equals the masked engine's to rounding. SGD on ``values`` with the masked formulas is
exactly the masked SGD restricted to the active positions (``nn/optim.py``: outside the
mask the weight and its momentum stay 0), so the two engines compute the same numbers up
to the summation order of the products.

Activations between condensed linear layers are feature-major (``[B, F]`` arrays that are
F-contiguous, i.e. ``xT [F, B]`` C-contiguous), the layout the kernels read: a condensed
layer's output feeds the ReLU and the next condensed layer without a transpose.

Convolutions train condensed the same way (``CondensedTrainConv2d``): row ``r`` is output
channel ``rows[r]``, its ``k`` taps are flat indices into ``(C_in, kh, kw)``, and with
``x_pad`` the zero-padded input and ``s`` the stride::

    forward   y[b, o, i, j] = bias[o] + sum_t values[r, t] * x_pad[b, c_t, i*s + p_t, j*s + q_t]
              (o = rows[r]; an ablated channel outputs bias[o])
    backward  dvalues, dx (not for a first layer) and dbias as the sums of the forward;
              the dense dW (``nn.Conv2d.weight_grad``) only on the steps before an update

The kernels (``condensed._kernels.conv_rows``, ``conv_backward_rows``) go image by image
over the padded image split into its stride phases, where every tap is one contiguous
shifted vector: the work scales with the active taps, with no unfolded (im2col) matrix.
Conv activations stay ``[B, C, H, W]`` C-contiguous, so max pooling and global average
pooling run as in the masked model. Dense layers (sparsity 0, e.g. the classifier under ERK)
stay as they are; so do models with BatchNorm (the ResNets, ``TrainConfig`` rejects them
for this engine): the engine runs no stateful layer, and their convolutions are
``BiasFreeConv2d`` sub-layers inside ``BasicBlock``, which runs them itself.

The engine implements the trainer's interface (``engine.Engine``)::

    engine = CondensedEngine(model, optimizer, masks, names)   # gathers values + momentum
    logits, cache = engine.forward(x)
    grads, dense = engine.backward(dlogits, cache, dense=needs_dense_grad)
    engine.step(grads, masks, lr)
    engine.store()          # dense W and momentum into model.params / optimizer buffers
    ... topology update on the dense arrays ...
    engine.load(masks)      # rebuild values, indices and momentum from the new masks
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, as_mask
from ..condensed import _kernels
from ..condensed.matmul import feature_major, narrow_index
from ..dst.masks import check_constant_fan_in
from ..nn.layers import Conv2d, Linear, ReLU
from ..nn.models import Model
from ..nn.optim import SGD
from .engine import Engine


class _CondensedRows:
    """What stays fixed between topology updates of one constant fan-in weight: its
    active rows (output neurons or channels) and their inputs; shared by the condensed
    layers. The trained arrays (``values``, ``bias``) are passed to ``forward`` and
    ``backward`` so that an optimizer can own them.

    Parameters
    ----------
    mask : ndarray of shape (out, *fan_in_shape), bool
        Every row (``mask[o]``, flattened) has ``k >= 1`` True entries or none (an ablated
        row); at least one row is active.
    layout : str
        The weight's dimensions, e.g. ``"(out, in)"``: ``mask`` must have as many.

    Attributes
    ----------
    shape : tuple, the weight's
    rows : ndarray of shape (n_active,), int64
        The active rows, ascending.
    indices : ndarray of shape (n_active, k), int32
        Their active inputs, flat into ``fan_in_shape`` (C order), ascending per row.

    Raises
    ------
    TypeError
        ``mask`` is not a bool array.
    ValueError
        ``mask`` has another number of dimensions, breaks constant fan-in (the message
        names the first bad row) or has no active row.
    """

    def __init__(self, mask, layout: str):
        mask = as_mask("mask", mask)
        if mask.ndim != layout.count(",") + 1:
            raise ValueError(f"mask.shape == {mask.shape}, must be {layout}")
        k = check_constant_fan_in(mask)
        flat = mask.reshape(mask.shape[0], -1)                             # [out, fan_in]
        rows = np.flatnonzero(flat.any(axis=1))                            # [n_active] int64
        if rows.size == 0:
            raise ValueError(f"mask of shape {mask.shape} has no active row; a condensed "
                             f"layer needs at least one")
        self.shape = mask.shape
        self.rows = rows
        self.indices = np.nonzero(flat[rows])[1].reshape(rows.size, k).astype(np.int32)

    @property
    def n_active(self) -> int:
        return self.rows.size

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shape={self.shape}, k={self.k}, "
                f"n_active={self.n_active})")

    def gather(self, dense: np.ndarray) -> np.ndarray:
        """The entries of a dense array of the weight's shape at the active positions.

        Returns
        -------
        ndarray of shape (n_active, k), dtype of ``dense``, C-contiguous (a new array)
        """
        return dense.reshape(self.shape[0], -1)[self.rows[:, None], self.indices]

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """The dense array of the weight's shape: ``values`` at the active positions, 0
        elsewhere."""
        dense = np.zeros(self.shape, dtype=values.dtype)
        dense.reshape(self.shape[0], -1)[self.rows[:, None], self.indices] = values
        return dense

    def _check(self, x_dtype, values, bias=None):
        """``values`` (and ``bias``) must be C-contiguous arrays of ``x``'s dtype."""
        checks = [("values", values, (self.n_active, self.k))]
        if bias is not None:
            checks.append(("bias", bias, (self.shape[0],)))
        for name, a, shape in checks:
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != x_dtype \
                    or not a.flags.c_contiguous:
                got = (f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray)
                       else type(a).__name__)
                raise ValueError(f"{name} is {got}, must be a C-contiguous {x_dtype} "
                                 f"array of shape {shape}")


class CondensedTrainLinear(_CondensedRows):
    """The structure of one constant fan-in linear layer being trained, from its mask
    (``_CondensedRows``: ``shape``, ``rows``, ``indices``, ``gather``, ``scatter``).

    Parameters
    ----------
    mask : ndarray of shape (out, in), bool
        Every row has ``k >= 1`` True entries or none (an ablated neuron); at least one
        row is active.

    Raises
    ------
    TypeError
        ``mask`` is not a bool array.
    ValueError
        ``mask`` is not 2-D, breaks constant fan-in (the message names the first bad
        row), or has no active row.
    """

    def __init__(self, mask):
        super().__init__(mask, "(out, in)")
        self._index = narrow_index(self.indices, self.shape[1])           # [n_active, k]

    def forward(self, x, values, bias):
        """``y = x @ W.T + bias`` with ``W`` the scatter of ``values`` (ablated rows: bias).

        Parameters
        ----------
        x : ndarray of shape (B, in), float32 or float64
            Any layout; a feature-major (F-contiguous) batch is read without a copy.
        values : ndarray of shape (n_active, k), dtype of ``x``, C-contiguous
        bias : ndarray of shape (out,), dtype of ``x``

        Returns
        -------
        y : ndarray of shape (B, out), dtype of ``x``, F-contiguous (a view of ``yT``)
        cache : tuple, for ``backward``

        Raises
        ------
        TypeError, ValueError
            ``x`` not a float array of shape (B, in); ``values``/``bias`` of another shape,
            dtype or layout.
        """
        x = _check_batch("x", x, self.shape[1])
        self._check(x.dtype, values, bias)
        xT = feature_major(x)                                              # [in, B]
        yT = np.empty((self.shape[0], xT.shape[1]), dtype=x.dtype)         # [out, B]
        _kernels.matmat_rows(xT, values, self._index, self.rows, bias, yT)
        return yT.T, (xT,)

    def backward(self, dy, cache, values, *, need_dx: bool = True, dense: bool = False):
        """Gradients of ``forward``: ``dx``, ``dvalues`` (active positions only), ``dbias``
        and, if ``dense``, the dense ``dW = dY^T X`` at every position.

        Parameters
        ----------
        dy : ndarray of shape (B, out), dtype of the forward, any layout
        cache : the forward's cache
        values : the forward's ``values``
        need_dx : bool
            False skips the input gradient (a first layer's), returning None.
        dense : bool
            Also return the dense weight gradient (docs/algorithm.md §5: only on the steps before
            a topology update).

        Returns
        -------
        dx : ndarray of shape (B, in) (F-contiguous) or None
        grads : dict with ``values`` (n_active, k) and ``bias`` (out,)
        dweight : ndarray of shape (out, in), C-contiguous, or None
        """
        (xT,) = cache
        dy = _check_batch("dy", dy, self.shape[0])
        if dy.shape[0] != xT.shape[1] or dy.dtype != xT.dtype:
            raise ValueError(f"dy is {dy.dtype} {dy.shape}, must be {xT.dtype} "
                             f"({xT.shape[1]}, {self.shape[0]}) like the forward's output")
        self._check(xT.dtype, values)
        dyT = feature_major(dy)                                            # [out, B]
        dvalues = np.empty(values.shape, dtype=xT.dtype)                   # [n_active, k]
        dxT = np.zeros(xT.shape if need_dx else (1, 1), dtype=xT.dtype)    # [in, B]
        _kernels.backward_rows(dyT, xT, values, self._index, self.rows, dxT, dvalues,
                               bool(need_dx))
        dweight = dyT @ xT.T if dense else None                            # [out, in]
        grads = {"values": dvalues, "bias": dyT.sum(axis=1)}
        return (dxT.T if need_dx else None), grads, dweight


def _check_batch(name: str, x, width: int, ndim: int = 2) -> np.ndarray:
    """``x`` must be a float32/float64 ndarray of shape (B, width) (``ndim`` 2) or (B,
    width, H, W) (``ndim`` 4), B >= 1 (layout kept)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}.dtype == {x.dtype}, must be float32 or float64")
    if x.ndim != ndim or x.shape[1] != width or x.shape[0] == 0:
        dims = f"(B, {width})" if ndim == 2 else f"(B, {width}, H, W)"
        raise ValueError(f"{name}.shape == {x.shape}, must be {dims} with B >= 1")
    return x


class CondensedTrainConv2d(_CondensedRows):
    """The structure of one constant fan-in convolution being trained, from its mask
    (``_CondensedRows``: ``shape``, ``rows``, ``indices``, ``gather``, ``scatter``).

    Row ``r`` is output channel ``rows[r]``; its ``k`` taps ``indices[r]`` are flat into
    ``(C_in, kh, kw)``: tap ``c * kh * kw + p * kw + q`` reads input channel ``c`` at
    kernel position ``(p, q)``. The convolution is ``nn.Conv2d``'s (cross-correlation,
    stride, zero padding)::

        y[b, o, i, j] = bias[o] + sum_t values[r, t] * x_pad[b, c_t, i*s + p_t, j*s + q_t]

    for an active ``o = rows[r]``, and ``bias[o]`` for an ablated one. The Numba kernels
    (``condensed._kernels.conv_rows``, ``conv_backward_rows``) work one image at a time on
    its stride phases, each tap a contiguous shifted vector (see there).

    Parameters
    ----------
    mask : ndarray of shape (C_out, C_in, kh, kw), bool, ``kh == kw`` (as ``nn.Conv2d``)
        Every output channel has ``k >= 1`` active taps or none (ablated); at least one
        is active.
    stride : int >= 1
    padding : int >= 0

    Attributes
    ----------
    conv : nn.Conv2d
        The dense layer of the same geometry (shapes; the dense weight gradient).

    Raises
    ------
    TypeError
        ``mask`` is not a bool array.
    ValueError
        ``mask`` is not 4-D with a square kernel, breaks constant fan-in (the message names
        the first bad output channel) or has no active channel; a bad stride or padding.
    """

    def __init__(self, mask, *, stride: int = 1, padding: int = 0):
        super().__init__(mask, "(C_out, C_in, kh, kw)")
        n_out, n_in, kh, kw = self.shape
        if kh != kw:
            raise ValueError(f"mask.shape == {self.shape}: the kernel must be square "
                             f"(kh == kw), as nn.Conv2d's")
        self.conv = Conv2d(n_in, n_out, kh, stride, padding)
        self._offsets_of = {}               # (H, W) -> _offsets' result, fixed per layer

    def _offsets(self, height: int, width: int):
        """``(offsets, hq, wq)``: the taps' offsets [n_active, k] int64 into the phase
        images of an ``H x W`` input, and the phase image size (``condensed._kernels``);
        computed once per input size."""
        if (height, width) not in self._offsets_of:
            s, pad, k = self.conv.stride, self.conv.padding, self.conv.kernel_size
            hq, wq = -(-(height + 2 * pad) // s), -(-(width + 2 * pad) // s)
            c, tap = np.divmod(self.indices.astype(np.int64), k * k)
            p, q = np.divmod(tap, k)
            offsets = ((c * s + p % s) * s + q % s) * (hq * wq) + (p // s) * wq + q // s
            self._offsets_of[height, width] = (offsets, hq, wq)
        return self._offsets_of[height, width]

    def forward(self, x, values, bias):
        """The convolution of ``x`` with the scatter of ``values`` (ablated channels: bias).

        Parameters
        ----------
        x : ndarray of shape (B, C_in, H, W), float32 or float64 (copied if not
            C-contiguous)
        values : ndarray of shape (n_active, k), dtype of ``x``, C-contiguous
        bias : ndarray of shape (C_out,), dtype of ``x``, C-contiguous

        Returns
        -------
        y : ndarray of shape (B, C_out, oh, ow), dtype of ``x``, C-contiguous
            (``oh = (H + 2*padding - k) // stride + 1``)
        cache : tuple, for ``backward``

        Raises
        ------
        TypeError, ValueError
            ``x`` not a float array of shape (B, C_in, H, W) that fits the kernel;
            ``values``/``bias`` of another shape, dtype or layout.
        """
        x = np.ascontiguousarray(_check_batch("x", x, self.shape[1], ndim=4))
        y_shape = (x.shape[0], *self.conv.output_shape(x.shape[1:]))
        self._check(x.dtype, values, bias)
        offsets, hq, wq = self._offsets(*x.shape[2:])
        y = np.empty(y_shape, dtype=x.dtype)                               # [B, O, oh, ow]
        _kernels.conv_rows(x, values, offsets, self.rows, bias, self.conv.stride,
                           self.conv.padding, hq, wq, y)
        return y, (x, offsets, hq, wq)

    def backward(self, dy, cache, values, *, need_dx: bool = True, dense: bool = False):
        """Gradients of ``forward``: ``dx``, ``dvalues`` (active positions only), ``dbias``
        (every channel) and, if ``dense``, the dense weight gradient at every position.

        Parameters
        ----------
        dy : ndarray of shape (B, C_out, oh, ow), dtype of the forward (copied if not
            C-contiguous)
        cache : the forward's cache
        values : the forward's ``values``
        need_dx : bool
            False skips the input gradient (a first layer's), returning None.
        dense : bool
            Also return the dense weight gradient (docs/algorithm.md §5: only on the steps
            before a topology update), by ``nn.Conv2d.weight_grad``.

        Returns
        -------
        dx : ndarray of shape (B, C_in, H, W) or None
        grads : dict with ``values`` (n_active, k) and ``bias`` (C_out,)
        dweight : ndarray of shape (C_out, C_in, kh, kw), or None
        """
        x, offsets, hq, wq = cache
        dy = np.ascontiguousarray(_check_batch("dy", dy, self.shape[0], ndim=4))
        y_shape = (x.shape[0], *self.conv.output_shape(x.shape[1:]))
        if dy.shape != y_shape or dy.dtype != x.dtype:
            raise ValueError(f"dy is {dy.dtype} {dy.shape}, must be {x.dtype} {y_shape} like "
                             f"the forward's output")
        self._check(x.dtype, values)
        dvalues = np.empty(values.shape, dtype=x.dtype)                   # [n_active, k]
        dx = np.empty(x.shape if need_dx else (1, 1, 1, 1), dtype=x.dtype)  # [B, C, H, W]
        _kernels.conv_backward_rows(x, dy, values, offsets, self.rows, self.conv.stride,
                                    self.conv.padding, hq, wq, dx, dvalues, bool(need_dx))
        dweight = self.conv.weight_grad(x, dy) if dense else None          # [O, C, k, k]
        grads = {"values": dvalues, "bias": dy.sum(axis=(0, 2, 3))}
        return (dx if need_dx else None), grads, dweight


class CondensedEngine(Engine):
    """Trains a model's constant fan-in linear and conv layers in condensed form (module
    docstring).

    Every layer of ``model`` runs as in ``Model.forward``/``backward`` except the weights
    ``names``, which run as ``CondensedTrainLinear`` or ``CondensedTrainConv2d``, and the
    ReLUs of ``[B, F]`` activations, which keep the feature-major layout. The engine owns
    an ``SGD`` with the hyper-parameters of ``optimizer`` over its own parameter dict:
    ``values`` for the condensed weights, the model's very arrays (updated in place) for
    every other parameter, whose momentum buffers are likewise the arrays of
    ``optimizer.momentum_buffers``.

    While the engine trains, ``model.params[name]`` and ``optimizer.momentum_buffers[name]``
    of the condensed weights are stale: ``store()`` writes them; after anything replaced
    entries of ``model.params``, ``optimizer.momentum_buffers`` or the masks (a topology
    update, a checkpoint restore), ``load(masks)`` rebuilds the engine from them.

    Parameters
    ----------
    model : Model
    optimizer : SGD
        The masked engine's optimizer over ``model.params`` (hyper-parameters and buffers).
    masks : dict[str, ndarray of bool]
        At least the masks of ``names`` (constant fan-in).
    names : sequence of str
        Weights to condense: ``Linear`` and ``Conv2d`` weights of ``model``, each with an
        active row.

    Raises
    ------
    TypeError
        ``model``/``optimizer`` of the wrong type.
    ValueError
        A name that is not a Linear or Conv2d weight of ``model`` or has no mask; a mask
        that breaks constant fan-in or has the wrong shape.
    """

    def __init__(self, model: Model, optimizer: SGD, masks: dict, names):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a srigl_ref.nn.Model, got {type(model).__name__}")
        if not isinstance(optimizer, SGD) or optimizer.params is not model.params:
            raise TypeError("optimizer must be the srigl_ref.nn.SGD over model.params")
        allowed = _condensable(model)
        names = list(names)
        for name in names:
            if name not in allowed:
                raise ValueError(f"names contains {name!r}, must hold Linear or Conv2d "
                                 f"weights of the model (one of {sorted(allowed)})")
            if name not in masks:
                raise ValueError(f"masks has no entry for {name!r}")
        self.model, self.optimizer, self.names = model, optimizer, tuple(names)
        self._model_layers = {name: allowed[name] for name in names}
        self.layers: dict[str, CondensedTrainLinear | CondensedTrainConv2d] = {}
        self.params: dict[str, np.ndarray] = dict(model.params)   # replaced by load()
        self._sgd = SGD(self.params, optimizer.lr, momentum=optimizer.momentum,
                        nesterov=optimizer.nesterov, weight_decay=optimizer.weight_decay)
        # index of the first layer with parameters: its input gradient is never needed
        self._first = next(i for i, (_, layer) in enumerate(model.layers)
                           if layer.param_shapes())
        self.load(masks)

    @classmethod
    def for_run(cls, model, optimizer, masks, sparsities) -> "CondensedEngine":
        """The engine of a run: every Linear and Conv2d weight with sparsity > 0
        condensed."""
        return cls(model, optimizer, masks, condensed_names(model, sparsities))

    @property
    def momentum_buffers(self) -> dict[str, np.ndarray]:
        """The engine's buffers: ``[n_active, k]`` for condensed weights, else the model's."""
        return self._sgd.momentum_buffers

    def load(self, masks: dict) -> None:
        """Rebuild from ``model.params``, ``optimizer.momentum_buffers`` and ``masks``.

        Condensed weights: structure from the mask, ``values`` and momentum gathered at the
        active positions (docs/algorithm.md §6: kept weights carry their momentum, grown ones
        have 0 there). Every other parameter and buffer is linked, not copied.
        """
        params, bufs = self.model.params, self.optimizer.momentum_buffers
        new_params, new_bufs = {}, {}
        for name, p in params.items():
            if name in self.names:
                mask = as_mask(f"masks[{name!r}]", masks[name], shape=p.shape)
                layer = _condensed_layer(self._model_layers[name], mask)
                self.layers[name] = layer
                new_params[name] = layer.gather(p)                     # [n_active, k]
                new_bufs[name] = layer.gather(bufs[name])              # [n_active, k]
            else:
                new_params[name], new_bufs[name] = p, bufs[name]
        self.params.clear()
        self.params.update(new_params)          # the dict SGD holds
        self._sgd.momentum_buffers = new_bufs

    def store(self) -> None:
        """Write the dense weights and momentum of the condensed layers into
        ``model.params`` and ``optimizer.momentum_buffers`` (new arrays, 0 off the mask)."""
        for name, layer in self.layers.items():
            self.model.params[name] = layer.scatter(self.params[name])
            self.optimizer.momentum_buffers[name] = layer.scatter(self.momentum_buffers[name])

    def forward(self, x, *, train: bool = True):
        """Logits of a batch, as ``Model.forward`` (same arguments, returns and errors)."""
        model = self.model
        x = as_float_array("x", x, ndim=(len(model.input_shape) + 1,))
        if x.shape[1:] != model.input_shape:
            raise ValueError(f"x.shape == {x.shape}, must be (batch, "
                             f"{', '.join(map(str, model.input_shape))}) for model "
                             f"{model.name!r}")
        if x.dtype != model.dtype:
            raise TypeError(f"x.dtype == {x.dtype}, must be the model's dtype {model.dtype}")
        caches = []
        for lname, layer in model.layers:
            weight = f"{lname}.weight"
            if weight in self.layers:
                x, cache = self.layers[weight].forward(x, self.params[weight],
                                                       self.params[f"{lname}.bias"])
            elif isinstance(layer, ReLU) and x.ndim == 2:   # [B, F]: keeps the layout
                x, cache = np.maximum(x, 0), x > 0
            else:                       # every other layer; ReLU of C-contiguous [B, C, H, W]
                x, cache = layer.forward(x, self._layer_params(lname, layer))
            if train:
                caches.append(cache)
        return np.ascontiguousarray(x), (caches if train else None)

    def _layer_params(self, lname, layer) -> dict[str, np.ndarray]:
        return {key: self.params[f"{lname}.{key}"] for key in layer.param_shapes()}

    def backward(self, dlogits, cache, *, dense: bool = False):
        """Gradients of every engine parameter, and dense weight gradients if asked.

        Parameters
        ----------
        dlogits : ndarray of shape (B, n_classes), the model's dtype
        cache : list, from ``forward(x, train=True)``
        dense : bool
            Also return the dense gradient of every sparse weight (docs/algorithm.md §5):
            for the condensed ones computed only then (``dW = dY^T X``, or
            ``nn.Conv2d.weight_grad``).

        Returns
        -------
        grads : dict[str, ndarray]
            One per ``self.params`` entry, of its shape (``[n_active, k]`` for condensed
            weights), in ``params`` order.
        dense_grads : dict[str, ndarray]
            When ``dense``, ``{name: dW}`` for every ``model.sparse_names`` entry, of the
            weight's dense shape; else empty.
        """
        if not isinstance(cache, list) or len(cache) != len(self.model.layers):
            raise ValueError("cache must be the list returned by forward(x, train=True)")
        grads, dense_grads = {}, {}
        dy = dlogits
        for i in reversed(range(self._first, len(self.model.layers))):
            lname, layer = self.model.layers[i]
            weight = f"{lname}.weight"
            if weight in self.layers:
                dy, g, dw = self.layers[weight].backward(
                    dy, cache[i], self.params[weight], need_dx=i > self._first, dense=dense)
                grads[weight], grads[f"{lname}.bias"] = g["values"], g["bias"]
                if dense:
                    dense_grads[weight] = dw
            elif isinstance(layer, ReLU) and cache[i].ndim == 2:   # the forward's mask
                dy = dy * cache[i]
            else:                           # a first dense layer skips dx, as Model.backward
                skip = i == self._first and isinstance(layer, (Linear, Conv2d))
                dy, g = layer.backward(dy, cache[i], **({"need_dx": False} if skip else {}))
                grads.update({f"{lname}.{key}": v for key, v in g.items()})
        if dense:
            dense_grads = {name: dense_grads[name] if name in dense_grads else grads[name]
                           for name in self.model.sparse_names}
        return {name: grads[name] for name in self.params}, dense_grads

    def step(self, grads: dict, masks: dict, lr: float) -> None:
        """One SGD step (``nn.optim.SGD``'s formulas) on every engine parameter.

        ``masks`` of the condensed weights are ignored (their ``values`` are all active);
        the others (e.g. masked-dense conv weights) apply as in the masked engine.
        """
        self._sgd.step(grads, {n: m for n, m in masks.items() if n not in self.layers},
                       lr=lr)


def condensed_names(model: Model, sparsities) -> list[str]:
    """The weights the condensed engine trains condensed: Linear and Conv2d weights with
    sparsity > 0.

    Parameters
    ----------
    model : Model
    sparsities : sequence of float, one per ``model.sparse_names``
    """
    allowed = _condensable(model)
    return [n for n, s in zip(model.sparse_names, sparsities) if s > 0 and n in allowed]


def _condensable(model: Model) -> dict:
    """``{weight name: layer}`` of the model's Linear and Conv2d layers (top level)."""
    return {f"{lname}.weight": layer for lname, layer in model.layers
            if isinstance(layer, (Linear, Conv2d))}


def _condensed_layer(layer, mask) -> CondensedTrainLinear | CondensedTrainConv2d:
    """The condensed form of ``layer`` (Linear or Conv2d) with weight mask ``mask``."""
    if isinstance(layer, Conv2d):
        return CondensedTrainConv2d(mask, stride=layer.stride, padding=layer.padding)
    return CondensedTrainLinear(mask)


__all__ = ["CondensedEngine", "CondensedTrainConv2d", "CondensedTrainLinear",
           "condensed_names"]
