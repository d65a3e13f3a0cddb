"""Models built from ``layers``: MLP (LeNet-300-100), LeNet-5, a small VGG-style CNN; dense
Kaiming init and the sparse init of docs/algorithm.md §4.

The model interface (the trainer relies on it)
----------------------------------------------
``Model.params : dict[str, ndarray]``
    Every parameter, in model order, PyTorch names (``conv1.weight``, ``conv1.bias``, ...,
    ``fc1.weight``, ``fc1.bias``, ...; conv and linear layers are numbered separately, from
    1), float32 (float64 when built with ``dtype=np.float64``, for gradient checks).
    Entries may be replaced (a topology update does) but keep their shape and dtype.
``Model.sparse_names : list[str]``
    The conv and linear weights, in model order: the sparse-able parameters. Biases are
    dense.
``Model.forward(x, *, train=True) -> (logits, cache)``
    ``x`` [B, *input_shape] of the model's dtype; logits [B, n_classes]. ``train=False``
    returns ``cache=None`` and keeps nothing for a backward (no layer here behaves
    differently in training).
``Model.backward(dlogits, cache) -> dict[str, ndarray]``
    The dense gradient of every parameter (``dW = dY^T X`` at every position, active or
    not), in ``params`` order. The model holds no masks: ``W`` is zero outside the mask
    because the optimizer keeps it so (docs/algorithm.md §5), which makes the masked forward exact.
``Model.state_dict() / load_state_dict(state) / copy()``
    Copies of the parameters / restoring them / an independent model.

``build_model(name, input_shape, n_classes, *, rng, **kwargs)`` builds ``"mlp"``,
``"lenet5"`` or ``"cnn"`` with dense Kaiming-normal weights (std ``sqrt(2/fan_in)``, as
PyTorch's ``kaiming_normal_(mode="fan_in", nonlinearity="relu")``) and zero biases.
``sparse_init(model, sparsities, rng, init=...)`` then draws the masks and re-draws the
sparse weights (docs/algorithm.md §4).
"""
from __future__ import annotations

import math

import numpy as np

from .._validate import (as_float_array, check_choice, check_generator, check_int,
                         check_sparsity)
from ..dst.masks import random_fan_in_mask, random_mask
from ..dst.sparsity import constant_fan_in
from .layers import Conv2d, Flatten, GlobalAvgPool, Layer, Linear, MaxPool2d, ReLU

MODELS = ("mlp", "lenet5", "cnn")
INITS = ("kaiming", "official")
STRUCTURES = ("constant_fan_in", "unstructured")


