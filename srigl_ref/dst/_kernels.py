"""Numba kernels of the SRigL/RigL topology update (stable tie-break; docs/algorithm.md §1, §6-8).

Scores are magnitudes ``|W|`` and ``|G|``. Kernels never see floats: they get the raw bits
of the weight/gradient viewed as signed ints (``int32`` for float32, ``int64`` for float64)
together with ``absmask`` (the bits below the sign) and ``nbits`` (31 or 63). For
non-negative floats the integer order of the bits *is* the float order, so ``key = bits &
absmask`` is an exact, order-preserving key of ``|x|`` (``-0.0`` and ``+0.0`` both map to 0).

Selection ("the ``n`` largest, ties by ascending flat index") never sorts the layer: a radix
select finds the threshold key ``t`` and the number ``take`` of keys equal to ``t`` that are
selected, i.e. ``selected(p) = key(p) > t or (key(p) == t and p is among the first ``take``
positions with key t)``. Cost: one 16-bit histogram pass over the layer, one pass gathering
the boundary bucket, then 8-bit passes over that (small) bucket only.

This file is self-contained: it imports only numpy and numba and calls only its own helpers
(Numba's on-disk cache does not notice changes in other files). Kernels trust their inputs.
Each kernel's readable twin is in ``srigl_ref/dst/reference.py``.
"""
import numpy as np
from numba import njit

_LEVEL1_BITS = 16  # first radix level: a 65536-bin histogram over the whole layer
_DIGIT_BITS = 8    # later levels: 256 bins over the boundary bucket only


@njit(cache=True)
def _refine_threshold(buf, m, r, low_bits):
    """Threshold of the ``r`` largest among ``buf[:m]`` (keys that agree above ``low_bits``).

    ``buf`` : int64 [>= m], scratch, reordered in place. ``1 <= r <= m``.
    Returns ``(t, take, tied)``: the ``r`` largest are all keys ``> t`` plus ``take`` keys
    ``== t``; ``tied`` says that more keys equal ``t`` than are taken (the selected *set*
    then depends on the tie-break; otherwise every tie-break selects the same set).
    """
    hist = np.empty(1 << _DIGIT_BITS, np.int64)
    shift = low_bits
    while m > r and shift > 0:
        shift = max(shift - _DIGIT_BITS, 0)
        hist[:] = 0
        for i in range(m):
            hist[(buf[i] >> shift) & 255] += 1
        b = 255
        above = 0
        while above + hist[b] < r:
            above += hist[b]
            b -= 1
        r -= above
        j = 0
        for i in range(m):
            if ((buf[i] >> shift) & 255) == b:
                buf[j] = buf[i]
                j += 1
        m = j
    t = buf[0]
    for i in range(1, m):
        if buf[i] < t:
            t = buf[i]
    if m > r:        # all m remaining keys are equal (shift reached 0): take r of them
        return t, r, True
    take = 0         # m == r: every remaining key is selected, among them all keys == t
    for i in range(m):
        if buf[i] == t:
            take += 1
    return t, take, False


@njit(cache=True)
def layer_threshold(bits, absmask, nbits, row_skip, pos_skip, n):
    """Threshold of the ``n`` largest keys of a layer, ties by ascending flat index.

    Parameters
    ----------
    bits : int32 or int64 [out, F]
        Raw bits of the scores' source (weight or gradient).
    absmask, nbits : int
        ``2**nbits - 1`` and ``nbits`` (31 for float32, 63 for float64).
    row_skip : bool [out]
        Rows excluded from the selection (ablated neurons).
    pos_skip : bool [out, F] or [0, 0]
        Positions excluded from the selection; an empty array disables the check.
    n : int
        How many to select; clipped to the number of eligible positions.

    Returns
    -------
    t, take : int
        Selected = eligible and (key > t or key == t among the first ``take`` such).
        ``n == 0`` returns ``(absmask, 0, False)``, which selects nothing.
    tied : bool
        Keys equal to ``t`` are left out: another tie-break could select another set.
    """
    out, fan = bits.shape
    use_pos = pos_skip.size > 0
    low_bits = nbits - _LEVEL1_BITS
    hist = np.zeros(1 << _LEVEL1_BITS, np.int64)
    n_eligible = 0
    for i in range(out):
        if row_skip[i]:
            continue
        for j in range(fan):
            if use_pos and pos_skip[i, j]:
                continue
            hist[(np.int64(bits[i, j]) & absmask) >> low_bits] += 1
            n_eligible += 1
    n = min(n, n_eligible)
    if n <= 0:
        return np.int64(absmask), 0, False
    b = (1 << _LEVEL1_BITS) - 1
    above = 0
    while above + hist[b] < n:
        above += hist[b]
        b -= 1
    buf = np.empty(hist[b], np.int64)
    m = 0
    for i in range(out):
        if row_skip[i]:
            continue
        for j in range(fan):
            if use_pos and pos_skip[i, j]:
                continue
            key = np.int64(bits[i, j]) & absmask
            if (key >> low_bits) == b:
                buf[m] = key
                m += 1
    return _refine_threshold(buf, m, n - above, low_bits)


@njit(cache=True)
def select_top(bits, absmask, nbits, row_skip, pos_skip, n):
    """Boolean [out, F] mask of the ``n`` largest eligible keys (docs/algorithm.md §1); ``tied``.

    Arguments and ``tied`` as in ``layer_threshold``. Readable twin: ``reference.top_n``.
    """
    t, take, tied = layer_threshold(bits, absmask, nbits, row_skip, pos_skip, n)
    out, fan = bits.shape
    use_pos = pos_skip.size > 0
    selected = np.zeros((out, fan), np.bool_)
    n_eq = 0
    for i in range(out):
        if row_skip[i]:
            continue
        for j in range(fan):
            if use_pos and pos_skip[i, j]:
                continue
            key = np.int64(bits[i, j]) & absmask
            if key > t:
                selected[i, j] = True
            elif key == t:
                selected[i, j] = n_eq < take
                n_eq += 1
    return selected, tied


