"""Models built from ``layers``: MLP (LeNet-300-100), LeNet-5, a small VGG-style CNN, the
CIFAR ResNets (ResNet-20, ResNet-18); dense initialisation and the sparse init of
docs/algorithm.md §4.

The model interface (the trainer relies on it)
----------------------------------------------
``Model.params : dict[str, ndarray]``
    Every trainable parameter, in model order, PyTorch names (``conv1.weight``,
    ``conv1.bias``, ..., ``fc1.weight``, ``fc1.bias``, ...; conv and linear layers are
    numbered separately, from 1; the ResNets use the names of the authors' CIFAR ResNet,
    ``bn1.weight``, ``layer1.0.conv1.weight``, ..., ``linear.weight``), float32 (float64
    when built with ``dtype=np.float64``, for gradient checks). Entries may be replaced (a
    topology update does) but keep their shape and dtype.
``Model.buffers : dict[str, ndarray]``
    Non-trainable state: the BatchNorm running statistics (``bn1.running_mean``,
    ``bn1.running_var``, ...); empty for models without BatchNorm.
``Model.sparse_names : list[str]``
    The conv and linear weights, in model order: the sparse-able parameters. Biases and
    BatchNorm parameters are dense.
``Model.forward(x, *, train=True) -> (logits, cache)``
    ``x`` [B, *input_shape] of the model's dtype; logits [B, n_classes]. ``train=True``
    keeps the per-layer caches for a backward and runs BatchNorm in training mode (batch
    statistics; ``buffers`` are replaced by the updated running statistics);
    ``train=False`` is evaluation: running statistics, ``cache=None``.
``Model.backward(dlogits, cache) -> dict[str, ndarray]``
    The dense gradient of every parameter (``dW = dY^T X`` at every position, active or
    not), in ``params`` order. The model holds no masks: ``W`` is zero outside the mask
    because the optimizer keeps it so (docs/algorithm.md §5), which makes the masked
    forward exact.
``Model.state_dict() / load_state_dict(state) / copy()``
    Copies of the parameters and buffers (named by ``Model.state_names``: layer by layer,
    PyTorch's order) / restoring them / an independent model. Checkpoints store the
    whole state, so a resumed run continues with the same running statistics.

``build_model(name, input_shape, n_classes, *, rng, init=..., **kwargs)`` draws the dense
weights (``dense_init``: ``"kaiming"`` normal or PyTorch's default ``"torch_default"``; the
model's own default is in ``MODEL_DEFAULTS``), BatchNorm weights 1 and biases 0.
``sparse_init(model, sparsities, rng, init=..., dense_init=...)`` then draws the masks
and re-draws the sparse weights (docs/algorithm.md §4).
"""
from __future__ import annotations

import math

import numpy as np

from .._validate import (as_float_array, check_choice, check_generator, check_int,
                         check_sparsity)
from ..dst.masks import random_fan_in_mask, random_mask
from ..dst.sparsity import constant_fan_in
from .layers import (BasicBlock, BatchNorm1d, BatchNorm2d, BiasFreeConv2d, Conv2d, Flatten,
                     GlobalAvgPool, Layer, Linear, MaxPool2d, ReLU)

MODELS = ("mlp", "lenet5", "cnn", "resnet20", "resnet18")
DENSE_INITS = ("kaiming", "torch_default")
SPARSE_INITS = ("fan_in", "official", "mask")
STRUCTURES = ("constant_fan_in", "unstructured")

#: Per-model training defaults: the dense initialisation (``init``, ``dense_init``), the
#: peak learning rate (``lr``) and the linear warm-up (``warmup_epochs``, capped at
#: ``epochs - 1``) each model trains reliably with; the trainer takes them when its
#: ``init``/``lr``/``warmup_epochs`` are None.
#: LeNet-5 and the ResNets use PyTorch's default layer initialisation, which the authors'
#: models get for every layer they do not re-initialise. LeNet-5 and the CNN have
#: no BatchNorm: at lr 0.1 without warm-up LeNet-5 died (chance accuracy) in 3 seeds of 5
#: with Kaiming normal and 1 of 5 with PyTorch's init, in none with one warm-up epoch
#: (README "Model defaults"). The CNN (six weighted layers, global average pooling, no
#: BatchNorm) collapsed to chance in its first epoch at lr 0.1 even with the warm-up
#: (either init); with PyTorch's init its signal shrinks layer by layer and it learns
#: slowly (62-70 % test accuracy after 3 epochs of 20000 examples at lr 0.02, 2 seeds),
#: with Kaiming normal at lr 0.05 it reaches 85 % there. The MLP keeps Kaiming normal,
#: lr 0.1 and no warm-up
#: (docs/algorithm.md §4); the ResNets have BatchNorm and no warm-up, as the authors'
#: CIFAR-10 configuration (``warm_up_steps: 0``).
MODEL_DEFAULTS = {
    "mlp": {"init": "kaiming", "lr": 0.1, "warmup_epochs": 0},
    "lenet5": {"init": "torch_default", "lr": 0.1, "warmup_epochs": 1},
    "cnn": {"init": "kaiming", "lr": 0.05, "warmup_epochs": 1},
    "resnet20": {"init": "torch_default", "lr": 0.1, "warmup_epochs": 0},
    "resnet18": {"init": "torch_default", "lr": 0.1, "warmup_epochs": 0},
}

