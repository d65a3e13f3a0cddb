"""The training methods, one registry entry each: how a method draws its first masks and how
it updates one layer's topology (docs/algorithm.md §6-§8).

Every dynamic method is one function with one signature::

    update(layer: LayerInput, config: TrainConfig) -> dst.TopologyUpdate

``layer`` holds what the trainer knows about one sparse layer at an update step (its
post-step weight, mask, mean accumulated dense gradient, momentum, sparsity, drop fraction,
whether ablation runs for it, the run's generator); ``config`` the run's hyper-parameters.
Registering it (``@register(name, ...)``) is all that adding a method takes: the trainer
reads the entry's ``structure`` (initial masks), ``needs_grad`` (record dense gradients
before an update) and ``update`` (None: the topology never changes), and never branches on
the method's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import dst

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclass(frozen=True)
class LayerInput:
    """One sparse layer at a topology update: the arguments of a method's ``update``.

    Attributes
    ----------
    index : int
        Position of the layer in ``Model.sparse_names``.
    name : str
        Its weight's parameter name (``fc1.weight``, ...).
    weight : ndarray of shape (out, ...), float32
        The weight after this step's SGD step (zero outside ``mask``).
    mask : ndarray of bool, shape of ``weight``
        The mask before the update.
    grad : ndarray, shape of ``weight``, or None
        Mean of the dense gradients recorded since the last update (None when the method
        does not need gradients).
    momentum : ndarray, shape of ``weight``
        The SGD momentum buffer before the update.
    sparsity : float in (0, 1)
        The layer's sparsity ``S``.
    drop_fraction : float in [0, 1]
        This update's drop fraction (docs/algorithm.md §5).
    ablation : bool
        Whether neuron ablation runs for this layer (off for the exempt last layer).
    rng : numpy.random.Generator
        The run's generator (random growth).
    """
    index: int
    name: str
    weight: np.ndarray
    mask: np.ndarray
    grad: np.ndarray | None
    momentum: np.ndarray
    sparsity: float
    drop_fraction: float
    ablation: bool
    rng: np.random.Generator


#: ``update(layer, config) -> TopologyUpdate``; ``config`` is a ``TrainConfig``.
Update = Callable[[LayerInput, "TrainConfig"], dst.TopologyUpdate]


@dataclass(frozen=True)
class Method:
    """A registry entry.

    Attributes
    ----------
    name : str
    update : Update or None
        One layer's topology update; None for methods whose masks never change.
    structure : {"constant_fan_in", "unstructured"}
        How ``nn.models.sparse_init`` draws the first masks.
    needs_grad : bool
        Whether ``update`` reads ``layer.grad`` (the trainer then records dense gradients
        on the ``grad_accumulation_n`` steps before each update).
    sparse : bool
        False for dense training (every layer's sparsity is 0, no masks).
    """
    name: str
    update: Update | None
    structure: str = "unstructured"
    needs_grad: bool = False
    sparse: bool = True

    @property
    def dynamic(self) -> bool:
        """Whether the topology changes during training."""
        return self.update is not None


REGISTRY: dict[str, Method] = {}


def register(name: str, *, structure: str = "unstructured", needs_grad: bool = False,
             sparse: bool = True):
    """Decorator: register ``update`` (or None, through ``register(name)(None)``) as ``name``."""
    def add(update: Update | None):
        if name in REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        REGISTRY[name] = Method(name, update, structure, needs_grad, sparse)
        return update
    return add


# Methods whose masks never change register no update function.
register("dense", sparse=False)(None)
register("static")(None)


@register("set")
def update_set(layer: LayerInput, config: TrainConfig) -> dst.TopologyUpdate:
    """SET: drop the smallest magnitudes, regrow at random (docs/algorithm.md §8)."""
    return dst.set_update(layer.weight, layer.mask, drop_fraction=layer.drop_fraction,
                          rng=layer.rng, momentum=layer.momentum)


@register("rigl", needs_grad=True)
def update_rigl(layer: LayerInput, config: TrainConfig) -> dst.TopologyUpdate:
    """RigL: drop the smallest magnitudes, grow the largest dense gradients (§8)."""
    return dst.rigl_update(layer.weight, layer.mask, layer.grad,
                           drop_fraction=layer.drop_fraction, momentum=layer.momentum)


@register("srigl", structure="constant_fan_in", needs_grad=True)
def update_srigl(layer: LayerInput, config: TrainConfig) -> dst.TopologyUpdate:
    """SRigL: RigL at constant fan-in with neuron ablation (docs/algorithm.md §6-§7)."""
    return dst.srigl_update(layer.weight, layer.mask, layer.grad, sparsity=layer.sparsity,
                            drop_fraction=layer.drop_fraction, gamma_sal=config.gamma_sal,
                            ablation_base=config.ablation_base, ablation=layer.ablation,
                            momentum=layer.momentum)


METHODS = tuple(REGISTRY)
