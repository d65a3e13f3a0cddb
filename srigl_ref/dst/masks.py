"""Random initial masks and fan-in checks (docs/algorithm.md §3, §4, §10)."""
from __future__ import annotations

import math

import numpy as np

from .._validate import as_mask, check_generator, check_int, check_shape, check_sparsity


def random_fan_in_mask(shape, k, rng) -> np.ndarray:
    """Constant fan-in mask: every neuron gets exactly ``k`` inputs, uniformly at random.

    docs/algorithm.md §4: one ``rng.choice(F, k, replace=False)`` draw per row, rows in order, so
    the same seed gives the same mask.

    Parameters
    ----------
    shape : tuple of int
        Weight shape, ``[out, in]`` or ``[out, C_in, kh, kw]``; ``F = prod(shape[1:])``.
    k : int in [1, F]
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape ``shape``, bool
    """
    shape = check_shape("shape", shape)
    fan = math.prod(shape[1:])
    k = check_int("k", k, low=1, high=fan)
    check_generator("rng", rng)
    mask = np.zeros((shape[0], fan), np.bool_)
    for row in mask:
        row[rng.choice(fan, size=k, replace=False)] = True
    return mask.reshape(shape)


def random_mask(shape, sparsity, rng) -> np.ndarray:
    """Unstructured random mask, ``N - int(S*N)`` active positions (docs/algorithm.md §4, RigL).

    Parameters
    ----------
    shape : tuple of int
    sparsity : float in [0, 1)
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape ``shape``, bool
    """
    shape = check_shape("shape", shape)
    s = check_sparsity("sparsity", sparsity)
    check_generator("rng", rng)
    size = math.prod(shape)
    mask = np.zeros(size, np.bool_)
    mask[rng.choice(size, size=size - int(s * size), replace=False)] = True
    return mask.reshape(shape)


def fan_in(mask) -> np.ndarray:
    """Active inputs per neuron.

    Parameters
    ----------
    mask : ndarray of shape (out, ...), bool

    Returns
    -------
    ndarray of shape (out,), int64
    """
    mask = as_mask("mask", mask)
    if mask.ndim < 2:
        raise ValueError(f"mask.ndim == {mask.ndim}, must be >= 2 ([out, in] or "
                         f"[out, C_in, kh, kw])")
    return np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1).astype(np.int64)


def check_constant_fan_in(mask) -> int:
    """Check that every non-empty row has the same number of active inputs.

    Parameters
    ----------
    mask : ndarray of shape (out, ...), bool

    Returns
    -------
    int
        The common fan-in ``k`` (0 if every row is empty).

    Raises
    ------
    ValueError
        Naming the first row whose count differs from the first non-empty row's.
    """
    counts = fan_in(mask)
    active = np.flatnonzero(counts)
    if active.size == 0:
        return 0
    k = int(counts[active[0]])
    bad = active[counts[active] != k]
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"mask row {r} has fan-in {int(counts[r])}, but row {int(active[0])} "
                         f"has {k}: fan-in is not constant (all-empty rows are allowed)")
    return k