@njit(cache=True)
def nonzero_counts(bits, absmask, mask):
    """``(count_nonzero(W), count_nonzero(W[~mask]))`` for ``bits`` [out, F] of ``W``."""
    out, fan = bits.shape
    nnz = 0
    outside = 0
    for i in range(out):
        for j in range(fan):
            if np.int64(bits[i, j]) & absmask:
                nnz += 1
                if not mask[i, j]:
                    outside += 1
    return nnz, outside


@njit(cache=True)
def salient_counts(wbits, wabsmask, tw, take_w, gbits, gabsmask, tg, take_g):
    """Per-neuron count of salient positions (docs/algorithm.md §7).

    salient = (top ``n_keep`` of ``|W|``) union (top ``n_prune`` of ``|G|``), both over the
    whole layer, active or not, given as thresholds ``(tw, take_w)`` and ``(tg, take_g)``
    from ``layer_threshold``. Returns int64 [out]. Slow twin: ``naive.salient_counts``.
    """
    out, fan = wbits.shape
    counts = np.zeros(out, np.int64)
    eq_w = 0
    eq_g = 0
    for i in range(out):
        c = 0
        for j in range(fan):
            kw = np.int64(wbits[i, j]) & wabsmask
            kg = np.int64(gbits[i, j]) & gabsmask
            salient = kw > tw or kg > tg
            if kw == tw:
                salient = salient or eq_w < take_w
                eq_w += 1
            if kg == tg:
                salient = salient or eq_g < take_g
                eq_g += 1
            if salient:
                c += 1
        counts[i] = c
    return counts


@njit(cache=True)
def srigl_keep_grow(wbits, wabsmask, t, take, gbits, gabsmask, gnbits, ablated_row, k):
    """New constant fan-in mask of one SRigL update (docs/algorithm.md §6.5-6.6).

    Keep: the ``n_keep`` largest ``|W|`` over the non-ablated rows, given as the threshold
    ``(t, take)`` of ``layer_threshold`` with ``row_skip=ablated_row`` (ablated rows score
    below everything and are never kept), capped per row to its ``k`` lowest kept indices.
    Grow: each non-ablated row with ``c < k`` kept adds the ``k - c`` largest ``|G|`` among
    its positions outside the keep set. Ties by ascending flat (row: column) index.

    Returns
    -------
    new_mask : bool [out, F]
        Exactly ``k`` per non-ablated row, none in ablated rows.
    kept : bool [out, F]
        The keep set after the cap (``new_mask & ~kept`` are the grown positions).
    n_capped : int
        Rows whose kept positions exceeded ``k`` (the cap chose among them).
    grow_tied : bool [out]
        Rows whose grow boundary was tied (the tie-break chose among equal ``|G|``).
    """
    out, fan = wbits.shape
    new_mask = np.zeros((out, fan), np.bool_)
    kept = np.zeros((out, fan), np.bool_)
    row_keys = np.empty(fan, np.int64)
    n_eq = 0
    n_capped = 0
    grow_tied = np.zeros(out, np.bool_)
    for i in range(out):
        if ablated_row[i]:
            continue
        c = 0
        capped = False
        for j in range(fan):
            key = np.int64(wbits[i, j]) & wabsmask
            keep = key > t
            if key == t:
                keep = n_eq < take
                n_eq += 1
            if keep:
                if c < k:            # the cap: the first k kept positions of the row
                    new_mask[i, j] = True
                    kept[i, j] = True
                    c += 1
                else:
                    capped = True
        if capped:
            n_capped += 1
        n_grow = k - c
        if n_grow == 0:
            continue
        m = 0
        for j in range(fan):
            if not new_mask[i, j]:
                row_keys[m] = np.int64(gbits[i, j]) & gabsmask
                m += 1
        tg, take_g, tied = _refine_threshold(row_keys, m, n_grow, gnbits)
        grow_tied[i] = tied
        n_eq_g = 0
        for j in range(fan):
            if new_mask[i, j]:
                continue
            key = np.int64(gbits[i, j]) & gabsmask
            if key > tg:
                new_mask[i, j] = True
            elif key == tg:
                new_mask[i, j] = n_eq_g < take_g
                n_eq_g += 1
    return new_mask, kept, n_capped, grow_tied


@njit(cache=True)
def apply_mask(weight, mask, new_mask, kept, grown_init):
    """docs/algorithm.md §6.7-6.8 on flat arrays: ``W * M_new``; grown-from-inactive = init.

    ``weight`` float [N]; ``mask``, ``new_mask``, ``kept`` bool [N]. Grown = ``new_mask &
    ~kept``; of those, positions inactive in ``mask`` get ``grown_init`` (a dropped and
    regrown weight keeps its value; an inactive position entering the keep set by a zero
    score keeps its zero, sign included, and is not counted as grown). Returns
    ``(weight_out, n_pruned, n_grown)``: ``W * M_new`` keeps IEEE signs (pruned negatives
    become -0.0); ``n_pruned`` counts positions active before and not after.
    """
    out = np.empty_like(weight)
    n_pruned = 0
    n_grown = 0
    for p in range(weight.size):
        if new_mask[p]:
            if mask[p] or kept[p]:
                out[p] = weight[p]
            else:
                out[p] = grown_init
                n_grown += 1
        else:
            out[p] = weight[p] * 0.0
            if mask[p]:
                n_pruned += 1
    return out, n_pruned, n_grown
