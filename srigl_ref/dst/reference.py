"""SRigL, RigL and SET as plain NumPy: the algorithm to read first, and the tests' oracle.

Each step of one topology update is a function named after it, in the order the update
runs (``docs/algorithm.md §6``):

====================================  ======================================================
``prune_keep_counts``                 how many active weights to drop and to keep (§6.2)
``salient_counts``                    salient weights per neuron (§7)
``salient_threshold``                 the minimum salient count a neuron needs (§7)
``ablate_neurons``                    which neurons go, with the keep-alive rule (§7)
``fan_in_after_ablation``             the fan-in ``k`` of the surviving neurons (§3, §6.4)
``keep_set``                          the largest weights over the layer (§6.5)
``cap_rows``                          at most ``k`` kept per neuron (§6.5)
``regrow_rows``                       each neuron refilled to ``k`` by gradient (§6.6)
``apply_new_mask``                    new mask, weights and momentum (§6.7, §6.8)
====================================  ======================================================

``srigl_update``, ``rigl_update`` and ``set_update`` chain them and take the same arguments
and return the same ``TopologyUpdate`` as the fast functions of
``srigl_ref.dst.topology``, which compute the same result with Numba kernels (the tests
check both agree bit for bit). Only the canonical tie-break exists here (``docs/algorithm.md
§1``): score descending, lowest flat index first, i.e. a stable sort of ``-score``.

Keyword arguments beyond the fast functions' are *named deviations*: each reproduces one
way another implementation departs from the authors' algorithm (their defaults are the
authors' algorithm), so that "SRigL as sparsimony does it" or "RigL as jaxpruner does it"
can be run directly and a disagreement can be attributed to one cause.

Shapes: ``out`` neurons (rows), dense fan-in ``F`` (columns; a conv weight
``[out, C_in, kh, kw]`` is viewed as ``[out, C_in*kh*kw]``), ``N = out * F``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validate import check_choice, check_generator, check_int
from .ablation import ablation_threshold
from .sparsity import fan_in_budget, fan_in_from_budget
from .topology import (TopologyUpdate, _check_ablation, _check_common, _check_gradient_update,
                       _check_layer)

ABLATION_TESTS = ("integer", "real")
SALIENT_GRAD_COUNTS = ("n_prune", "n_keep")
KEEP_COUNTS = ("authors", "jaxpruner")
DROP_FRACTION_DTYPES = (np.float64, np.float32)

# The named deviations of each update and their non-default values (the defaults, in the
# signatures, are the authors' algorithm): what a search for "which single deviation
# reproduces this other implementation" tries.
DEVIATIONS = {
    "srigl": {
        "n_keep_offset": (-2, -1, 1, 2),
        "salient_grad_count": ("n_keep",),
        "ablation_test": ("real",),
        "keep_alive": (False,),
        "regrow_emptied_rows": (False,),
        "redistribute_fan_in": (False,),
        "reinit_grown": (False,),
        "mask_momentum": (False,),
    },
    "rigl": {
        "keep_count": ("jaxpruner",),
        "inactive_below_active_zeros": (True,),
        "drop_fraction_dtype": (np.float32,),
        "mask_momentum": (False,),
    },
}


# ------------------------------------------------------------------ docs/algorithm.md §1
def top_n(scores: np.ndarray, n: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """The ``n`` largest ``scores`` among the ``eligible`` positions, ties by lowest flat index.

    Every selection of the algorithm is this one (``docs/algorithm.md §1``).

    Parameters
    ----------
    scores : ndarray of shape (out, F), float32 or float64
    n : int
        How many to select; fewer if fewer positions are eligible.
    eligible : ndarray of shape (out, F), bool, optional
        Positions that may be selected (default: all).

    Returns
    -------
    ndarray of shape (out, F), bool
    """
    order = np.argsort(-scores.ravel(), kind="stable")              # [N] int64, best first
    if eligible is not None:
        order = order[eligible.ravel()[order]]                      # [n_eligible] int64
    selected = np.zeros(scores.size, np.bool_)                      # [N] bool
    selected[order[:n]] = True
    return selected.reshape(scores.shape)                           # [out, F] bool


# ------------------------------------------------------------------ docs/algorithm.md §6.2
class PruneKeepCounts(NamedTuple):
    """Active weights before the update, and how many of them are dropped and kept."""
    n_ones: int
    n_prune: int
    n_keep: int


def prune_keep_counts(mask: np.ndarray, weight: np.ndarray, drop_fraction: float, *,
                      n_keep_offset: int = 0) -> PruneKeepCounts:
    """How many active weights the update drops (``n_prune``) and keeps (``n_keep``).

    ``n_prune = int(n_ones * drop_fraction)``, ``n_keep = n_ones - n_prune``; then the nnz
    guard: when fewer than ``n_keep`` weights are nonzero, only the nonzero ones are kept
    by magnitude (``n_keep = nnz``), so no exact zero is kept in preference to a regrown
    weight (``docs/algorithm.md §6.2``).

    Parameters
    ----------
    mask : ndarray of shape (out, F), bool
    weight : ndarray of shape (out, F), float32 or float64
        Zero outside ``mask``.
    drop_fraction : float in [0, 1]
    n_keep_offset : int
        Deviation (count rounding): added to ``n_keep`` before the nnz guard, the result
        clipped to ``[0, n_ones]``. sparsimony (SRigL) turns the drop fraction into a
        target sparsity rounded to 6 decimals and keeps ``int(N * (1 - target))``, which
        is usually one weight fewer: ``n_keep_offset=-1``. Default 0 (the authors').

    Returns
    -------
    PruneKeepCounts
    """
    n_ones = int(np.count_nonzero(mask))
    n_prune = int(n_ones * drop_fraction)
    n_keep = min(max(n_ones - n_prune + n_keep_offset, 0), n_ones)
    nnz = int(np.count_nonzero(weight))                # -0.0 is zero
    n_keep = min(n_keep, nnz)                          # the nnz guard
    return PruneKeepCounts(n_ones, n_ones - n_keep, n_keep)


# ------------------------------------------------------------------ docs/algorithm.md §7
def salient_counts(weight_score: np.ndarray, grad_score: np.ndarray, n_keep: int,
                   n_grad: int) -> np.ndarray:
    """Salient weights per neuron: how much of the layer's best each neuron holds.

    A position is salient if it is among the ``n_keep`` largest ``|W|`` of the layer (it
    would survive the drop) or among the ``n_grad`` largest ``|G|`` (it would be grown by
    RigL); the gradient counts at every position, active or not (``docs/algorithm.md
    §7``). Neurons with few salient positions are the ones ablation removes.

    Parameters
    ----------
    weight_score : ndarray of shape (out, F), float
        ``|W|``.
    grad_score : ndarray of shape (out, F), float
        ``|G|``.
    n_keep : int
    n_grad : int
        ``n_prune`` in the authors' algorithm (see ``srigl_update(salient_grad_count=)``).

    Returns
    -------
    ndarray of shape (out,), int64
    """
    salient = top_n(weight_score, n_keep) | top_n(grad_score, n_grad)   # [out, F] bool
    return salient.sum(axis=1).astype(np.int64)                         # [out] int64


def salient_threshold(gamma_sal: float, budget: int, n_ones: int, shape: tuple[int, int], *,
                      ablation_base: str = "sparse", ablation_test: str = "integer") -> int:
    """The salient count a neuron needs to stay, before the keep-alive rule.

    ``"integer"`` (the authors', ``docs/algorithm.md §7``): ``gamma_sal`` itself when it is
    >= 1 (an absolute count), else ``max(1, int(gamma_sal * base))`` with ``base = budget //
    out`` (``ablation_base="sparse"``) or the dense fan-in ``F`` (``"dense"``).

    ``"real"`` (sparsimony): a neuron fails when ``count / (n_ones // out) < gamma_sal`` in
    float64, for every ``gamma_sal`` (no absolute-count reading) and whatever
    ``ablation_base``; ``n_ones`` is the active weights before the update. As counts are
    integers the test equals ``count < t`` for the smallest integer ``t`` that passes it,
    which is returned (0 when ``n_ones // out == 0``: then ``count / 0`` is inf or NaN and
    no neuron fails). It differs from ``"integer"`` when ``gamma_sal * base`` is not an
    integer (``"integer"`` rounds the threshold down, ``"real"`` up), when the bases differ
    (after ablation ``n_ones // out < budget // out``), and when ``gamma_sal * base < 1``.

    Returns
    -------
    int
    """
    out, fan = shape
    if ablation_test == "integer":
        return ablation_threshold(gamma_sal, budget, out, fan, ablation_base)
    base = n_ones // out
    if base == 0:
        return 0
    threshold = 0
    while threshold <= fan and threshold / base < gamma_sal:
        threshold += 1
    return threshold


class Ablation(NamedTuple):
    """Ablated neurons (in rank order) and the salient threshold they failed."""
    ablated: np.ndarray        # [|A|] int64
    threshold: int


def ablate_neurons(counts: np.ndarray, threshold: int, min_neurons: int, *,
                   keep_alive: bool = True) -> Ablation:
    """Neurons whose salient count is below ``threshold``, keeping enough of them alive.

    Neurons are ranked by salient count, descending, ties by lowest index. Keep-alive rule:
    the ``min_neurons + 1`` best-ranked neurons survive whatever their counts (the
    threshold is lowered to the count of the neuron at rank ``min_neurons``), so that the
    survivors can hold the budget (``docs/algorithm.md §7``). ``min_neurons = budget // F``
    is the neurons the budget fills at the dense fan-in.

    Parameters
    ----------
    counts : ndarray of shape (out,), int64
        From ``salient_counts``.
    threshold : int
        From ``salient_threshold``.
    min_neurons : int
        ``budget // F`` (capped at ``out - 1``: a dense layer keeps every neuron).
    keep_alive : bool
        Deviation: False skips the keep-alive rule, so any number of neurons can go
        (sparsimony has no such rule). Default True (the authors').

    Returns
    -------
    Ablation
        ``ablated`` in rank order; ``threshold`` after lowering.
    """
    rank = np.argsort(-counts, kind="stable")                   # [out] int64, best first
    if keep_alive:
        pivot = rank[min(min_neurons, counts.size - 1)]
        threshold = min(threshold, int(counts[pivot]))
    ablated = rank[counts[rank] < threshold]                    # [|A|] int64
    return Ablation(ablated.astype(np.int64), int(threshold))


# ------------------------------------------------------------------ docs/algorithm.md §3
def fan_in_after_ablation(budget: int, shape: tuple[int, ...], n_ablated: int,
                          sparsity: float, *, redistribute_fan_in: bool = True) -> int:
    """The constant fan-in ``k = budget // (out - |A|)`` of the surviving neurons.

    The budget of the ablated neurons is redistributed over the survivors, so the layer
    keeps its density (``docs/algorithm.md §3``, §6.4).

    Parameters
    ----------
    budget : int
    shape : tuple of int
        Weight shape.
    n_ablated : int
    sparsity : float
        Only for the error messages.
    redistribute_fan_in : bool
        Deviation: False keeps ``k = budget // out`` whatever is ablated (sparsimony does
        not redistribute). Default True (the authors').

    Returns
    -------
    int

    Raises
    ------
    ValueError
        ``k == 0``, ``k > F``, or every neuron ablated (possible only without keep-alive).
    """
    if not redistribute_fan_in:
        return fan_in_from_budget(budget, shape, 0, sparsity)
    if n_ablated == shape[0]:
        raise ValueError(f"all {shape[0]} neurons of a layer of shape {shape} were ablated: "
                         f"no neuron is left to hold the budget B == {budget} (the "
                         f"keep-alive rule prevents this; keep_alive == False)")
    return fan_in_from_budget(budget, shape, n_ablated, sparsity)


# ------------------------------------------------------------------ docs/algorithm.md §6.5
def keep_set(weight_score: np.ndarray, n_keep: int, ablated: np.ndarray) -> np.ndarray:
    """The ``n_keep`` largest ``|W|`` over the whole layer, outside the ablated neurons.

    Pruning is layer-wise, as in RigL: a neuron can lose many weights or none. When fewer
    positive scores than ``n_keep`` remain, zero-score positions (inactive ones included)
    are kept by the tie-break; ablated rows never enter (``docs/algorithm.md §6.5``,
    §11).

    Parameters
    ----------
    weight_score : ndarray of shape (out, F), float
        ``|W|``.
    n_keep : int
    ablated : ndarray of shape (|A|,), int64

    Returns
    -------
    ndarray of shape (out, F), bool
    """
    eligible = np.ones(weight_score.shape, np.bool_)            # [out, F] bool
    eligible[ablated] = False
    return top_n(weight_score, n_keep, eligible)                 # [out, F] bool


def cap_rows(keep: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` kept positions per neuron: the ``k`` lowest column indices stay.

    The cap binds only when ``k`` shrank (a neuron revived) or the keep set is concentrated
    in a few neurons (``docs/algorithm.md §6.5``).

    Parameters
    ----------
    keep : ndarray of shape (out, F), bool
    k : int

    Returns
    -------
    ndarray of shape (out, F), bool
    """
    kept = np.zeros_like(keep)                                   # [out, F] bool
    for i in range(keep.shape[0]):
        columns = np.flatnonzero(keep[i])                        # [c_i] int64, ascending
        kept[i, columns[:k]] = True
    return kept


# ------------------------------------------------------------------ docs/algorithm.md §6.6
def regrow_rows(kept: np.ndarray, grad_score: np.ndarray, ablated: np.ndarray, k: int, *,
                regrow_emptied_rows: bool = True) -> np.ndarray:
    """Refill every surviving neuron to exactly ``k`` with its largest ``|G|`` outside ``kept``.

    Regrowth is per neuron, which is what makes the fan-in constant; a weight dropped in
    this update may be regrown (``docs/algorithm.md §6.6``).

    Parameters
    ----------
    kept : ndarray of shape (out, F), bool
        The capped keep set.
    grad_score : ndarray of shape (out, F), float
        ``|G|``.
    ablated : ndarray of shape (|A|,), int64
    k : int
    regrow_emptied_rows : bool
        Deviation: False leaves neurons with nothing kept empty (sparsimony never regrows
        a neuron that pruning emptied). Default True (the authors').

    Returns
    -------
    ndarray of shape (out, F), bool
        The grown positions (disjoint from ``kept``).
    """
    grown = np.zeros_like(kept)                                  # [out, F] bool
    is_ablated = np.zeros(kept.shape[0], np.bool_)               # [out] bool
    is_ablated[ablated] = True
    for i in range(kept.shape[0]):
        n_kept = int(kept[i].sum())
        if is_ablated[i] or n_kept >= k or (n_kept == 0 and not regrow_emptied_rows):
            continue
        candidates = np.flatnonzero(~kept[i])                    # [F - c_i] int64
        order = np.argsort(-grad_score[i, candidates], kind="stable")
        grown[i, candidates[order[:k - n_kept]]] = True
    return grown


# ------------------------------------------------------------------ docs/algorithm.md §6.7-6.8
class NewState(NamedTuple):
    """The layer after the update, and what changed."""
    mask: np.ndarray           # shape of the weight, bool
    weight: np.ndarray         # shape and dtype of the weight
    momentum: np.ndarray | None
    n_pruned: int
    n_grown: int


def apply_new_mask(weight: np.ndarray, mask: np.ndarray, kept: np.ndarray,
                   grown: np.ndarray, grown_init: float, momentum: np.ndarray | None, *,
                   reinit_grown: bool = True, mask_momentum: bool = True) -> NewState:
    """``M_new = K | grow``; ``W * M_new`` with newly grown weights at ``grown_init``.

    A grown position that was inactive before starts at ``grown_init``; a weight dropped
    and regrown in the same update keeps its value; an inactive position kept by a zero
    score keeps its zero (sign included) and is not counted as grown. ``W * M_new`` keeps
    IEEE signs: a dropped negative weight becomes -0.0 (``docs/algorithm.md §6.7``,
    §6.8, §11).

    Parameters
    ----------
    weight : ndarray, float32 or float64
    mask : ndarray, bool, shape of ``weight``
        The mask before the update.
    kept, grown : ndarray, bool, shape of ``weight``
    grown_init : float
    momentum : ndarray, shape of ``weight``, or None
    reinit_grown : bool
        Deviation: False leaves grown weights at their previous value (sparsimony discards
        its re-initialisation). As weights are zero outside the mask on input, that value
        is the input's zero, sign included. Default True (the authors').
    mask_momentum : bool
        Deviation: False returns the momentum unchanged instead of ``momentum * M_new``
        (sparsimony and jaxpruner leave the momentum of dropped weights). Default True.

    Returns
    -------
    NewState
    """
    new_mask = kept | grown                                      # [out, F] bool
    new_weight = weight * new_mask                               # [out, F] float
    if reinit_grown:
        new_weight[grown & ~mask] = grown_init
    if momentum is not None and mask_momentum:
        momentum = momentum * new_mask                           # [out, F] float
    elif momentum is not None:
        momentum = momentum.copy()
    return NewState(new_mask, new_weight, momentum, int(np.count_nonzero(mask & ~new_mask)),
                    int(np.count_nonzero(grown & ~mask)))


# ------------------------------------------------------------------ the updates
def srigl_update(weight, mask, grad, *, sparsity, drop_fraction, gamma_sal=0.3, ablation=True,
                 ablation_base="sparse", grown_init=0.0, momentum=None, tie_break="stable",
                 n_keep_offset=0, salient_grad_count="n_prune", ablation_test="integer",
                 keep_alive=True, regrow_emptied_rows=True, redistribute_fan_in=True,
                 reinit_grown=True, mask_momentum=True) -> TopologyUpdate:
    """One SRigL update of one layer, step by step (``docs/algorithm.md §6``, §7).

    Same arguments and result as ``srigl_ref.srigl_update`` (see there), canonical ties
    only. The remaining keywords are named deviations; their defaults are the authors'
    algorithm, and each one alone reproduces one difference of another implementation.
    sparsimony's SRigL (``mklasby/sparsimony``) is ``n_keep_offset=-1,
    salient_grad_count="n_keep", ablation_test="real", keep_alive=False,
    regrow_emptied_rows=False, redistribute_fan_in=False, reinit_grown=False,
    mask_momentum=False`` (and it ignores ``gamma_sal``: every value acts as 0.3).

    Parameters
    ----------
    weight, mask, grad, sparsity, drop_fraction, gamma_sal, ablation, ablation_base,
    grown_init, momentum
        As in ``srigl_ref.srigl_update``.
    tie_break : {"stable"}
        ``"torch_cpu"`` is only in the fast path (``srigl_ref.srigl_update``).
    n_keep_offset : int
        Added to ``n_keep`` (count rounding); see ``prune_keep_counts``.
    salient_grad_count : {"n_prune", "n_keep"}
        How many of the largest ``|G|`` are salient: ``n_prune`` (the authors') or
        ``n_keep`` (sparsimony); see ``salient_counts``.
    ablation_test : {"integer", "real"}
        ``count < max(1, int(gamma_sal * base))`` (the authors') or ``count / (n_ones //
        out) < gamma_sal`` (sparsimony); see ``salient_threshold``.
    keep_alive : bool
        Whether the best ``budget // F + 1`` neurons always survive; see
        ``ablate_neurons``.
    regrow_emptied_rows : bool
        Whether a surviving neuron with nothing kept is regrown; see ``regrow_rows``.
    redistribute_fan_in : bool
        ``k = budget // (out - |A|)`` (True) or ``budget // out``; see
        ``fan_in_after_ablation``.
    reinit_grown : bool
        Whether newly grown weights get ``grown_init``; see ``apply_new_mask``.
    mask_momentum : bool
        Whether the momentum is multiplied by the new mask; see ``apply_new_mask``.

    Returns
    -------
    TopologyUpdate

    Raises
    ------
    ValueError
        As ``srigl_ref.srigl_update``; ``tie_break == "torch_cpu"``; every neuron ablated.
    TypeError
        Wrong types or dtypes.
    """
    w, m, g, mom, df, init = _check_gradient_update(weight, mask, grad, momentum,
                                                    drop_fraction, grown_init, tie_break)
    _check_canonical(tie_break)
    check_choice("ablation_test", ablation_test, ABLATION_TESTS)
    s, gamma = _check_ablation(sparsity, gamma_sal, ablation, ablation_base,
                               gamma_count=ablation_test == "integer")
    _check_bool(keep_alive=keep_alive, regrow_emptied_rows=regrow_emptied_rows,
                redistribute_fan_in=redistribute_fan_in, reinit_grown=reinit_grown,
                mask_momentum=mask_momentum)
    check_int("n_keep_offset", n_keep_offset)
    check_choice("salient_grad_count", salient_grad_count, SALIENT_GRAD_COUNTS)

    out = w.shape[0]
    w2, m2, g2 = w.reshape(out, -1), m.reshape(out, -1), g.reshape(out, -1)   # [out, F]
    _check_zero_outside_mask(w2, m2)
    fan = w2.shape[1]
    budget = fan_in_budget(w.shape, s)
    weight_score, grad_score = np.abs(w2), np.abs(g2)                          # [out, F]

    counts = prune_keep_counts(m2, w2, df, n_keep_offset=n_keep_offset)
    ablated, threshold = np.zeros(0, np.int64), -1
    if ablation and gamma > 0:
        n_grad = counts.n_prune if salient_grad_count == "n_prune" else counts.n_keep
        salient = salient_counts(weight_score, grad_score, counts.n_keep, n_grad)  # [out]
        threshold = salient_threshold(gamma, budget, counts.n_ones, (out, fan),
                                      ablation_base=ablation_base,
                                      ablation_test=ablation_test)
        ablated, threshold = ablate_neurons(salient, threshold, budget // fan,
                                            keep_alive=keep_alive)
    k = fan_in_after_ablation(budget, w.shape, ablated.size, s,
                              redistribute_fan_in=redistribute_fan_in)
    kept = cap_rows(keep_set(weight_score, counts.n_keep, ablated), k)         # [out, F]
    grown = regrow_rows(kept, grad_score, ablated, k,
                        regrow_emptied_rows=regrow_emptied_rows)               # [out, F]
    new = apply_new_mask(w2, m2, kept, grown, init, _rows(mom, out),
                         reinit_grown=reinit_grown, mask_momentum=mask_momentum)
    return _result(new, kept, w.shape, ablated, k, threshold, counts)


class RiglCounts(NamedTuple):
    """RigL's counts: active weights before, dropped, kept, and grown."""
    n_ones: int
    n_prune: int
    n_keep: int
    n_grow: int


def rigl_counts(mask: np.ndarray, drop_fraction: float, *, keep_count: str = "authors",
                drop_fraction_dtype=np.float64) -> RiglCounts:
    """How many weights RigL keeps and grows (``docs/algorithm.md §8``; no nnz guard).

    ``keep_count="authors"``: ``n_prune = int(n_ones * drop_fraction)``, ``n_keep = n_ones
    - n_prune``, and ``n_prune`` are grown, so the layer keeps ``n_ones`` active weights.
    With ``drop_fraction_dtype=np.float32`` (jaxpruner's schedule is float32) the drop
    fraction is rounded to float32 and the product computed in float32.

    ``keep_count="jaxpruner"`` (jaxpruner's ``RigL``, whose top-k takes a *sparsity*):
    everything in float32, in this order::

        density   = n_ones / N                          # the mask's current density
        s_dropped = 1 - density * (1 - drop_fraction)   # the sparsity after the drop
        n_keep    = max(1, round(N * (1 - s_dropped)))  # round half to even
        n_total   = max(1, round(N * (1 - (1 - density))))

    and ``n_total - n_keep`` are grown. "Sparsity" here is the sparsity of the mask itself,
    not the layer's target ``S``. The rounding of these float32 products is where it
    departs from the authors' count (by one weight or so, in either direction).
    ``drop_fraction_dtype`` does not apply (this count is float32 throughout).

    Parameters
    ----------
    mask : ndarray, bool
    drop_fraction : float in [0, 1]
    keep_count : {"authors", "jaxpruner"}
    drop_fraction_dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    RiglCounts
    """
    n_ones = int(np.count_nonzero(mask))
    if keep_count == "authors":
        if np.dtype(drop_fraction_dtype) == np.float32:
            n_prune = int(np.float32(n_ones) * np.float32(drop_fraction))
        else:
            n_prune = int(n_ones * drop_fraction)
        return RiglCounts(n_ones, n_prune, n_ones - n_prune, n_prune)
    one, size = np.float32(1), np.float32(mask.size)
    density = np.float32(n_ones) / size
    dropped_sparsity = one - density * (one - np.float32(drop_fraction))
    n_keep = max(1, int(np.round(size * (one - dropped_sparsity))))
    n_total = max(1, int(np.round(size * (one - (one - density)))))
    return RiglCounts(n_ones, n_ones - n_keep, n_keep, n_total - n_keep)


def rigl_keep_set(weight_score: np.ndarray, mask: np.ndarray, n_keep: int, *,
                  inactive_below_active_zeros: bool = False) -> np.ndarray:
    """RigL's keep set: the ``n_keep`` largest ``|W|`` over the layer (``docs/algorithm.md §8``).

    Parameters
    ----------
    weight_score : ndarray of shape (out, F), float
        ``|W|``.
    mask : ndarray of shape (out, F), bool
    n_keep : int
    inactive_below_active_zeros : bool
        Deviation: True ranks every inactive position below every active one (jaxpruner
        scores inactive positions ``min(|W|) - eps``), so an active weight that is exactly
        0 is kept before an inactive position. Default False (the authors'): inactive and
        active zeros tie at score 0 and the lowest flat index goes first.

    Returns
    -------
    ndarray of shape (out, F), bool
    """
    if not inactive_below_active_zeros:
        return top_n(weight_score, n_keep)
    order = np.lexsort((-weight_score.ravel(), ~mask.ravel()))   # [N] int64, active first
    keep = np.zeros(mask.size, np.bool_)                         # [N] bool
    keep[order[:n_keep]] = True
    return keep.reshape(mask.shape)


def rigl_update(weight, mask, grad, *, drop_fraction, grown_init=0.0, momentum=None,
                tie_break="stable", keep_count="authors", inactive_below_active_zeros=False,
                drop_fraction_dtype=np.float64, mask_momentum=True) -> TopologyUpdate:
    """One unstructured RigL update of one layer (``docs/algorithm.md §8``).

    Keep the ``n_keep`` largest ``|W|`` over the layer, grow the largest ``|G|`` outside the
    keep set; no nnz guard, no fan-in constraint. Same arguments and result as
    ``srigl_ref.rigl_update``, canonical ties only. Named deviations (defaults: the
    authors' RigL); jaxpruner's ``RigL`` is ``keep_count="jaxpruner",
    inactive_below_active_zeros=True, mask_momentum=False`` (its float32 schedule is
    ``drop_fraction_dtype=np.float32`` for the authors' count).

    Parameters
    ----------
    weight, mask, grad, drop_fraction, grown_init, momentum
        As in ``srigl_ref.rigl_update``.
    tie_break : {"stable"}
        ``"torch_cpu"`` is only in the fast path.
    keep_count : {"authors", "jaxpruner"}
        See ``rigl_counts``.
    inactive_below_active_zeros : bool
        See ``rigl_keep_set``.
    drop_fraction_dtype : {numpy.float64, numpy.float32}
        See ``rigl_counts``.
    mask_momentum : bool
        See ``apply_new_mask``.

    Returns
    -------
    TopologyUpdate
        ``fan_in`` and ``threshold`` are -1, ``ablated`` is empty.
    """
    w, m, g, mom, df, init = _check_gradient_update(weight, mask, grad, momentum,
                                                    drop_fraction, grown_init, tie_break)
    _check_canonical(tie_break)
    check_choice("keep_count", keep_count, KEEP_COUNTS)
    _check_dtype_choice("drop_fraction_dtype", drop_fraction_dtype, DROP_FRACTION_DTYPES)
    _check_bool(inactive_below_active_zeros=inactive_below_active_zeros,
                mask_momentum=mask_momentum)
    out = w.shape[0]
    w2, m2, g2 = w.reshape(out, -1), m.reshape(out, -1), g.reshape(out, -1)   # [out, F]
    _check_zero_outside_mask(w2, m2)

    counts = rigl_counts(m2, df, keep_count=keep_count, drop_fraction_dtype=drop_fraction_dtype)
    kept = rigl_keep_set(np.abs(w2), m2, counts.n_keep,
                         inactive_below_active_zeros=inactive_below_active_zeros)
    grown = top_n(np.abs(g2), counts.n_grow, eligible=~kept)                   # [out, F]
    new = apply_new_mask(w2, m2, kept, grown, init, _rows(mom, out),
                         mask_momentum=mask_momentum)
    return _result(new, kept, w.shape, np.zeros(0, np.int64), -1, -1, counts)


def set_update(weight, mask, *, drop_fraction, rng, grown_init=0.0,
               momentum=None) -> TopologyUpdate:
    """One SET update of one layer (``docs/algorithm.md §8``): RigL's drop, random regrowth.

    Same arguments and result as ``srigl_ref.set_update``: the ``n_prune`` grown positions
    are drawn by ``rng.choice(candidates, n_prune, replace=False)`` among the positions
    outside the keep set, in flat index order, so the same ``rng`` state gives the same
    mask in both.
    """
    w, m, _, mom = _check_layer(weight, mask, None, momentum)
    df, init = _check_common(drop_fraction, grown_init, "stable")
    check_generator("rng", rng)
    out = w.shape[0]
    w2, m2 = w.reshape(out, -1), m.reshape(out, -1)                            # [out, F]
    _check_zero_outside_mask(w2, m2)

    counts = rigl_counts(m2, df)
    kept = top_n(np.abs(w2), counts.n_keep)                                    # [out, F]
    candidates = np.flatnonzero(~kept)                                         # [N - n_keep]
    grown = np.zeros(kept.size, np.bool_)                                      # [N] bool
    grown[candidates[rng.choice(candidates.size, size=counts.n_grow, replace=False)]] = True
    new = apply_new_mask(w2, m2, kept, grown.reshape(kept.shape), init, _rows(mom, out))
    return _result(new, kept, w.shape, np.zeros(0, np.int64), -1, -1, counts)


# ------------------------------------------------------------------ helpers
def _rows(a: np.ndarray | None, out: int) -> np.ndarray | None:
    """``a`` viewed as ``[out, F]`` (None stays None)."""
    return None if a is None else a.reshape(out, -1)


def _result(new: NewState, kept, shape, ablated, k, threshold, counts) -> TopologyUpdate:
    return TopologyUpdate(
        mask=new.mask.reshape(shape),
        weight=new.weight.reshape(shape),
        momentum=None if new.momentum is None else new.momentum.reshape(shape),
        kept=kept.reshape(shape),
        ablated=ablated,
        fan_in=int(k),
        threshold=int(threshold),
        n_pruned=new.n_pruned,
        n_grown=new.n_grown,
        n_keep=counts.n_keep,
        n_prune=counts.n_prune,
    )


def _check_canonical(tie_break: str) -> None:
    if tie_break != "stable":
        raise ValueError(f"tie_break == {tie_break!r} is not available in "
                         f"srigl_ref.dst.reference, which breaks ties canonically only "
                         f"(tie_break='stable'); use the fast functions "
                         f"(srigl_ref.srigl_update / rigl_update) for tie_break='torch_cpu'")


def _check_bool(**flags) -> None:
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} == {value!r}, must be a bool")


def _check_dtype_choice(name: str, value, choices) -> None:
    try:
        ok = np.dtype(value) in [np.dtype(c) for c in choices]
    except TypeError:
        ok = False
    if not ok:
        opts = ", ".join(np.dtype(c).name for c in choices)
        raise ValueError(f"{name} == {value!r}, must be one of {opts}")


def _check_zero_outside_mask(w2: np.ndarray, m2: np.ndarray) -> None:
    outside = int(np.count_nonzero(w2[~m2]))
    if outside:
        raise ValueError(f"weight has {outside} nonzero value(s) outside mask; must be zero "
                         f"there (apply weight *= mask first)")
