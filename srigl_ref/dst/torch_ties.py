"""``tie_break="torch_cpu"``: the authors' PyTorch CPU tie order (docs/algorithm.md §13).

The stages of one SRigL / RigL update whose winners an unstable torch sort decides
(docs/algorithm.md §13.4, items 1-5), plus torch's ``sort`` and
``topk`` themselves: thin wrappers over ``_torch_kernels``. The caller
(``srigl_ref.dst.topology``) has validated its inputs and computed the counts.

``salient_counts_stage`` and ``keep_grow_stage`` compose them with the canonical stages
of ``stages.py``: where no selection boundary is tied and the cap does not bind, every tie
order selects the same sets, so the canonical result *is* torch's (given
``lifts_exact``); otherwise the stage is redone by the emulation, and a tied regrowth
boundary redoes only its row (ties in float data are rare and local).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _torch_kernels as _tk
from . import stages
from .ranking import magnitude_keys


class NewMask(NamedTuple):
    """The new mask of one update and its keep set, bool, the layer's shape as given."""
    mask: np.ndarray
    kept: np.ndarray


def lifts_exact(w2: np.ndarray, g2: np.ndarray) -> bool:
    """Whether torch's "min(score) - 1" lifts are strictly below every score.

    True unless some ``|W|`` or ``|G|`` reaches ``2**24`` (float32; ``2**53`` float64),
    where subtracting 1 can round back to the minimum and tie with it.
    """
    limit = 2.0 ** (24 if w2.dtype == np.float32 else 53)
    return max(_max_abs(w2), _max_abs(g2)) < limit


def _max_abs(a: np.ndarray) -> float:
    """``max(|a|)`` (0 for an empty array) without materialising ``|a|``."""
    return max(a.max(initial=0), -a.min(initial=0))


def salient_counts_stage(w2: np.ndarray, g2: np.ndarray, n_keep: int, n_prune: int,
                         exact: bool) -> stages.Salient:
    """``stages.salient_counts`` with counts in torch's tie order (item 1).

    Parameters
    ----------
    w2, g2 : ndarray of shape (out, F), float32 or float64 (the same), C-contiguous
        ``W`` and ``G`` with each neuron flattened.
    n_keep, n_prune : int
        After the nnz guard.
    exact : bool
        ``lifts_exact(w2, g2)``.

    Returns
    -------
    stages.Salient
        ``keep`` and ``grad`` are the canonical thresholds (``keep`` serves the canonical
        keep stage); ``counts`` are torch's.
    """
    canonical = stages.salient_counts(magnitude_keys(w2), magnitude_keys(g2), n_keep, n_prune)
    if canonical.tie_free and exact:
        return canonical
    return canonical._replace(counts=salient_counts_torch(np.abs(w2), np.abs(g2), n_keep,
                                                          n_prune))


def keep_grow_stage(w2: np.ndarray, g2: np.ndarray, keep: stages.Threshold,
                    ablated: np.ndarray, n_keep: int, k: int, exact: bool) -> NewMask:
    """``stages.keep_grow`` in torch's tie order (items 2-4).

    Parameters
    ----------
    w2, g2 : ndarray of shape (out, F), float32 or float64 (the same), C-contiguous
    keep : stages.Threshold
        The canonical keep threshold (top ``n_keep`` ``|W|`` outside the ablated rows).
    ablated : ndarray of shape (n_ablated,), int64
    n_keep : int
        After the nnz guard.
    k : int
        Constant fan-in after ablation, ``1 <= k <= F``.
    exact : bool
        ``lifts_exact(w2, g2)``.

    Returns
    -------
    NewMask
        bool (out, F) each.
    """
    out, fan = w2.shape
    ablated_row = np.zeros(out, np.bool_)                                     # [out] bool
    ablated_row[ablated] = True
    canonical = stages.keep_grow(magnitude_keys(w2), magnitude_keys(g2), keep, ablated_row, k)
    eligible = (out - ablated.size) * fan
    if not (exact and canonical.keep_tie_free and n_keep <= eligible):
        keep_set, grow = srigl_keep_grow_torch(np.abs(w2), np.abs(g2), ablated, n_keep, k)
        return NewMask(keep_set | grow, keep_set)
    mask, kept = canonical.mask, canonical.kept                               # [out, F] bool
    for i in np.flatnonzero(canonical.grow_tied):                             # item 4
        sg = np.abs(g2[i])                                                    # [F]
        lifted = np.where(kept[i], sg.min() - 1, sg)
        grown = torch_topk(lifted, k - int(kept[i].sum()), sorted=True)
        mask[i] = kept[i]
        mask[i, grown] = True
    return NewMask(mask, kept)


def torch_sort_desc(values: np.ndarray) -> np.ndarray:
    """Indices of ``torch.sort(values, descending=True)`` on CPU (unstable; introsort).

    Parameters
    ----------
    values : ndarray of shape (n,), float32 or float64
        Finite scores.

    Returns
    -------
    order : ndarray of shape (n,), int64
        The permutation torch returns: values descending, ties in libstdc++ ``std::sort``
        order (docs/algorithm.md §13.3).
    """
    return _tk.sort_desc_indices(np.ascontiguousarray(values))


