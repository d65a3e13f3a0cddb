"""SGD with momentum, Nesterov and weight decay, masked as docs/algorithm.md §5 says; learning-rate
schedules (cosine and step, each with linear warm-up).

One step on a parameter ``w`` with dense gradient ``g``, mask ``M`` (sparse weights only),
momentum ``mu``, weight decay ``wd`` and learning rate ``lr`` (PyTorch ``SGD`` with
``dampening=0``; buffers start at 0, which equals PyTorch's "first buffer = first update")::

    g = g * M                     # the gradient is masked (docs/algorithm.md §5)
    g = g + wd * w                # weight decay on every parameter, biases too (as the authors)
    buf = mu * buf + g
    g = g + mu * buf   if nesterov else   buf
    w = w - lr * g
    w *= M; buf *= M              # after the step (docs/algorithm.md §5)

So a weight outside the mask, and its momentum, stay exactly 0 through any number of steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import as_float_array, as_mask, check_int, check_real
from . import _kernels


class SGD:
    """Stochastic gradient descent over a dict of named parameters, updated in place.

    Parameters
    ----------
    params : dict[str, ndarray]
        The model's parameters (``Model.params``), float32 or float64. Held by reference: a
        step updates ``params[name]`` in place and reads the dict afresh at every step, so an
        entry replaced between steps (as a topology update replaces a weight) is the one
        updated next.
    lr : float > 0
        Default learning rate of ``step`` (a schedule passes its own per step).
    momentum : float in [0, 1)
    nesterov : bool
        Nesterov momentum; needs ``momentum > 0``.
    weight_decay : float >= 0
        L2 penalty added to the gradient of every parameter.

    Attributes
    ----------
    momentum_buffers : dict[str, ndarray]
        One buffer per parameter (same shape and dtype), zeros at the start. A topology
        update replaces ``momentum_buffers[name]`` with its masked buffer (docs/algorithm.md §6).
    """

    def __init__(self, params, lr, momentum=0.9, nesterov=False, weight_decay=0.0):
        if not isinstance(params, dict) or not params:
            raise TypeError(f"params must be a non-empty dict of named arrays, got "
                            f"{type(params).__name__}")
        for name, p in params.items():
            as_float_array(f"params[{name!r}]", p)
        self.params = params
        self._set_hyper(lr, momentum, nesterov, weight_decay)
        self.momentum_buffers = {name: np.zeros_like(p) for name, p in params.items()}

    def _set_hyper(self, lr, momentum, nesterov, weight_decay) -> None:
        self.lr = check_real("lr", lr, low=0.0, low_open=True)
        self.momentum = check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov == {nesterov!r}, must be a bool")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov == True needs momentum > 0, got momentum == 0.0")
        self.nesterov = nesterov
        self.weight_decay = check_real("weight_decay", weight_decay, low=0.0)

    def step(self, grads, masks=None, lr=None) -> None:
        """Apply one masked SGD step to every parameter (see the module docstring).

        Parameters
        ----------
        grads : dict[str, ndarray]
            A dense gradient for every parameter, same shapes and dtypes; not modified, and
            not scanned for NaN/inf (they reach the weights, as in PyTorch).
        masks : dict[str, ndarray of bool] or None
            Masks of the sparse weights (any subset of the names); unmasked names are dense.
        lr : float > 0 or None
            This step's learning rate; None uses ``self.lr``.
        """
        lr = self.lr if lr is None else check_real("lr", lr, low=0.0, low_open=True)
        masks = {} if masks is None else masks
        if not isinstance(grads, dict) or set(grads) != set(self.params):
            raise ValueError(f"grads must have the keys of params {list(self.params)}, "
                             f"got {list(grads) if isinstance(grads, dict) else grads!r}")
        unknown = set(masks) - set(self.params)
        if unknown:
            raise ValueError(f"masks has names {sorted(unknown)} that are not parameters")
        checked = {name: self._checked(name, grads[name], masks.get(name)) for name in grads}
        for name, (grad, mask) in checked.items():
            self._update(name, grad, mask, lr)

    def _checked(self, name, grad, mask):
        w = self.params[name]
        # not scanned for NaN/inf on every step: the trainer stops on a non-finite loss
        grad = as_float_array(f"grads[{name!r}]", grad, shape=w.shape, finite=False)
        if grad.dtype != w.dtype:
            raise TypeError(f"grads[{name!r}].dtype == {grad.dtype}, must be {w.dtype}")
        if mask is not None:
            mask = as_mask(f"masks[{name!r}]", mask, shape=w.shape)
        return grad, mask

    def _update(self, name, grad, mask, lr) -> None:
        """The step of the module docstring on one parameter, in place, in one pass
        (``_kernels.sgd_step``, bit-identical to ``_update_numpy``)."""
        w, buf = self.params[name], self.momentum_buffers[name]
        if not (w.flags.c_contiguous and buf.flags.c_contiguous):
            return self._update_numpy(name, grad, mask, lr)    # the kernel needs flat views
        scalar = w.dtype.type           # the hyper-parameters in w's dtype, as NumPy uses them
        args = (scalar(lr), scalar(self.momentum), self.nesterov, scalar(self.weight_decay))
        if mask is None:
            _kernels.sgd_step(w.reshape(-1), grad.reshape(-1), buf.reshape(-1), *args)
        else:
            _kernels.sgd_step_masked(w.reshape(-1), grad.reshape(-1), mask.reshape(-1),
                                     buf.reshape(-1), *args)

    def _update_numpy(self, name, grad, mask, lr) -> None:
        """The step of the module docstring as NumPy array operations: the readable twin of
        ``_update`` (tested bit-identical), also used for non-contiguous parameters."""
        w, buf = self.params[name], self.momentum_buffers[name]
        g = grad * mask if mask is not None else grad.copy()   # never touch the caller's grad
        if self.weight_decay:
            g += self.weight_decay * w
        if self.momentum:
            buf *= self.momentum
            buf += g
            if self.nesterov:
                g += self.momentum * buf
            else:
                g = buf
        w -= lr * g
        if mask is not None:
            w *= mask
            buf *= mask

    def state_dict(self) -> dict:
        """Hyper-parameters and copies of the momentum buffers (for checkpoints)."""
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay,
                "momentum_buffers": {n: b.copy() for n, b in self.momentum_buffers.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned; buffers must match the parameters."""
        bufs = state["momentum_buffers"]
        if set(bufs) != set(self.params):
            raise ValueError(f"state momentum_buffers has names {sorted(bufs)}, must have "
                             f"{sorted(self.params)}")
        new = {}
        for name, p in self.params.items():
            b = as_float_array(f"momentum_buffers[{name!r}]", bufs[name], shape=p.shape)
            new[name] = b.astype(p.dtype, copy=True)
        self._set_hyper(state["lr"], state["momentum"], state["nesterov"],
                        state["weight_decay"])
        self.momentum_buffers = new


