"""Canonical selection "the n largest magnitudes, ties by lowest index" (docs/algorithm.md §1).

The kernels in ``_kernels.py`` work on order-preserving integer keys of ``|x|``; this module
turns float arrays into those keys and offers the selection as a plain function.
"""
from __future__ import annotations

import numpy as np

from . import _kernels

_NO_POSITIONS = np.zeros((0, 0), np.bool_)


def magnitude_keys(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Raw bits of a C-contiguous float array and the mask turning them into ``|a|`` keys.

    Parameters
    ----------
    a : ndarray of shape (out, F), float32 or float64, C-contiguous

    Returns
    -------
    bits : ndarray of shape (out, F), int32 or int64 (a view, no copy)
    absmask : int
        ``2**nbits - 1``; ``bits & absmask`` orders exactly like ``|a|``.
    nbits : int
        31 for float32, 63 for float64.
    """
    if a.dtype == np.float32:
        return a.view(np.int32), (1 << 31) - 1, 31
    return a.view(np.int64), (1 << 63) - 1, 63


def top_magnitude_mask(a: np.ndarray, n: int, *, row_skip: np.ndarray | None = None,
                       pos_skip: np.ndarray | None = None, with_tie: bool = False):
    """Boolean mask of the ``n`` largest ``|a|``, ties by ascending flat index.

    Parameters
    ----------
    a : ndarray of shape (out, F), float32 or float64, C-contiguous, finite
    n : int
        Number to select (clipped to the number of eligible positions).
    row_skip : ndarray of shape (out,), bool, optional
        Rows that may not be selected.
    pos_skip : ndarray of shape (out, F), bool, optional
        Positions that may not be selected.

    with_tie : bool
        Also return whether the boundary was tied (another tie-break could select another
        set).

    Returns
    -------
    ndarray of shape (out, F), bool
        (and ``tied : bool`` if ``with_tie``)
    """
    bits, absmask, nbits = magnitude_keys(a)
    if row_skip is None:
        row_skip = np.zeros(a.shape[0], np.bool_)
    if pos_skip is None:
        pos_skip = _NO_POSITIONS
    selected, tied = _kernels.select_top(bits, absmask, nbits, row_skip, pos_skip, int(n))
    return (selected, tied) if with_tie else selected
