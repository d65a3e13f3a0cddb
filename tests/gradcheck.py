"""Float64 central-difference gradient checker.

``check_gradient(f, x, analytic)`` perturbs entries of ``x`` (a float64 array that ``f``
reads) by ``+-eps``, evaluates the scalar ``f()`` at both points and compares
``(f(x + eps) - f(x - eps)) / (2 eps)`` with ``analytic``. The error of one entry is
``|a - n| / max(|a| + |n|, floor)``: relative where the gradient is not tiny, absolute
(scaled by ``1/floor``) where it is, so round-off on near-zero entries does not count.
On failure the assertion message reports the max relative error, where it is and both
values. Use non-trivial inputs (never all zeros: they hide a wrong backward).
"""
from __future__ import annotations

import numpy as np


def numerical_gradient(f, x: np.ndarray, *, eps: float = 1e-5,
                       indices: np.ndarray | None = None) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``x`` (float64), in place.

    ``x`` is perturbed in place and restored exactly after every entry. ``indices``: flat
    indices to check (default: all); the other entries of the result are NaN.
    """
    assert x.dtype == np.float64, f"gradient checks run in float64, got {x.dtype}"
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so it can be perturbed in place"
    grad = np.full(x.size, np.nan)
    for i in range(x.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad.reshape(x.shape)


def check_gradient(f, x: np.ndarray, analytic: np.ndarray, *, name: str = "x",
                   eps: float = 1e-5, tol: float = 1e-6, floor: float = 1e-4,
                   indices: np.ndarray | None = None) -> float:
    """Assert that ``analytic`` matches central differences of ``f`` with respect to ``x``.

    Returns the max relative error; raises ``AssertionError`` naming ``name``, the max
    relative error, its index and both values when it is ``>= tol``.
    """
    numeric = numerical_gradient(f, x, eps=eps, indices=indices)
    analytic = np.asarray(analytic, np.float64)
    assert analytic.shape == x.shape, f"{name}: analytic shape {analytic.shape} != {x.shape}"
    checked = np.flatnonzero(~np.isnan(numeric.reshape(-1)))
    a = analytic.reshape(-1)[checked]
    n = numeric.reshape(-1)[checked]
    err = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)
    worst = int(np.argmax(err))
    where = np.unravel_index(checked[worst], x.shape)
    assert err[worst] < tol, (
        f"gradient of {name}: max relative error {err[worst]:.3e} >= {tol:g} at index "
        f"{tuple(int(i) for i in where)} (analytic {float(a[worst])!r}, numeric "
        f"{float(n[worst])!r}; {checked.size} entries checked)")
    return float(err[worst])