_STATEFUL = (BatchNorm1d, BatchNorm2d, BasicBlock)


def _buffer_shapes(layer) -> dict[str, tuple[int, ...]]:
    return layer.buffer_shapes() if isinstance(layer, _STATEFUL) else {}


def _sparse_keys(layer) -> list[str]:
    """Keys of the layer's sparse-able weights: conv and linear weights, never BatchNorm."""
    if isinstance(layer, (Linear, Conv2d, BiasFreeConv2d)):
        return ["weight"]
    if isinstance(layer, BasicBlock):
        return [f"{name}.weight" for name, sub in layer.sublayers
                if isinstance(sub, BiasFreeConv2d)]
    return []


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
    buffers : dict[str, ndarray] or None
        Every layer's running statistics, named the same way (taken over; None: no layer
        has any).
    """

    def __init__(self, name: str, input_shape, layers, params: dict[str, np.ndarray],
                 buffers: dict[str, np.ndarray] | None = None):
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
        buffers = {} if buffers is None else buffers
        buffer_names = [f"{lname}.{key}" for lname, layer in self.layers
                        for key in _buffer_shapes(layer)]
        if list(buffers) != buffer_names:
            raise ValueError(f"buffers has names {list(buffers)}, must be {buffer_names} in "
                             f"this order")
        self.params = params
        self.buffers = buffers
        self.sparse_names = [f"{lname}.{key}" for lname, layer in self.layers
                             for key in _sparse_keys(layer)]
        #: names of ``state_dict()``: layer by layer (a block's sub-layers one by one),
        #: parameters then buffers: PyTorch's order without ``num_batches_tracked``
        self.state_names = [f"{lname}.{key}" for lname, layer in _leaf_layers(self.layers)
                            for key in [*layer.param_shapes(), *_buffer_shapes(layer)]]

    @property
    def dtype(self) -> np.dtype:
        return next(iter(self.params.values())).dtype

    def _layer_params(self, lname: str, layer: Layer) -> dict[str, np.ndarray]:
        return {key: self.params[f"{lname}.{key}"] for key in layer.param_shapes()}

    def _layer_buffers(self, lname: str, layer: Layer) -> dict[str, np.ndarray]:
        return {key: self.buffers[f"{lname}.{key}"] for key in layer.buffer_shapes()}

    def forward(self, x, *, train: bool = True):
        """Logits of a batch.

        Parameters
        ----------
        x : ndarray of shape (B, *input_shape), the model's dtype, finite
        train : bool
            Training mode: keep the per-layer caches for ``backward``; BatchNorm uses the
            batch statistics and ``buffers`` get the updated running statistics.
            Evaluation mode (False): running statistics, nothing kept or updated.

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
            params = self._layer_params(lname, layer)
            if isinstance(layer, _STATEFUL):
                x, cache, new = layer.forward(x, params, self._layer_buffers(lname, layer),
                                              train=train)
                self.buffers.update({f"{lname}.{key}": b for key, b in new.items()})
            else:
                x, cache = layer.forward(x, params)
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
        """Copies of the parameters and buffers, layer by layer (parameters first)."""
        return {name: self._state_array(name).copy() for name in self.state_names}

    def _state_array(self, name: str) -> np.ndarray:
        return self.params[name] if name in self.params else self.buffers[name]

    def load_state_dict(self, state) -> None:
        """Replace every parameter and buffer by a copy of ``state[name]`` (the names of
        ``state_dict()`` in its order, same shapes and dtype)."""
        if not isinstance(state, dict) or list(state) != self.state_names:
            got = list(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state has names {got}, must be {self.state_names}")
        new = {}
        for name in self.state_names:
            p = self._state_array(name)
            a = as_float_array(f"state[{name!r}]", state[name], shape=p.shape)
            if a.dtype != p.dtype:
                raise TypeError(f"state[{name!r}].dtype == {a.dtype}, must be {p.dtype}")
            new[name] = a.copy()
        self.params.update({n: a for n, a in new.items() if n in self.params})
        self.buffers.update({n: a for n, a in new.items() if n in self.buffers})

    def copy(self) -> "Model":
        """An independent model with copied parameters and buffers."""
        return Model(self.name, self.input_shape, self.layers,
                     {n: p.copy() for n, p in self.params.items()},
                     {n: b.copy() for n, b in self.buffers.items()})


def _build(name, input_shape, layers, rng, dtype, init) -> Model:
    """Parameters and buffers of ``layers`` in model order: conv and linear layers drawn by
    ``dense_init(init)``, BatchNorm weight 1, bias 0, running mean 0, running variance 1
    (PyTorch's)."""
    check_generator("rng", rng)
    check_choice("init", init, DENSE_INITS)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype == {dtype}, must be float32 or float64")
    params, buffers = {}, {}
    for lname, layer in _leaf_layers(layers):
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            values = {"weight": np.ones(layer.num_features), "bias": np.zeros(layer.num_features)}
            buffers.update({f"{lname}.running_mean": np.zeros(layer.num_features, dtype),
                            f"{lname}.running_var": np.ones(layer.num_features, dtype)})
        elif layer.param_shapes():
            values = dense_init(layer.param_shapes(), rng, init)
        else:
            continue
        params.update({f"{lname}.{key}": a.astype(dtype) for key, a in values.items()})
    return Model(name, input_shape, layers, params, buffers)


def _leaf_layers(layers):
    """``(name, layer)`` with each residual block replaced by its named sub-layers."""
    for lname, layer in layers:
        if isinstance(layer, BasicBlock):
            yield from ((f"{lname}.{sub_name}", sub) for sub_name, sub in layer.sublayers)
        else:
            yield lname, layer


def dense_init(shapes: dict, rng, init: str = "kaiming") -> dict[str, np.ndarray]:
    """Dense initial values of one conv or linear layer's ``weight`` (and ``bias``).

    ``fan_in = prod(weight.shape[1:])`` (``in_features``, or ``C_in * kh * kw``).

    - ``"kaiming"``: ``weight ~ N(0, 2 / fan_in)`` (PyTorch's ``kaiming_normal_(mode=
      "fan_in", nonlinearity="relu")``), ``bias = 0``.
    - ``"torch_default"``: PyTorch's default ``Linear``/``Conv2d`` initialisation,
      ``kaiming_uniform_(weight, a=sqrt(5))``: ``weight ~ U(-b, b)`` with
      ``b = gain * sqrt(3 / fan_in)`` and ``gain = sqrt(2 / (1 + a^2))``, hence
      ``b = 1 / sqrt(fan_in)``; ``bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    The weight is drawn first, then the bias (PyTorch's order).

    Parameters
    ----------
    shapes : dict[str, tuple of int]
        ``{"weight": (out, ...)}``, optionally ``"bias": (out,)`` after it.
    rng : numpy.random.Generator
    init : {"kaiming", "torch_default"}

    Returns
    -------
    dict[str, ndarray of float64]
        The keys of ``shapes``, in its order.
    """
    check_choice("init", init, DENSE_INITS)
    fan_in = math.prod(shapes["weight"][1:])
    values = {}
    for key, shape in shapes.items():
        if init == "torch_default":
            bound = 1.0 / math.sqrt(fan_in)
            values[key] = rng.uniform(-bound, bound, shape)
        elif key == "weight":
            values[key] = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
        else:
            values[key] = np.zeros(shape)
    return values


def _input_shape(input_shape, ndim: int | None = None) -> tuple[int, ...]:
    shape = tuple(check_int(f"input_shape[{i}]", s, low=1) for i, s in enumerate(input_shape))
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"input_shape == {shape}, must be (channels, height, width)")
    return shape