def torch_topk(values: np.ndarray, k: int, sorted: bool = True) -> np.ndarray:
    """Indices of ``torch.topk(values, k, largest=True, sorted=sorted)`` on CPU.

    ``partial_sort`` when ``k * 64 <= n``, else ``nth_element`` and, if ``sorted``, a sort
    of the first ``k - 1`` (docs/algorithm.md §13.3).

    Parameters
    ----------
    values : ndarray of shape (n,), float32 or float64
        Finite scores.
    k : int
        How many, ``0 <= k <= n``.
    sorted : bool
        torch's ``sorted`` flag.

    Returns
    -------
    indices : ndarray of shape (k,), int64
        In the order torch returns them.
    """
    return _tk.topk_indices(np.ascontiguousarray(values), int(k), bool(sorted))


def salient_counts_torch(sd: np.ndarray, sg: np.ndarray, n_keep: int,
                         n_prune: int) -> np.ndarray:
    """Salient positions per neuron for ablation, in torch's tie order (docs/algorithm.md §7).

    The magnitude-salient set is ``torch.sort(sd.ravel(), descending=True)[:n_keep]``, the
    gradient-salient set ``torch.sort(sg.ravel(), descending=True)[:n_prune]``
    (docs/algorithm.md §13.4 item 1); a row's count is the size of the union within it.

    Parameters
    ----------
    sd, sg : ndarray of shape (out, F), float32 or float64 (the same)
        ``|W|`` and ``|G|`` with each neuron flattened, ``F = prod(shape[1:])``.
    n_keep, n_prune : int
        Section 6 step 2, after the nnz guard; each in ``[0, out * F]``.

    Returns
    -------
    counts : ndarray of shape (out,), int64
    """
    return _tk.salient_counts(np.ascontiguousarray(sd), np.ascontiguousarray(sg),
                              int(n_keep), int(n_prune))


def srigl_keep_grow_torch(sd: np.ndarray, sg: np.ndarray, ablated: np.ndarray, n_keep: int,
                          k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep and grow sets of one SRigL update in torch's tie order (docs/algorithm.md §6.5-6.6).

    docs/algorithm.md §13.4 items 2-4: rows of ``ablated``, in ascending row order, are set to
    ``min(sd) - 1`` (minimum over the layer as modified so far); keep =
    ``topk(sd.ravel(), n_keep, sorted=False)``; the cap sorts each row of keep as 0/1
    values, descending, and clears the positions after the first ``k``; then each row
    ``i`` not ablated with ``c_i < k`` kept grows ``topk(where(keep_i, min(sg[i]) - 1,
    sg[i]), k - c_i, sorted=True)``.

    Parameters
    ----------
    sd, sg : ndarray of shape (out, F), float32 or float64 (the same)
        ``|W|`` and ``|G|`` with each neuron flattened.
    ablated : ndarray of shape (n_ablated,), int64
        Ablated neurons in any order (docs/algorithm.md §7 gives them by count); distinct.
    n_keep : int
        Section 6 step 2, after the nnz guard; in ``[0, out * F]``.
    k : int
        Constant fan-in after ablation, ``1 <= k <= F``.

    Returns
    -------
    keep : ndarray of shape (out, F), bool
        The keep set after the cap.
    grow : ndarray of shape (out, F), bool
        torch's grow mask. The new mask is ``keep | grow``; positions in ``grow`` that were
        inactive in the old mask get ``grown_init``, all others keep their weight (an
        inactive ``-0.0`` reached by the keep set stays ``-0.0``: docs/algorithm.md §6.7).
        Disjoint from ``keep`` unless ``min(sg[i]) - 1`` rounds to ``min(sg[i])``.
    """
    ablated = np.sort(np.asarray(ablated, dtype=np.int64))
    return _tk.srigl_keep_grow(np.ascontiguousarray(sd), np.ascontiguousarray(sg), ablated,
                               int(n_keep), int(k))


def rigl_keep_grow_torch(sd: np.ndarray, sg: np.ndarray, n_keep: int,
                         n_prune: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep and grow sets of one RigL update in torch's tie order (docs/algorithm.md §8).

    docs/algorithm.md §13.4 item 5: keep = ``topk(sd, N, sorted=True)[:n_keep]``; grow =
    ``topk(where(keep, min(sg) - 1, sg), N, sorted=True)[:n_prune]``.

    Parameters
    ----------
    sd, sg : ndarray of shape (N,), float32 or float64 (the same)
        ``|W|`` and ``|G|`` flattened over the layer.
    n_keep, n_prune : int
        Section 8; ``n_keep + n_prune <= N``.

    Returns
    -------
    keep, grow : ndarray of shape (N,), bool
        As for :func:`srigl_keep_grow_torch`: new mask ``keep | grow``, ``grown_init`` at
        ``grow`` positions inactive before.
    """
    return _tk.rigl_keep_grow(np.ascontiguousarray(sd), np.ascontiguousarray(sg),
                              int(n_keep), int(n_prune))
