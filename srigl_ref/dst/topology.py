"""One topology update of one layer: SRigL, RigL and SET (docs/algorithm.md §6-8).

Pure functions: arrays in, a new ``TopologyUpdate`` out; inputs are never modified.
Validation happens here, once; the per-layer work runs in the Numba kernels of
``_kernels.py`` (no Python loop over neurons or weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import (as_float_array, as_mask, check_choice, check_generator, check_real,
                         check_sparsity)
from . import _kernels, stages, torch_ties
from .ablation import ablated_from_counts
from .ranking import magnitude_keys, top_magnitude_mask
from .sparsity import fan_in_budget, fan_in_from_budget

TIE_BREAKS = ("stable", "torch_cpu")
ABLATION_BASES = ("sparse", "dense")


@dataclass(frozen=True)
class TopologyUpdate:
    """The result of one layer's topology update.

    Attributes
    ----------
    mask : ndarray, bool, shape of the weight
        The new mask.
    weight : ndarray, dtype and shape of the weight
        ``W * M_new``, with positions grown from inactive set to ``grown_init``.
    momentum : ndarray or None
        ``momentum * M_new`` (None if no momentum was given).
    kept : ndarray, bool, shape of the weight
        The keep set ``K`` (docs/algorithm.md §6.5, after the cap); ``mask & ~kept`` were
        grown, ``old_mask & ~kept`` were dropped (some of them regrown).
    ablated : ndarray of int64
        Ablated neurons in docs/algorithm.md §7 order (empty for RigL/SET or without ablation).
    fan_in : int
        Constant fan-in ``k`` after the update; -1 for unstructured methods.
    threshold : int
        Salient threshold after lowering; -1 when ablation did not run.
    n_pruned : int
        Positions active before and inactive after.
    n_grown : int
        Grown positions (outside the keep set) that were inactive before. Inactive
        positions that enter the keep set with a zero score are active after but not
        counted (docs/algorithm.md §6).
    n_keep : int
        How many weights the update kept by magnitude before the cap (docs/algorithm.md
        §6.2: ``popcount(mask) - n_prune``, lowered to ``count_nonzero(weight)`` by SRigL's
        nnz guard; §8 for RigL and SET, without the guard).
    n_prune : int
        ``popcount(mask) - n_keep``: how many the update dropped by magnitude, and how many
        RigL and SET regrow.
    """
    mask: np.ndarray
    weight: np.ndarray
    momentum: np.ndarray | None
    kept: np.ndarray
    ablated: np.ndarray
    fan_in: int
    threshold: int
    n_pruned: int
    n_grown: int
    n_keep: int
    n_prune: int


class PruneKeep(NamedTuple):
    """The counts of one update (docs/algorithm.md §6.2); ``n_keep + n_prune`` is
    ``popcount(mask)``."""
    n_keep: int
    n_prune: int


def _check_layer(weight, mask, grad, momentum):
    """Validated C-contiguous ``(weight, mask, grad, momentum)``; grad may be None (SET)."""
    w = as_float_array("weight", weight, ndim=None)
    if w.ndim < 2:
        raise ValueError(f"weight.ndim == {w.ndim}, must be >= 2 ([out, in] or "
                         f"[out, C_in, kh, kw])")
    m = as_mask("mask", mask, shape=w.shape)
    g = None if grad is None else as_float_array("grad", grad, shape=w.shape)
    mom = None if momentum is None else as_float_array("momentum", momentum, shape=w.shape)
    return w, m, g, mom


def _nonzero_weights(w2: np.ndarray, m2: np.ndarray) -> int:
    """``count_nonzero(W)``; ValueError if ``W`` is nonzero outside the mask."""
    keys = magnitude_keys(w2)
    nnz, outside = _kernels.nonzero_counts(keys.bits, keys.absmask, m2)
    if outside:
        raise ValueError(f"weight has {outside} nonzero value(s) outside mask; must be zero "
                         f"there (apply weight *= mask first)")
    return nnz


def _prune_keep(mask2d: np.ndarray, drop_fraction: float, nnz: int | None = None) -> PruneKeep:
    """``n_prune = int(popcount(mask) * drop_fraction)``; with ``nnz``, SRigL's nnz guard.

    The guard (docs/algorithm.md §6.2): never keep more than the ``nnz`` nonzero weights;
    the rest of ``popcount(mask)`` is pruned.
    """
    n_ones = int(np.count_nonzero(mask2d))
    n_keep = n_ones - int(n_ones * drop_fraction)
    if nnz is not None:
        n_keep = min(n_keep, nnz)
    return PruneKeep(n_keep, n_ones - n_keep)


def _finish(w, mask, new_mask, kept, momentum, grown_init, ablated, k, threshold,
            counts: PruneKeep) -> TopologyUpdate:
    """docs/algorithm.md §6.7-6.8: ``W *= M_new``, grown-from-inactive set to ``grown_init``."""
    new_mask = new_mask.reshape(w.shape)
    weight, n_pruned, n_grown = _kernels.apply_mask(w.ravel(), mask.ravel(), new_mask.ravel(),
                                                    kept.ravel(), grown_init)
    return TopologyUpdate(
        mask=new_mask,
        weight=weight.reshape(w.shape),
        momentum=None if momentum is None else momentum * new_mask,
        kept=kept.reshape(w.shape),
        ablated=ablated,
        fan_in=int(k),
        threshold=int(threshold),
        n_pruned=int(n_pruned),
        n_grown=int(n_grown),
        n_keep=counts.n_keep,
        n_prune=counts.n_prune,
    )


def _check_common(drop_fraction, grown_init, tie_break) -> tuple[float, float]:
    df = check_real("drop_fraction", drop_fraction, low=0.0, high=1.0)
    init = check_real("grown_init", grown_init)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    return df, init


def _check_gradient_update(weight, mask, grad, momentum, drop_fraction, grown_init, tie_break):
    """Validated ``(w, m, g, momentum, drop_fraction, grown_init)`` of a SRigL/RigL update."""
    w, m, g, mom = _check_layer(weight, mask, grad, momentum)
    if g is None:
        raise TypeError("grad must be a numpy.ndarray, got NoneType")
    df, init = _check_common(drop_fraction, grown_init, tie_break)
    return w, m, g, mom, df, init


def _check_ablation(sparsity, gamma_sal, ablation, ablation_base, *,
                    gamma_count: bool = True) -> tuple[float, float]:
    """Validated ``(sparsity, gamma_sal)``; ``gamma_count``: ``gamma_sal >= 1`` is a count."""
    s = check_sparsity("sparsity", sparsity)
    gamma = check_real("gamma_sal", gamma_sal, low=0.0)
    if gamma_count and gamma >= 1 and gamma != int(gamma):
        raise ValueError(f"gamma_sal == {gamma_sal!r}, must be an integer count when >= 1 "
                         f"(or a fraction in [0, 1))")
    if not isinstance(ablation, (bool, np.bool_)):
        raise TypeError(f"ablation == {ablation!r}, must be a bool")
    check_choice("ablation_base", ablation_base, ABLATION_BASES)
    return s, gamma


def srigl_update(weight, mask, grad, *, sparsity, drop_fraction, gamma_sal=0.3, ablation=True,
                 ablation_base="sparse", grown_init=0.0, momentum=None,
                 tie_break="stable") -> TopologyUpdate:
    """One SRigL update of one layer (docs/algorithm.md §6, §7).

    Parameters
    ----------
    weight : ndarray of shape (out, in) or (out, C_in, kh, kw), float32 or float64
        Post-step weights, zero outside ``mask``.
    mask : ndarray, bool, shape of ``weight``
    grad : ndarray, float32 or float64, shape of ``weight``
        Dense gradient (at every position, active or not).
    sparsity : float in [0, 1)
        The layer's target sparsity ``S``; the budget is ``B = int(N * (1 - S))``.
    drop_fraction : float in [0, 1]
    gamma_sal : float >= 0
        Salient threshold: a fraction of the base, or an absolute integer count if >= 1.
        0 disables ablation.
    ablation : bool
        Whether neuron ablation runs (False for exempt layers such as the classifier).
    ablation_base : {"sparse", "dense"}
        Threshold base ``B // out`` or the dense fan-in ``F``.
    grown_init : float
        Value of weights grown at positions inactive before.
    momentum : ndarray, float, shape of ``weight``, optional
        SGD momentum buffer; returned multiplied by the new mask.
    tie_break : {"stable", "torch_cpu"}
        docs/algorithm.md §1: canonical (score descending, lowest flat index first), or the
        authors' PyTorch CPU order (docs/algorithm.md §13), bit for bit.

    Returns
    -------
    TopologyUpdate

    Raises
    ------
    ValueError
        Bad inputs (naming the argument); ``k == 0``; a budget that cannot fit.
    TypeError
        Wrong types or dtypes.
    """
    w, m, g, mom, df, init = _check_gradient_update(weight, mask, grad, momentum,
                                                    drop_fraction, grown_init, tie_break)
    s, gamma = _check_ablation(sparsity, gamma_sal, ablation, ablation_base)

    out = w.shape[0]
    w2, m2, g2 = w.reshape(out, -1), m.reshape(out, -1), g.reshape(out, -1)  # [out, F]
    fan = w2.shape[1]
    budget = fan_in_budget(w.shape, s)
    counts = _prune_keep(m2, df, nnz=_nonzero_weights(w2, m2))
    torch_order = tie_break == "torch_cpu"
    exact = torch_order and torch_ties.lifts_exact(w2, g2)
    w_keys, g_keys = magnitude_keys(w2), magnitude_keys(g2)
    salient, ablated, threshold = None, np.zeros(0, np.int64), -1
    if ablation and gamma > 0:                        # docs/algorithm.md §7
        if torch_order:
            salient = torch_ties.salient_counts_stage(w2, g2, counts.n_keep, counts.n_prune,
                                                      exact)
        else:
            salient = stages.salient_counts(w_keys, g_keys, counts.n_keep, counts.n_prune)
        ablated, threshold = ablated_from_counts(salient.counts, budget, fan, gamma,
                                                 ablation_base)
    k = fan_in_from_budget(budget, w.shape, ablated.size, s)
    ablated_row = np.zeros(out, np.bool_)                                    # [out] bool
    ablated_row[ablated] = True
    if salient is not None and ablated.size == 0:     # no row left the keep ranking
        keep = salient.keep
    else:
        keep = stages.layer_threshold(w_keys, ablated_row, counts.n_keep)
    if torch_order:
        new = torch_ties.keep_grow_stage(w2, g2, keep, ablated, counts.n_keep, k, exact)
    else:
        new = stages.keep_grow(w_keys, g_keys, keep, ablated_row, k)
    return _finish(w, m, new.mask, new.kept, mom, init, ablated, k, threshold, counts)


def rigl_update(weight, mask, grad, *, drop_fraction, grown_init=0.0, momentum=None,
                tie_break="stable") -> TopologyUpdate:
    """One unstructured RigL update of one layer (docs/algorithm.md §8).

    Keep the ``n_keep`` largest ``|W|`` over the layer, grow the ``n_prune`` largest ``|G|``
    outside the keep set (no nnz guard, no fan-in constraint). Parameters as in
    ``srigl_update``. ``fan_in`` and ``threshold`` of the result are -1.
    """
    w, m, g, mom, df, init = _check_gradient_update(weight, mask, grad, momentum,
                                                    drop_fraction, grown_init, tie_break)
    out = w.shape[0]
    w2, m2, g2 = w.reshape(out, -1), m.reshape(out, -1), g.reshape(out, -1)
    _nonzero_weights(w2, m2)
    counts = _prune_keep(m2, df)
    keep, keep_tied = top_magnitude_mask(w2, counts.n_keep, with_tie=True)
    grow, grow_tied = top_magnitude_mask(g2, counts.n_prune, pos_skip=keep, with_tie=True)
    if tie_break == "torch_cpu" and (keep_tied or grow_tied or
                                     not torch_ties.lifts_exact(w2, g2)):
        keep, grow = torch_ties.rigl_keep_grow_torch(np.abs(w2).ravel(), np.abs(g2).ravel(),
                                                     counts.n_keep, counts.n_prune)
    return _finish(w, m, keep | grow, keep, mom, init, np.zeros(0, np.int64), -1, -1, counts)


def set_update(weight, mask, *, drop_fraction, rng, grown_init=0.0,
               momentum=None) -> TopologyUpdate:
    """One SET update of one layer (docs/algorithm.md §8): RigL's drop, uniform random regrowth.

    Parameters as in ``rigl_update``; ``rng`` (numpy.random.Generator) draws the
    ``n_prune`` grown positions uniformly, without replacement, among those outside the
    keep set.
    """
    w, m, _, mom = _check_layer(weight, mask, None, momentum)
    df, init = _check_common(drop_fraction, grown_init, "stable")
    check_generator("rng", rng)
    out = w.shape[0]
    w2, m2 = w.reshape(out, -1), m.reshape(out, -1)
    _nonzero_weights(w2, m2)
    counts = _prune_keep(m2, df)
    keep = top_magnitude_mask(w2, counts.n_keep)
    candidates = np.flatnonzero(~keep)                      # [N - n_keep] int64
    grown = candidates[rng.choice(candidates.size, size=counts.n_prune, replace=False)]
    new_mask = keep.ravel().copy()
    new_mask[grown] = True
    return _finish(w, m, new_mask, keep, mom, init, np.zeros(0, np.int64), -1, -1, counts)