def mlp(input_shape=(1, 28, 28), n_classes=10, *, rng, hidden=(300, 100), dtype=np.float32,
        init=MODEL_DEFAULTS["mlp"]["init"]):
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
    init : {"kaiming", "torch_default"}
        Dense initialisation (``dense_init``).

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
    return _build("mlp", shape, layers, rng, dtype, init)


def lenet5(input_shape=(1, 28, 28), n_classes=10, *, rng, dtype=np.float32,
           init=MODEL_DEFAULTS["lenet5"]["init"]):
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
    return _build("lenet5", shape, features + head, rng, dtype, init)


def cnn(input_shape=(1, 28, 28), n_classes=10, *, rng, channels=(32, 64), hidden=128,
        dtype=np.float32, init=MODEL_DEFAULTS["cnn"]["init"]):
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
    return _build("cnn", shape, layers, rng, dtype, init)


def resnet20(input_shape=(3, 32, 32), n_classes=10, *, rng, channels=(16, 32, 64), blocks=3,
             dtype=np.float32, init=MODEL_DEFAULTS["resnet20"]["init"]):
    """ResNet-20, He et al. 2016's CIFAR ResNet (section 4.2): a 3x3 stem (``conv1`` to
    ``channels[0]``, ``bn1``, relu), three stages of ``blocks`` ``BasicBlock``s with
    16/32/64 channels (the first block of stages 2 and 3 halves the size with stride 2),
    global average pooling and ``linear`` (64 -> n_classes): 6 * blocks + 2 = 20 weighted
    layers, 0.27 M parameters. Shortcuts that change the shape are 1x1 projections with
    BatchNorm (option B; the paper's CIFAR nets use zero-padding, option A, which has no
    parameters), as in ``BasicBlock``.

    Accepts any ``(C, H, W)`` input (1 channel for Fashion-MNIST, 3 for CIFAR-10); the
    pooling is global, so 28x28 and 32x32 both work.

    Parameters
    ----------
    input_shape : (C, H, W)
    n_classes : int >= 2
    rng : numpy.random.Generator
    channels : sequence of int
        Width of each stage.
    blocks : int >= 1
        Residual blocks per stage.
    dtype : float32 or float64
    init : {"kaiming", "torch_default"}
        Dense initialisation of the conv and linear layers (``dense_init``).

    Returns
    -------
    Model
    """
    return _resnet("resnet20", input_shape, n_classes, rng, channels, blocks, dtype, init)


