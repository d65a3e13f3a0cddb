"""Canonical selection "the n largest magnitudes, ties by lowest index" (docs/algorithm.md §1).

The kernels in ``_kernels.py`` work on order-preserving integer keys of ``|x|``; this module
turns float arrays into those keys and offers the selection as a plain function.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _kernels

_NO_POSITIONS = np.zeros((0, 0), np.bool_)


class MagnitudeKeys(NamedTuple):
    """Order-preserving integer keys of ``|a|``: ``bits & absmask`` orders like ``|a|``.

    Attributes
    ----------
    bits : ndarray of shape (out, F), int32 or int64
        The raw bits of ``a`` (a view, no copy).
    absmask : int
        ``2**nbits - 1``.
    nbits : int
        31 for float32, 63 for float64.
    """
    bits: np.ndarray
    absmask: int
    nbits: int


def magnitude_keys(a: np.ndarray) -> MagnitudeKeys:
    """The ``|a|`` keys of a C-contiguous float array.

    Parameters
    ----------
    a : ndarray of shape (out, F), float32 or float64, C-contiguous

    Returns
    -------
    MagnitudeKeys
    """
    if a.dtype == np.float32:
        return MagnitudeKeys(a.view(np.int32), (1 << 31) - 1, 31)
    return MagnitudeKeys(a.view(np.int64), (1 << 63) - 1, 63)


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
    keys = magnitude_keys(a)
    if row_skip is None:
        row_skip = np.zeros(a.shape[0], np.bool_)
    if pos_skip is None:
        pos_skip = _NO_POSITIONS
    selected, tied = _kernels.select_top(keys.bits, keys.absmask, keys.nbits, row_skip,
                                         pos_skip, int(n))
    return (selected, tied) if with_tie else selected
