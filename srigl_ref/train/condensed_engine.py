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

Activations between condensed layers are feature-major (``[B, F]`` arrays that are
F-contiguous, i.e. ``xT [F, B]`` C-contiguous), the layout the kernels read: a condensed
layer's output feeds the ReLU and the next condensed layer without a transpose.

Convolutions stay masked-dense in this engine: a condensed convolution would gather ``k``
of the ``C_in*kh*kw`` im2col rows per output channel, but the im2col matrix itself (and the
col2im of the backward) is built densely whatever the density, and it is most of a conv
layer's memory traffic here (bench/README.md, "## train_step"); its GEMM has only 32-64
output rows, so skipping the inactive columns would save little. The done criteria of
this engine are MLP-only. Dense layers (sparsity 0, e.g. the classifier under ERK) also stay
as they are.

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
from ..nn.layers import Linear, ReLU
from ..nn.models import Model
from ..nn.optim import SGD
from .engine import Engine


class CondensedTrainLinear:
    """The structure of one constant fan-in linear layer being trained, from its mask.

    Holds what stays fixed between topology updates (active neurons, their inputs); the
    trained arrays (``values``, ``bias``) are passed to ``forward``/``backward``, so that an
    optimizer can own them.

    Parameters
    ----------
    mask : ndarray of shape (out, in), bool
        Every row has ``k >= 1`` True entries or none (an ablated neuron); at least one
        row is active.

    Attributes
    ----------
    shape : tuple (out, in)
    rows : ndarray of shape (n_active,), int64
        The active neurons, ascending.
    indices : ndarray of shape (n_active, k), int32
        Their active inputs, ascending per row.

    Raises
    ------
    TypeError
        ``mask`` is not a bool array.
    ValueError
        ``mask`` is not 2-D, breaks constant fan-in (the message names the first bad
        row), or has no active row.
    """

    def __init__(self, mask):
        mask = as_mask("mask", mask)
        if mask.ndim != 2:
            raise ValueError(f"mask.shape == {mask.shape}, must be (out, in)")
        k = check_constant_fan_in(mask)
        rows = np.flatnonzero(mask.any(axis=1))                            # [n_active] int64
        if rows.size == 0:
            raise ValueError(f"mask of shape {mask.shape} has no active row; a condensed "
                             f"layer needs at least one")
        self.shape = mask.shape
        self.rows = rows
        self.indices = np.nonzero(mask[rows])[1].reshape(rows.size, k).astype(np.int32)
        self._index = narrow_index(self.indices, mask.shape[1])           # [n_active, k]

    @property
    def n_active(self) -> int:
        return self.rows.size

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def __repr__(self) -> str:
        return f"CondensedTrainLinear(shape={self.shape}, k={self.k}, n_active={self.n_active})"

    def gather(self, dense: np.ndarray) -> np.ndarray:
        """The entries of a dense ``[out, in]`` array at the active positions.

        Returns
        -------
        ndarray of shape (n_active, k), dtype of ``dense``, C-contiguous (a new array)
        """
        return dense.reshape(self.shape)[self.rows[:, None], self.indices]

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """The dense ``[out, in]`` array: ``values`` at the active positions, 0 elsewhere."""
        dense = np.zeros(self.shape, dtype=values.dtype)                   # [out, in]
        dense[self.rows[:, None], self.indices] = values
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


def _check_batch(name: str, x, width: int) -> np.ndarray:
    """``x`` must be a float32/float64 ndarray of shape (B, width), B >= 1 (layout kept)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}.dtype == {x.dtype}, must be float32 or float64")
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] == 0:
        raise ValueError(f"{name}.shape == {x.shape}, must be (B, {width}) with B >= 1")
    return x


class CondensedEngine(Engine):
    """Trains a model's constant fan-in linear layers in condensed form (module docstring).

    Every layer of ``model`` runs as in ``Model.forward``/``backward`` except the weights
    ``names``, which run as ``CondensedTrainLinear``, and the ReLUs, which keep the
    feature-major layout. The engine owns an ``SGD`` with the hyper-parameters of
    ``optimizer`` over its own parameter dict: ``values`` for the condensed weights, the
    model's very arrays (updated in place) for every other parameter, whose momentum
    buffers are likewise the arrays of ``optimizer.momentum_buffers``.

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
        Weights to condense: ``Linear`` weights of ``model``, each with an active row.

    Raises
    ------
    TypeError
        ``model``/``optimizer`` of the wrong type.
    ValueError
        A name that is not a Linear weight of ``model`` or has no mask; a mask that breaks
        constant fan-in or has the wrong shape.
    """

    def __init__(self, model: Model, optimizer: SGD, masks: dict, names):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a srigl_ref.nn.Model, got {type(model).__name__}")
        if not isinstance(optimizer, SGD) or optimizer.params is not model.params:
            raise TypeError("optimizer must be the srigl_ref.nn.SGD over model.params")
        linear = {f"{lname}.weight" for lname, layer in model.layers
                  if isinstance(layer, Linear)}
        names = list(names)
        for name in names:
            if name not in linear:
                raise ValueError(f"names contains {name!r}, must hold Linear weights of the "
                                 f"model (one of {sorted(linear)})")
            if name not in masks:
                raise ValueError(f"masks has no entry for {name!r}")
        self.model, self.optimizer, self.names = model, optimizer, tuple(names)
        self.layers: dict[str, CondensedTrainLinear] = {}
        self.params: dict[str, np.ndarray] = dict(model.params)   # replaced by load()
        self._sgd = SGD(self.params, optimizer.lr, momentum=optimizer.momentum,
                        nesterov=optimizer.nesterov, weight_decay=optimizer.weight_decay)
        # index of the first layer with parameters: its input gradient is never needed
        self._first = next(i for i, (_, layer) in enumerate(model.layers)
                           if layer.param_shapes())
        self.load(masks)

    @classmethod
    def for_run(cls, model, optimizer, masks, sparsities) -> "CondensedEngine":
        """The engine of a run: every Linear weight with sparsity > 0 condensed."""
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
                layer = CondensedTrainLinear(mask)
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
            elif isinstance(layer, ReLU):
                x, cache = np.maximum(x, 0), x > 0          # keeps the layout
            else:
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
            ``dW = dY^T X`` for the condensed ones (computed only then).

        Returns
        -------
        grads : dict[str, ndarray]
            One per ``self.params`` entry, of its shape (``[n_active, k]`` for condensed
            weights), in ``params`` order.
        dense_grads : dict[str, ndarray]
            When ``dense``, ``{name: dW}`` for every ``model.sparse_names`` entry, of the
            weight's dense shape (``[out, in]`` for the condensed weights); else empty.
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
            elif isinstance(layer, ReLU):
                dy = dy * cache[i]
            else:
                dy, g = layer.backward(dy, cache[i])
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
    """The weights the condensed engine trains condensed: Linear weights with sparsity > 0.

    Parameters
    ----------
    model : Model
    sparsities : sequence of float, one per ``model.sparse_names``
    """
    linear = {f"{lname}.weight" for lname, layer in model.layers if isinstance(layer, Linear)}
    return [n for n, s in zip(model.sparse_names, sparsities) if s > 0 and n in linear]


__all__ = ["CondensedEngine", "CondensedTrainLinear", "condensed_names"]