class Model:
    """A feed-forward stack of named layers and its parameters (see the module docstring).

    Parameters
    ----------
    name : str
    input_shape : tuple of int
        Per-example input shape, e.g. ``(1, 28, 28)``.
    layers : sequence of (str, Layer)
        Named layers in order; parameter ``key`` of layer ``lname`` is ``f"{lname}.{key}"``.
    params : dict[str, ndarray]
        Every layer's parameters under those names (taken over, not copied).
    """

    def __init__(self, name: str, input_shape, layers, params: dict[str, np.ndarray]):
        self.name = name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.layers = tuple(layers)
        shape = self.input_shape
        for _, layer in self.layers:
            shape = layer.output_shape(shape)
        if len(shape) != 1:
            raise ValueError(f"model {name!r} ends in shape {shape}, must end in (n_classes,)")
        self.n_classes = shape[0]
        names = [f"{lname}.{key}" for lname, layer in self.layers for key in layer.param_shapes()]
        if list(params) != names:
            raise ValueError(f"params has names {list(params)}, must be {names} in this order")
        self.params = params
        self.sparse_names = [f"{lname}.weight" for lname, layer in self.layers
                             if isinstance(layer, (Linear, Conv2d))]

    @property
    def dtype(self) -> np.dtype:
        return next(iter(self.params.values())).dtype

    def _layer_params(self, lname: str, layer: Layer) -> dict[str, np.ndarray]:
        return {key: self.params[f"{lname}.{key}"] for key in layer.param_shapes()}

    def forward(self, x, *, train: bool = True):
        """Logits of a batch.

        Parameters
        ----------
        x : ndarray of shape (B, *input_shape), the model's dtype, finite
        train : bool
            Keep the per-layer caches for ``backward``.

        Returns
        -------
        logits : ndarray of shape (B, n_classes), the model's dtype
        cache : list or None
            The per-layer caches (None when ``train`` is False).
        """
        x = as_float_array("x", x, ndim=(len(self.input_shape) + 1,))
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x.shape == {x.shape}, must be (batch, "
                             f"{', '.join(map(str, self.input_shape))}) for model {self.name!r}")
        if x.dtype != self.dtype:
            raise TypeError(f"x.dtype == {x.dtype}, must be the model's dtype {self.dtype}")
        caches = []
        for lname, layer in self.layers:
            x, cache = layer.forward(x, self._layer_params(lname, layer))
            if train:
                caches.append(cache)
        return x, (caches if train else None)

    def backward(self, dlogits, cache) -> dict[str, np.ndarray]:
        """Dense gradients of every parameter from ``dL/dlogits``.

        Parameters
        ----------
        dlogits : ndarray of shape (B, n_classes), the model's dtype
        cache : list, from ``forward(x, train=True)``

        Returns
        -------
        dict[str, ndarray]
            One gradient per parameter, in ``params`` order, shapes and dtype of ``params``.
        """
        if not isinstance(cache, list) or len(cache) != len(self.layers):
            raise ValueError("cache must be the list returned by forward(x, train=True)")
        grads = {}
        dy = dlogits
        # The model's input needs no gradient: the first layer with parameters skips its
        # input gradient (as PyTorch skips it for an input that does not require one) and
        # the parameter-free layers before it are not run backward at all.
        first = next((i for i, (_, layer) in enumerate(self.layers) if layer.param_shapes()),
                     len(self.layers))
        for i in range(len(self.layers) - 1, first - 1, -1):
            lname, layer = self.layers[i]
            if i == first and isinstance(layer, (Linear, Conv2d)):
                dy, layer_grads = layer.backward(dy, cache[i], need_dx=False)
            else:
                dy, layer_grads = layer.backward(dy, cache[i])
            for key, g in layer_grads.items():
                grads[f"{lname}.{key}"] = g
        return {name: grads[name] for name in self.params}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, in model order."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state) -> None:
        """Replace every parameter by a copy of ``state[name]`` (same names, shapes, dtype)."""
        if not isinstance(state, dict) or list(state) != list(self.params):
            got = list(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state has names {got}, must be {list(self.params)}")
        new = {}
        for name, p in self.params.items():
            a = as_float_array(f"state[{name!r}]", state[name], shape=p.shape)
            if a.dtype != p.dtype:
                raise TypeError(f"state[{name!r}].dtype == {a.dtype}, must be {p.dtype}")
            new[name] = a.copy()
        self.params.update(new)

    def copy(self) -> "Model":
        """An independent model with copied parameters."""
        return Model(self.name, self.input_shape, self.layers, self.state_dict())


def _build(name, input_shape, layers, rng, dtype) -> Model:
    """Kaiming-normal weights (std ``sqrt(2/fan_in)``) and zero biases, in model order."""
    check_generator("rng", rng)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype == {dtype}, must be float32 or float64")
    params = {}
    for lname, layer in layers:
        for key, shape in layer.param_shapes().items():
            if key == "weight":
                std = math.sqrt(2.0 / math.prod(shape[1:]))
                params[f"{lname}.{key}"] = (rng.standard_normal(shape) * std).astype(dtype)
            else:
                params[f"{lname}.{key}"] = np.zeros(shape, dtype)
    return Model(name, input_shape, layers, params)


def _input_shape(input_shape, ndim: int | None = None) -> tuple[int, ...]:
    shape = tuple(check_int(f"input_shape[{i}]", s, low=1) for i, s in enumerate(input_shape))
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"input_shape == {shape}, must be (channels, height, width)")
    return shape