@dataclass(frozen=True)
class CosineLR:
    """Linear warm-up to ``base_lr``, then cosine decay to ``min_lr`` at ``total_steps``.

    ``lr(step) = base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``, else
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - warmup_steps) / (total_steps - warmup_steps)`` clipped to [0, 1].
    ``step`` counts optimizer steps from 0 (docs/algorithm.md §5).
    """
    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        check_real("base_lr", self.base_lr, low=0.0, low_open=True)
        check_int("total_steps", self.total_steps, low=1)
        check_int("warmup_steps", self.warmup_steps, low=0, high=self.total_steps - 1)
        check_real("min_lr", self.min_lr, low=0.0, high=self.base_lr)

    def __call__(self, step: int) -> float:
        step = check_int("step", step, low=0)
        if step < self.warmup_steps:
            return _warmup(self.base_lr, step, self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class StepLR:
    """Linear warm-up to ``base_lr``, then ``base_lr * gamma ** m`` where ``m`` is the number
    of ``milestones`` (optimizer steps, increasing) at or before ``step``."""
    base_lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1
    warmup_steps: int = 0

    def __post_init__(self):
        check_real("base_lr", self.base_lr, low=0.0, low_open=True)
        check_real("gamma", self.gamma, low=0.0, high=1.0, low_open=True)
        check_int("warmup_steps", self.warmup_steps, low=0)
        ms = tuple(check_int(f"milestones[{i}]", m, low=1) for i, m in enumerate(self.milestones))
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"milestones == {ms}, must be strictly increasing")
        object.__setattr__(self, "milestones", ms)

    def __call__(self, step: int) -> float:
        step = check_int("step", step, low=0)
        if step < self.warmup_steps:
            return _warmup(self.base_lr, step, self.warmup_steps)
        return self.base_lr * self.gamma ** sum(step >= m for m in self.milestones)


def _warmup(base_lr: float, step: int, warmup_steps: int) -> float:
    return base_lr * (step + 1) / warmup_steps
