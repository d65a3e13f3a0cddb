"""The topology-update schedule: drop fraction and update steps (docs/algorithm.md §5)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_int, check_real


def drop_fraction(step, alpha, t_end) -> float:
    """Cosine-annealed drop fraction ``alpha/2 * (1 + cos(step*pi/t_end))`` (docs/algorithm.md §5).

    Evaluated in float64 with exactly this operation order and NumPy's ``cos``, as the
    authors' code does, so the result is bit-identical to theirs.

    Parameters
    ----------
    step : int >= 0
        Optimizer steps taken so far.
    alpha : float in [0, 1]
        Initial drop fraction.
    t_end : int >= 1
        Step after which no update happens.

    Returns
    -------
    float
    """
    step = check_int("step", step, low=0)
    alpha = check_real("alpha", alpha, low=0.0, high=1.0)
    t_end = check_int("t_end", t_end, low=1)
    return float(alpha / 2 * (1 + np.cos(step * np.pi / t_end)))


def update_steps(delta, t_end, total_steps) -> np.ndarray:
    """Steps at which the topology is updated (docs/algorithm.md §5).

    ``step % delta == 0 and 0 < step < t_end and step <= total_steps``; the first update
    is at ``step == delta``.

    Parameters
    ----------
    delta : int >= 1
    t_end : int >= 0
    total_steps : int >= 0

    Returns
    -------
    ndarray of int64, ascending
    """
    delta = check_int("delta", delta, low=1)
    t_end = check_int("t_end", t_end, low=0)
    total_steps = check_int("total_steps", total_steps, low=0)
    last = min(t_end - 1, total_steps)
    return np.arange(delta, last + 1, delta, dtype=np.int64)


@dataclass(frozen=True)
class UpdateSchedule:
    """When to update, with which drop fraction, and which steps need a dense gradient.

    Attributes
    ----------
    delta : int
        Steps between updates.
    t_end : int
        No update at or after this step (default ``int(0.75 * total_steps)``).
    alpha : float
        Initial drop fraction.
    total_steps : int
        Optimizer steps of the whole run.
    grad_accumulation_n : int
        Dense gradients of this many optimizer steps up to an update are averaged for it.
    """
    delta: int
    t_end: int
    alpha: float
    total_steps: int
    grad_accumulation_n: int = 1

    def __post_init__(self):
        check_int("delta", self.delta, low=1)
        check_int("t_end", self.t_end, low=0)
        check_real("alpha", self.alpha, low=0.0, high=1.0)
        check_int("total_steps", self.total_steps, low=0)
        check_int("grad_accumulation_n", self.grad_accumulation_n, low=1, high=self.delta)

    @classmethod
    def from_total(cls, total_steps, *, delta=100, alpha=0.3, t_end_fraction=0.75,
                   grad_accumulation_n=1) -> "UpdateSchedule":
        """The authors' defaults: ``t_end = int(t_end_fraction * total_steps)``."""
        frac = check_real("t_end_fraction", t_end_fraction, low=0.0, high=1.0)
        total_steps = check_int("total_steps", total_steps, low=0)
        return cls(delta, int(frac * total_steps), alpha, total_steps, grad_accumulation_n)

    @property
    def steps(self) -> np.ndarray:
        """int64 array of update steps."""
        return update_steps(self.delta, self.t_end, self.total_steps)

    def is_update(self, step: int) -> bool:
        """Whether an update runs right after the optimizer step that made ``step``."""
        return 0 < step < self.t_end and step <= self.total_steps and step % self.delta == 0

    def needs_dense_grad(self, step: int) -> bool:
        """Whether the optimizer step that makes ``step`` must record its dense gradient.

        True for the ``grad_accumulation_n`` steps ``s - n + 1 .. s`` of every update ``s``.
        """
        next_update = -(-step // self.delta) * self.delta
        return (self.is_update(next_update)
                and next_update - step < self.grad_accumulation_n)

    def drop_fraction(self, step: int) -> float:
        """``drop_fraction(step, alpha, t_end)``."""
        return drop_fraction(step, self.alpha, max(self.t_end, 1))