def mlp(input_shape=(1, 28, 28), n_classes=10, *, rng, hidden=(300, 100), dtype=np.float32):
    """Multi-layer perceptron ``flatten -> [fc -> relu] * len(hidden) -> fc``.

    The default is LeNet-300-100 (784-300-100-10). Parameters ``fc1.weight`` [hidden[0],
    prod(input_shape)], ``fc1.bias``, ..., ``fc{n+1}.weight`` [n_classes, hidden[-1]].

    Parameters
    ----------
    input_shape : tuple of int
        Per-example shape (any; flattened in C order).
    n_classes : int >= 2
    rng : numpy.random.Generator
    hidden : sequence of int
        Hidden widths (may be empty: a linear classifier).
    dtype : float32 or float64

    Returns
    -------
    Model
    """
    shape = _input_shape(input_shape)
    widths = [math.prod(shape)]
    widths += [check_int(f"hidden[{i}]", h, low=1) for i, h in enumerate(hidden)]
    widths.append(check_int("n_classes", n_classes, low=2))
    layers = [("flatten", Flatten())]
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:]), start=1):
        if i > 1:
            layers.append((f"relu{i - 1}", ReLU()))
        layers.append((f"fc{i}", Linear(n_in, n_out)))
    return _build("mlp", shape, layers, rng, dtype)


