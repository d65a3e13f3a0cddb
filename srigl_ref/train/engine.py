"""The interface the training loop drives, and the masked engine (the readable reference).

An engine computes one optimizer step of a ``Model`` in some representation; the loop
(``loop.py``) calls only these methods, in this order (docs/algorithm.md §5)::

    logits, cache = engine.forward(x)
    grads, dense_grads = engine.backward(dlogits, cache, dense=records_dense_gradient)
    engine.step(grads, masks, lr)
    # at an update step, or before a checkpoint:
    engine.store()        # model.params and optimizer.momentum_buffers are current
    ... topology update / checkpoint on the dense arrays ...
    engine.load(masks)    # after model.params, the momentum buffers or the masks changed
    loss, accuracy = engine.evaluate(x, y)

``MaskedEngine`` trains the dense arrays times masks (``nn.Model`` and ``nn.SGD``):
``store`` and ``load`` have nothing to do. ``condensed_engine.CondensedEngine`` trains the
constant fan-in linear and conv layers as ``values/indices`` and writes the dense view on
``store``.
"""
from __future__ import annotations

import numpy as np

from ..nn.losses import softmax_cross_entropy
from ..nn.models import Model
from ..nn.optim import SGD


class Engine:
    """Base of the training engines (see the module docstring for the call order).

    Attributes
    ----------
    model : Model
        The dense view: ``model.params`` is current after ``store()``.
    optimizer : SGD
        The optimizer over ``model.params``: hyper-parameters, and momentum buffers that
        are current after ``store()``.
    """
    model: Model
    optimizer: SGD

    @classmethod
    def for_run(cls, model: Model, optimizer: SGD, masks: dict, sparsities) -> "Engine":
        """The engine of a run: ``masks`` of the sparse weights, ``sparsities`` one per
        ``model.sparse_names`` entry."""
        raise NotImplementedError

    def forward(self, x, *, train: bool = True):
        """Logits of a batch, as ``Model.forward``: ``(logits [B, n_classes], cache)``."""
        raise NotImplementedError

    def backward(self, dlogits, cache, *, dense: bool = False):
        """``(grads, dense_grads)``: the gradient of every parameter the engine trains, and,
        when ``dense``, ``{name: dense dW}`` of every weight in ``model.sparse_names``
        (docs/algorithm.md §5: recorded on the steps before a topology update)."""
        raise NotImplementedError

    def step(self, grads: dict, masks: dict, lr: float) -> None:
        """One masked SGD step (``nn.optim.SGD``'s formulas) with ``backward``'s grads."""
        raise NotImplementedError

    def store(self) -> None:
        """Make ``model.params`` and ``optimizer.momentum_buffers`` current."""

    def load(self, masks: dict) -> None:
        """Rebuild from ``model.params``, ``optimizer.momentum_buffers`` and ``masks``."""

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000):
        """(mean loss, accuracy) over a dataset, in batches of ``batch_size``.

        Parameters
        ----------
        x : ndarray of shape (n, *input_shape), the model's dtype
        y : ndarray of shape (n,), int64
        batch_size : int >= 1
        """
        total_loss, hits = 0.0, 0
        for lo in range(0, len(y), batch_size):
            logits, _ = self.forward(x[lo:lo + batch_size], train=False)
            loss, _ = softmax_cross_entropy(logits, y[lo:lo + batch_size])
            total_loss += loss * len(logits)
            hits += int((logits.argmax(axis=1) == y[lo:lo + batch_size]).sum())
        return total_loss / len(y), hits / len(y)


class MaskedEngine(Engine):
    """Dense weights times masks: ``Model.forward``/``backward`` and ``SGD.step`` as they are.

    The model holds no masks: a weight is zero outside its mask because the optimizer keeps
    it so (docs/algorithm.md §5), which makes the dense forward exact.
    """

    def __init__(self, model: Model, optimizer: SGD):
        self.model, self.optimizer = model, optimizer

    @classmethod
    def for_run(cls, model, optimizer, masks, sparsities) -> "MaskedEngine":
        return cls(model, optimizer)

    def forward(self, x, *, train: bool = True):
        return self.model.forward(x, train=train)

    def backward(self, dlogits, cache, *, dense: bool = False):
        grads = self.model.backward(dlogits, cache)     # dense at every position anyway
        return grads, ({n: grads[n] for n in self.model.sparse_names} if dense else {})

    def step(self, grads: dict, masks: dict, lr: float) -> None:
        self.optimizer.step(grads, masks, lr=lr)