def resnet18(input_shape=(3, 32, 32), n_classes=10, *, rng, channels=(64, 128, 256, 512),
             blocks=2, dtype=np.float32, init=MODEL_DEFAULTS["resnet18"]["init"]):
    """ResNet-18 in the CIFAR form the SRigL paper trains (the authors' ``ResNet18`` in
    ``rigl_torch/models/resnet.py``, after kuangliu/pytorch-cifar): a 3x3 stride-1 stem
    (``conv1`` 64, ``bn1``, relu; no max pool), four stages of two ``BasicBlock``s with
    64/128/256/512 channels (stride 2 from stage 2 on), global average pooling (their
    ``avg_pool2d(out, 4)`` on the 4x4 map of a 32x32 input) and ``linear`` (512 ->
    n_classes); 11.17 M parameters for 3x32x32 inputs and 10 classes.

    Sparsity settings of the authors for ResNet-18 on CIFAR-10 (``configs/config.yaml``,
    ``configs/rigl/resnet18.yaml``, ``rigl_torch/rigl_scheduler.py``,
    ``rigl_torch/rigl_constant_fan.py``, ``rigl_torch/utils/rigl_utils.py`` of
    calgaryml/condensed-sparsity): every Conv2d and Linear weight is sparsified with ERK,
    the stem ``conv1``, the 1x1 shortcuts and the classifier included
    (``keep_first_layer_dense`` is False, ``ignore_linear_layers`` False; only ERK itself
    makes a layer dense, docs/algorithm.md §2); BatchNorm layers are excluded; neuron
    ablation skips the last layer, the classifier (``no_ablation_module_names`` unset).
    These are the trainer's defaults (``dense_layers=()``, ``exempt_last_layer=True``).

    Parameters as ``resnet20``.
    """
    return _resnet("resnet18", input_shape, n_classes, rng, channels, blocks, dtype, init)


def _resnet(name, input_shape, n_classes, rng, channels, blocks, dtype, init) -> Model:
    """stem -> stages of BasicBlocks -> global average pool -> linear."""
    shape = _input_shape(input_shape, 3)
    widths = [check_int(f"channels[{i}]", c, low=1) for i, c in enumerate(channels)]
    if not widths:
        raise ValueError(f"channels == {tuple(channels)}, must hold at least one stage width")
    check_int("blocks", blocks, low=1)
    layers = [("conv1", BiasFreeConv2d(shape[0], widths[0], 3, 1, 1)),
              ("bn1", BatchNorm2d(widths[0])), ("relu1", ReLU())]
    c_in = widths[0]
    for stage, c_out in enumerate(widths, start=1):
        for i in range(blocks):
            stride = 2 if stage > 1 and i == 0 else 1
            layers.append((f"layer{stage}.{i}", BasicBlock(c_in, c_out, stride)))
            c_in = c_out
    layers += [("gap", GlobalAvgPool()),
               ("linear", Linear(c_in, check_int("n_classes", n_classes, low=2)))]
    _out_features(layers, shape)
    return _build(name, shape, layers, rng, dtype, init)


