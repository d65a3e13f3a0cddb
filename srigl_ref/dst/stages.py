"""The selection stages of one SRigL update with canonical ties (docs/algorithm.md §1, §6, §7).

Pure functions: magnitude keys and counts in, a small named result out; nothing is kept
between calls. ``topology.srigl_update`` composes them; ``torch_ties`` composes them with
the emulation of torch's tie order. Inputs are trusted (validated by ``topology``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _kernels
from .ranking import MagnitudeKeys

_NO_POSITIONS = np.zeros((0, 0), np.bool_)


class Threshold(NamedTuple):
    """The boundary of one layer-wide selection of the ``n`` largest keys.

    Selected: eligible keys ``> key``, and the first ``take`` (by flat index) ``== key``.

    Attributes
    ----------
    key : int
    take : int
    tied : bool
        Keys equal to ``key`` were left out: another tie order could select another set.
    """
    key: int
    take: int
    tied: bool


class Salient(NamedTuple):
    """Salient positions per neuron, for ablation (docs/algorithm.md §7).

    Attributes
    ----------
    counts : ndarray of shape (out,), int64
        Per row, the size of (top ``n_keep`` ``|W|``) union (top ``n_prune`` ``|G|``).
    keep : Threshold
        The top-``n_keep`` ``|W|`` boundary over all rows (the keep threshold too when no
        row is ablated).
    grad : Threshold
        The top-``n_prune`` ``|G|`` boundary over all rows.
    """
    counts: np.ndarray
    keep: Threshold
    grad: Threshold

    @property
    def tie_free(self) -> bool:
        """Neither boundary was tied: every tie order counts the same."""
        return not (self.keep.tied or self.grad.tied)


class KeepGrow(NamedTuple):
    """The new constant fan-in mask of one SRigL update (docs/algorithm.md §6.5-6.6).

    Attributes
    ----------
    mask : ndarray of shape (out, F), bool
        ``k`` active positions per non-ablated row, none in ablated rows.
    kept : ndarray of shape (out, F), bool
        The keep set after the cap; ``mask & ~kept`` were grown.
    keep_tie_free : bool
        The keep boundary was untied and the cap did not bind: every tie order keeps the
        same set.
    grow_tied : ndarray of shape (out,), bool
        Rows whose regrowth boundary was tied.
    """
    mask: np.ndarray
    kept: np.ndarray
    keep_tie_free: bool
    grow_tied: np.ndarray


def layer_threshold(keys: MagnitudeKeys, row_skip: np.ndarray, n: int) -> Threshold:
    """Boundary of the ``n`` largest keys outside the skipped rows (docs/algorithm.md §1).

    Parameters
    ----------
    keys : MagnitudeKeys of ``W`` or ``G`` viewed as (out, F)
    row_skip : ndarray of shape (out,), bool
        Rows excluded from the selection (ablated neurons).
    n : int
        How many to select; clipped to the number of eligible positions.
    """
    key, take, tied = _kernels.layer_threshold(keys.bits, keys.absmask, keys.nbits, row_skip,
                                               _NO_POSITIONS, n)
    return Threshold(key, take, tied)


def salient_counts(w: MagnitudeKeys, g: MagnitudeKeys, n_keep: int,
                   n_prune: int) -> Salient:
    """Per-row salient counts over the whole layer, active or not (docs/algorithm.md §7).

    Parameters
    ----------
    w, g : MagnitudeKeys of ``W`` and ``G`` viewed as (out, F)
    n_keep, n_prune : int
        docs/algorithm.md §6.2, after the nnz guard.
    """
    no_rows = np.zeros(w.bits.shape[0], np.bool_)                # [out] bool
    t_keep = layer_threshold(w, no_rows, n_keep)
    t_grad = layer_threshold(g, no_rows, n_prune)
    counts = _kernels.salient_counts(w.bits, w.absmask, t_keep.key, t_keep.take,
                                     g.bits, g.absmask, t_grad.key, t_grad.take)
    return Salient(counts, t_keep, t_grad)


def keep_grow(w: MagnitudeKeys, g: MagnitudeKeys, keep: Threshold, ablated_row: np.ndarray,
              k: int) -> KeepGrow:
    """Keep by ``|W|`` (capped to ``k`` per row), regrow each row to ``k`` by ``|G|``.

    Parameters
    ----------
    w, g : MagnitudeKeys of ``W`` and ``G`` viewed as (out, F)
    keep : Threshold
        ``layer_threshold(w, ablated_row, n_keep)``.
    ablated_row : ndarray of shape (out,), bool
    k : int
        Constant fan-in after ablation, ``1 <= k <= F``.
    """
    mask, kept, n_capped, grow_tied = _kernels.srigl_keep_grow(
        w.bits, w.absmask, keep.key, keep.take, g.bits, g.absmask, g.nbits, ablated_row, k)
    return KeepGrow(mask, kept, not keep.tied and n_capped == 0, grow_tied)