def lenet5(input_shape=(1, 28, 28), n_classes=10, *, rng, dtype=np.float32):
    """LeNet-5 for 28x28 inputs: ``conv1`` 6x5x5 (padding 2) -> relu -> maxpool 2 ->
    ``conv2`` 16x5x5 -> relu -> maxpool 2 -> flatten (400) -> ``fc1`` 120 -> relu ->
    ``fc2`` 84 -> relu -> ``fc3`` n_classes.

    Weight shapes for (1, 28, 28): [6, 1, 5, 5], [16, 6, 5, 5], [120, 400], [84, 120],
    [n_classes, 84] (those of ``tests/golden/distributions.json``). Other input sizes work
    when the image survives the two pools (``fc1``'s fan-in follows).
    """
    shape = _input_shape(input_shape, 3)
    features = [("conv1", Conv2d(shape[0], 6, 5, padding=2)), ("relu1", ReLU()),
                ("pool1", MaxPool2d(2)),
                ("conv2", Conv2d(6, 16, 5)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
                ("flatten", Flatten())]
    n_flat = _out_features(features, shape)
    head = [("fc1", Linear(n_flat, 120)), ("relu3", ReLU()), ("fc2", Linear(120, 84)),
            ("relu4", ReLU()), ("fc3", Linear(84, check_int("n_classes", n_classes, low=2)))]
    return _build("lenet5", shape, features + head, rng, dtype)


def cnn(input_shape=(1, 28, 28), n_classes=10, *, rng, channels=(32, 64), hidden=128,
        dtype=np.float32):
    """Small VGG-style CNN for 28x28x1 and 32x32x3 inputs.

    Per stage ``s`` with width ``channels[s]``: two 3x3 convolutions (padding 1), each
    followed by relu, then a 2x2 max pool. Then global average pooling, ``fc1``
    (``channels[-1]`` -> ``hidden``) -> relu -> ``fc2`` (-> n_classes). Convolutions are
    numbered ``conv1``, ``conv2``, ... in order. Default: conv 32, 32, pool, 64, 64, pool,
    GAP, fc 64 -> 128 -> 10.
    """
    shape = _input_shape(input_shape, 3)
    widths = [shape[0]] + [check_int(f"channels[{i}]", c, low=1)
                           for i, c in enumerate(channels)]
    if len(widths) < 2:
        raise ValueError(f"channels == {tuple(channels)}, must hold at least one stage width")
    layers, n_conv = [], 0
    for stage, (c_in, c_out) in enumerate(zip(widths, widths[1:]), start=1):
        for c in (c_in, c_out):
            n_conv += 1
            layers += [(f"conv{n_conv}", Conv2d(c, c_out, 3, padding=1)),
                       (f"relu{n_conv}", ReLU())]
        layers.append((f"pool{stage}", MaxPool2d(2)))
    layers += [("gap", GlobalAvgPool()),
               ("fc1", Linear(widths[-1], check_int("hidden", hidden, low=1))),
               (f"relu{n_conv + 1}", ReLU()),
               ("fc2", Linear(hidden, check_int("n_classes", n_classes, low=2)))]
    _out_features(layers, shape)
    return _build("cnn", shape, layers, rng, dtype)


def _out_features(layers, input_shape) -> int:
    """Per-example output size of ``layers`` (raises if an input is too small for them)."""
    shape = input_shape
    for _, layer in layers:
        shape = layer.output_shape(shape)
    return math.prod(shape)


_BUILDERS = {"mlp": mlp, "lenet5": lenet5, "cnn": cnn}


def build_model(name, input_shape, n_classes, *, rng, **kwargs) -> Model:
    """Build model ``name`` (one of ``MODELS``) with dense Kaiming init.

    Parameters
    ----------
    name : {"mlp", "lenet5", "cnn"}
    input_shape : tuple of int
        Per-example shape, ``(C, H, W)`` (``mlp`` accepts any).
    n_classes : int >= 2
    rng : numpy.random.Generator
    **kwargs
        Passed to the builder (``hidden``, ``channels``, ``dtype``).

    Returns
    -------
    Model
    """
    check_choice("name", name, MODELS)
    return _BUILDERS[name](input_shape, n_classes, rng=rng, **kwargs)


def sparse_init(model: Model, sparsities, rng, init="kaiming", *,
                structure="constant_fan_in") -> dict[str, np.ndarray]:
    """Draw masks for ``model.sparse_names``, re-draw those weights sparse (docs/algorithm.md §4).

    Layer by layer, in model order: the mask (``constant_fan_in``: exactly
    ``k0 = B // out`` active inputs per row, ``random_fan_in_mask``; ``unstructured``: the
    RigL baseline's ``N - int(S*N)`` positions over the layer, ``random_mask``; sparsity 0:
    all True, no draw), then ``W = N(0, 1) * std_i`` with ``std_i = sqrt(2 / fan_in_i)``
    (``init="kaiming"``) or ``2 / fan_in_i`` (``init="official"``, the authors'
    ``grad_flow_init`` quirk), ``fan_in_i`` the row's active count, and ``W *= M``.

    The model's sparse weight arrays are replaced (new arrays in ``model.params``); biases
    and the arrays the caller held are untouched.

    Parameters
    ----------
    model : Model
    sparsities : sequence of float in [0, 1)
        One per ``model.sparse_names`` entry (``layer_sparsities`` output).
    rng : numpy.random.Generator
    init : {"kaiming", "official"}
    structure : {"constant_fan_in", "unstructured"}

    Returns
    -------
    dict[str, ndarray of bool]
        ``{name: mask}`` for every sparse name, masks of the weights' shapes.

    Raises
    ------
    ValueError
        Wrong number of sparsities, a sparsity outside [0, 1), or ``k0 == 0``.
    """
    check_generator("rng", rng)
    check_choice("init", init, INITS)
    check_choice("structure", structure, STRUCTURES)
    sparsities = list(sparsities)
    if len(sparsities) != len(model.sparse_names):
        raise ValueError(f"len(sparsities) == {len(sparsities)}, must be "
                         f"{len(model.sparse_names)} (one per sparse layer "
                         f"{model.sparse_names})")
    masks = {}
    for name, s in zip(model.sparse_names, sparsities):
        s = check_sparsity(f"sparsities[{name!r}]", s)
        shape = model.params[name].shape
        if s == 0.0:
            mask = np.ones(shape, np.bool_)
        elif structure == "constant_fan_in":
            mask = random_fan_in_mask(shape, constant_fan_in(shape, s), rng)
        else:
            mask = random_mask(shape, s, rng)
        fan = mask.reshape(shape[0], -1).sum(axis=1)                 # [out] int64
        fan = np.maximum(fan, 1).astype(np.float64)                  # empty rows get no weight
        std = np.sqrt(2.0 / fan) if init == "kaiming" else 2.0 / fan
        std = std.reshape((-1,) + (1,) * (len(shape) - 1))
        weight = rng.standard_normal(shape) * std * mask
        model.params[name] = weight.astype(model.dtype)
        masks[name] = mask
    return masks