def _out_features(layers, input_shape) -> int:
    """Per-example output size of ``layers`` (raises if an input is too small for them)."""
    shape = input_shape
    for _, layer in layers:
        shape = layer.output_shape(shape)
    return math.prod(shape)


_BUILDERS = {"mlp": mlp, "lenet5": lenet5, "cnn": cnn, "resnet20": resnet20,
             "resnet18": resnet18}


def build_model(name, input_shape, n_classes, *, rng, init=None, **kwargs) -> Model:
    """Build model ``name`` (one of ``MODELS``) with its dense initialisation.

    Parameters
    ----------
    name : {"mlp", "lenet5", "cnn", "resnet20", "resnet18"}
    input_shape : tuple of int
        Per-example shape, ``(C, H, W)`` (``mlp`` accepts any).
    n_classes : int >= 2
    rng : numpy.random.Generator
    init : {"kaiming", "torch_default"} or None
        Dense initialisation (``dense_init``); None: the model's ``MODEL_DEFAULTS``.
    **kwargs
        Passed to the builder (``hidden``, ``channels``, ``blocks``, ``dtype``).

    Returns
    -------
    Model
    """
    check_choice("name", name, MODELS)
    init = MODEL_DEFAULTS[name]["init"] if init is None else init
    return _BUILDERS[name](input_shape, n_classes, rng=rng, init=init, **kwargs)


def sparse_init(model: Model, sparsities, rng, init="fan_in", *, dense_init="kaiming",
                structure="constant_fan_in") -> dict[str, np.ndarray]:
    """Draw masks for ``model.sparse_names`` and set those weights sparse (docs/algorithm.md
    §4), on top of the model's dense initialisation ``dense_init``.

    Layer by layer, in model order: the mask (``constant_fan_in``: exactly
    ``k0 = B // out`` active inputs per row, ``random_fan_in_mask``; ``unstructured``: the
    RigL baseline's ``N - int(S*N)`` positions over the layer, ``random_mask``; sparsity 0:
    all True, no draw), then the weights, with ``fan_in_i`` the row's active count:

    - ``init="fan_in"``: re-drawn from ``dense_init``'s distribution with ``fan_in_i`` in
      place of the dense fan-in: ``N(0, 2 / fan_in_i)`` for ``"kaiming"`` (the sparse
      Kaiming init of §4), ``U(-1/sqrt(fan_in_i), 1/sqrt(fan_in_i))`` for
      ``"torch_default"``; then ``W *= M``.
    - ``init="official"``: ``W = N(0, 1) * 2 / fan_in_i`` (the authors' ``grad_flow_init``
      quirk: a std of ``2 / fan_in``, not its square root), then ``W *= M``.
    - ``init="mask"``: the dense weights are kept and masked, ``W *= M`` (no draw).

    The model's sparse weight arrays are replaced (new arrays in ``model.params``); biases
    and the arrays the caller held are untouched.

    Parameters
    ----------
    model : Model
    sparsities : sequence of float in [0, 1)
        One per ``model.sparse_names`` entry (``layer_sparsities`` output).
    rng : numpy.random.Generator
    init : {"fan_in", "official", "mask"}
    dense_init : {"kaiming", "torch_default"}
        The initialisation the model was built with (``build_model(init=...)``).
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
    check_choice("init", init, SPARSE_INITS)
    check_choice("dense_init", dense_init, DENSE_INITS)
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
        masks[name] = mask
        if init == "mask":
            model.params[name] = model.params[name] * mask
            continue
        fan = mask.reshape(shape[0], -1).sum(axis=1)                 # [out] int64
        fan = np.maximum(fan, 1).astype(np.float64)                  # empty rows get no weight
        fan = fan.reshape((-1,) + (1,) * (len(shape) - 1))           # broadcasts over a row
        if init == "official":
            weight = rng.standard_normal(shape) * (2.0 / fan)
        elif dense_init == "kaiming":
            weight = rng.standard_normal(shape) * np.sqrt(2.0 / fan)
        else:
            weight = rng.uniform(-1.0, 1.0, shape) / np.sqrt(fan)
        model.params[name] = (weight * mask).astype(model.dtype)
    return masks
