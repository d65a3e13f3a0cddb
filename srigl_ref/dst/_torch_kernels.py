"""@njit kernels for ``tie_break="torch_cpu"``: torch's CPU sort/topk tie order.

``docs/algorithm.md §13``.

torch on Linux/x86 sorts ``(value, index)`` pairs with the GNU C++ library's ``std::sort``
(introsort), ``std::partial_sort`` and ``std::nth_element``, comparing values only,
descending (``comp(a, b) := a.value > b.value``). These kernels are those algorithms, step
for step as docs/algorithm.md §13 describes them, on a pair held as two parallel arrays: ``v``
(the values, float32 or float64; Numba specialises per dtype) and ``ix`` (int64 indices).
Each primitive works in place on the range ``[first, last)``.

One liberty, which changes no result: the callers need the *set* of the first ``c``
positions of a sort (a top-``c`` selection), not their order. An introsort partition never
moves an element across its cut, and the final insertion sort never moves one across the
boundary of a leaf segment (it shifts only past strictly smaller values, and every value
left of a cut is >= every value right of it). So ``_introsort`` takes a range of cut
positions ``[lo, hi]`` and only works on segments that straddle one of them; every other
segment already holds exactly the elements the full sort would leave there. With
``lo = first + 1, hi = last - 1`` it is the whole ``std::sort``. ``tests/dst/naive_torch_ties.py``
is the literal, unpruned twin of every kernel here.

Self-contained: imports only numpy/numba, calls only helpers in this file. Kernels trust
their inputs (C-contiguous, finite, ``0 <= k <= n``); validation is the public boundary's job.
"""
import numpy as np
from numba import njit

_THRESHOLD = 16  # libstdc++ _S_threshold: introsort leaves at most this long


@njit(cache=True)
def _lg(n):
    """``floor(log2(n))`` for ``n >= 1``."""
    r = 0
    while n > 1:
        n >>= 1
        r += 1
    return r


@njit(cache=True)
def _swap(v, ix, i, j):
    v[i], v[j] = v[j], v[i]
    ix[i], ix[j] = ix[j], ix[i]


# ---- primitives (docs/algorithm.md §13.1) -----------------------------------------------
@njit(cache=True)
def _unguarded_insert(v, ix, i):
    val = v[i]
    vi = ix[i]
    while val > v[i - 1]:
        v[i] = v[i - 1]
        ix[i] = ix[i - 1]
        i -= 1
    v[i] = val
    ix[i] = vi


@njit(cache=True)
def _insertion_sort(v, ix, first, last):
    for i in range(first + 1, last):
        if v[i] > v[first]:
            val = v[i]
            vi = ix[i]
            for j in range(i, first, -1):
                v[j] = v[j - 1]
                ix[j] = ix[j - 1]
            v[first] = val
            ix[first] = vi
        else:
            _unguarded_insert(v, ix, i)


@njit(cache=True)
def _median_to_first(v, ix, result, x, y, z):
    if v[x] > v[y]:
        if v[y] > v[z]:
            _swap(v, ix, result, y)
        elif v[x] > v[z]:
            _swap(v, ix, result, z)
        else:
            _swap(v, ix, result, x)
    elif v[x] > v[z]:
        _swap(v, ix, result, x)
    elif v[y] > v[z]:
        _swap(v, ix, result, z)
    else:
        _swap(v, ix, result, y)


@njit(cache=True)
def _unguarded_partition(v, ix, lo, hi, pivot):
    pv = v[pivot]  # the pivot stays at ``pivot`` < lo throughout
    while True:
        while v[lo] > pv:
            lo += 1
        hi -= 1
        while pv > v[hi]:
            hi -= 1
        if not lo < hi:
            return lo
        _swap(v, ix, lo, hi)
        lo += 1


@njit(cache=True)
def _adjust_heap(v, ix, first, hole, length, val, vi):
    """Sift the hole down to a leaf, then push ``(val, vi)`` up (libstdc++ __adjust_heap)."""
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if v[first + child] > v[first + child - 1]:
            child -= 1
        v[first + hole] = v[first + child]
        ix[first + hole] = ix[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        v[first + hole] = v[first + child - 1]
        ix[first + hole] = ix[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and v[first + parent] > val:
        v[first + hole] = v[first + parent]
        ix[first + hole] = ix[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    v[first + hole] = val
    ix[first + hole] = vi


@njit(cache=True)
def _make_heap(v, ix, first, last):
    length = last - first
    for parent in range((length - 2) // 2, -1, -1):
        _adjust_heap(v, ix, first, parent, length, v[first + parent], ix[first + parent])


@njit(cache=True)
def _sort_heap(v, ix, first, last):
    while last - first > 1:
        last -= 1
        val = v[last]
        vi = ix[last]
        v[last] = v[first]
        ix[last] = ix[first]
        _adjust_heap(v, ix, first, 0, last - first, val, vi)


@njit(cache=True)
def _heap_select(v, ix, first, middle, last):
    _make_heap(v, ix, first, middle)
    for i in range(middle, last):
        if v[i] > v[first]:
            val = v[i]
            vi = ix[i]
            v[i] = v[first]
            ix[i] = ix[first]
            _adjust_heap(v, ix, first, 0, middle - first, val, vi)


# ---- the three algorithms (docs/algorithm.md §13.2) -------------------------------------
@njit(cache=True)
def _straddles(first, last, lo, hi):
    """Whether some cut ``c`` in ``[lo, hi]`` has ``first < c < last``."""
    return max(first + 1, lo) <= min(last - 1, hi)


@njit(cache=True)
def _introsort(v, ix, first, last, depth, lo, hi):
    """``std::sort`` of ``[first, last)`` with depth limit ``depth`` (``2*lg(n)`` in the STL).

    Afterwards, for every cut ``c`` in ``[lo, hi]``, ``ix[first:c]`` holds the same set of
    elements as after the full ``std::sort``, and every segment straddling such a cut is in
    the full sort's order (module docstring); ``lo = first + 1, hi = last - 1`` sorts fully.
    ``introsort_loop``'s recursion on the right part becomes an explicit stack (segments are
    independent, so the visiting order changes nothing); depths on the stack strictly
    decrease, hence at most ``depth + 1`` entries.
    """
    stack = np.empty((depth + 2, 3), dtype=np.int64)  # rows: (first, last, depth)
    stack[0, 0] = first
    stack[0, 1] = last
    stack[0, 2] = depth
    top = 1
    while top > 0:
        top -= 1
        first = stack[top, 0]
        last = stack[top, 1]
        depth = stack[top, 2]
        while _straddles(first, last, lo, hi):
            if last - first <= _THRESHOLD:  # a leaf: its share of final_insertion_sort
                _insertion_sort(v, ix, first, last)
                break
            if depth == 0:
                _make_heap(v, ix, first, last)
                _sort_heap(v, ix, first, last)
                break
            depth -= 1
            mid = first + (last - first) // 2
            _median_to_first(v, ix, first, first + 1, mid, last - 1)
            cut = _unguarded_partition(v, ix, first + 1, last, first)
            stack[top, 0] = cut
            stack[top, 1] = last
            stack[top, 2] = depth
            top += 1
            last = cut


@njit(cache=True)
def _introselect(v, ix, first, nth, last, depth):
    """``std::nth_element(first, nth, last)`` with depth limit ``depth`` (``2*lg(n)``)."""
    while last - first > 3:
        if depth == 0:
            _heap_select(v, ix, first, nth + 1, last)
            _swap(v, ix, first, nth)
            return
        depth -= 1
        mid = first + (last - first) // 2
        _median_to_first(v, ix, first, first + 1, mid, last - 1)
        cut = _unguarded_partition(v, ix, first + 1, last, first)
        if cut <= nth:
            first = cut
        else:
            last = cut
    _insertion_sort(v, ix, first, last)


# ---- how torch uses them (docs/algorithm.md §13.3) --------------------------------------
@njit(cache=True)
def _sort(v, ix, lo, hi):
    """``torch.sort(descending=True)`` on the whole pair array, exact at cuts ``[lo, hi]``."""
    n = v.size
    if n > 0:
        _introsort(v, ix, 0, n, 2 * _lg(n), lo, hi)


@njit(cache=True)
def _topk(v, ix, k, sorted_, lo, hi):
    """``torch.topk(largest=True, sorted=sorted_)``: the result is ``ix[:k]``.

    ``k * 64 <= n``: ``partial_sort(0, k, n)``; else ``nth_element(0, k-1, n)`` and, if
    ``sorted_``, ``sort(0, k-1)``. The sorting steps are exact at cuts ``[lo, hi]`` only
    (``[1, k - 1]``: torch's order; ``[k, k]``: the set ``ix[:k]`` alone, which no sorting
    of the head changes).
    """
    n = v.size
    if k == 0:
        return
    if k * 64 <= n:
        _heap_select(v, ix, 0, k, n)
        if _straddles(0, k, lo, hi):
            _sort_heap(v, ix, 0, k)
    else:
        _introselect(v, ix, 0, k - 1, n, 2 * _lg(n))  # k <= n, so nth = k - 1 != n
        if sorted_ and k > 1:
            _introsort(v, ix, 0, k - 1, 2 * _lg(k - 1), lo, hi)


@njit(cache=True)
def _pairs(values):
    """A fresh pair array ``(values.copy(), arange)`` from a 1-D array."""
    return values.copy(), np.arange(values.size, dtype=np.int64)


@njit(cache=True)
def sort_desc_indices(values):
    """Indices of ``torch.sort(values, descending=True)`` (CPU, unstable); int64 ``[n]``."""
    v, ix = _pairs(values)
    _sort(v, ix, 1, v.size - 1)
    return ix


@njit(cache=True)
def topk_indices(values, k, sorted_):
    """Indices of ``torch.topk(values, k, sorted=sorted_)`` (CPU), in torch's order; int64 [k]."""
    v, ix = _pairs(values)
    _topk(v, ix, k, sorted_, 1, k - 1)
    return ix[:k].copy()


# ---- the SRigL / RigL stages (docs/algorithm.md §13.4) ----------------------------------
@njit(cache=True)
def _mark_sorted_head(scores, b, marked):
    """``marked[sort(scores)[:b]] = True`` (item 1); scores 1-D, marked bool, same size."""
    v, ix = _pairs(scores)
    _sort(v, ix, b, b)
    for j in range(b):
        marked[ix[j]] = True


@njit(cache=True)
def salient_counts(sd, sg, n_keep, n_prune):
    """Per-row count of the magnitude- or gradient-salient positions (docs/algorithm.md §7).

    sd, sg : [out, F] float (C-contiguous); returns int64 ``[out]``.
    """
    out, fan = sd.shape
    n = out * fan
    salient = np.zeros(n, dtype=np.bool_)                  # [N] bool
    _mark_sorted_head(sd.reshape(n), n_keep, salient)
    _mark_sorted_head(sg.reshape(n), n_prune, salient)
    counts = np.zeros(out, dtype=np.int64)                  # [out] int64
    for p in range(n):
        if salient[p]:
            counts[p // fan] += 1
    return counts


@njit(cache=True)
def srigl_keep_grow(sd, sg, ablated, n_keep, k):
    """Keep, cap and grow of one SRigL update in torch's tie order (docs/algorithm.md §6.5-6.6).

    sd, sg : [out, F] float (C-contiguous, same dtype); ablated : int64 ``[|A|]``, ascending
    row indices. Returns ``(keep, grow)``, bool ``[out, F]`` each: the capped keep set and
    torch's grow mask (disjoint from keep unless ``min(sg[i]) - 1`` rounds to ``min(sg[i])``).
    """
    out, fan = sd.shape
    n = out * fan
    # item 2: ablated rows go to min(sd) - 1, the minimum taken over the layer as modified
    # so far. That minimum is the previous row's value, so one scan suffices. The
    # subtraction runs in float64 and is stored in sd's dtype: for float32 that equals
    # float32 arithmetic (double rounding is innocuous for a difference of two floats).
    v, ix = _pairs(sd.reshape(n))                           # [N]
    if ablated.size > 0:
        low = v.min()
        for i in ablated:
            v[i * fan:(i + 1) * fan] = low - 1
            low = v[i * fan]
    _topk(v, ix, n_keep, False, n_keep, n_keep)
    keep = np.zeros(n, dtype=np.bool_)                      # [N] bool
    for j in range(n_keep):
        keep[ix[j]] = True
    grow = np.zeros(n, dtype=np.bool_)                      # [N] bool
    is_ablated = np.zeros(out, dtype=np.bool_)              # [out] bool
    for i in ablated:
        is_ablated[i] = True
    rv = np.empty(fan, dtype=sd.dtype)                      # [F] per-row pair buffer
    rix = np.empty(fan, dtype=np.int64)
    for i in range(out):
        row = keep[i * fan:(i + 1) * fan]                   # view into keep
        c = 0
        for j in range(fan):
            c += row[j]
        if c > k:
            # item 3, the cap: sort the row as 0/1 values; clear positions after the
            # first k. Rows with c <= k have all their ones among the first k: no-op.
            for j in range(fan):
                rv[j] = 1.0 if row[j] else 0.0
                rix[j] = j
            _sort(rv, rix, k, k)
            for j in range(k, fan):
                row[rix[j]] = False
        elif c < k and not is_ablated[i]:
            # item 4, grow: kept positions lifted to min(sg[i]) - 1, topk of k - c; the
            # final sort of topk(sorted=True) only orders the chosen set, so it is skipped.
            low = sg[i].min()
            for j in range(fan):
                rv[j] = low - 1 if row[j] else sg[i, j]
                rix[j] = j
            _topk(rv, rix, k - c, False, k - c, k - c)
            for j in range(k - c):
                grow[i * fan + rix[j]] = True
    return keep.reshape(out, fan), grow.reshape(out, fan)


@njit(cache=True)
def rigl_keep_grow(sd, sg, n_keep, n_prune):
    """Keep and grow of one RigL update in torch's tie order (docs/algorithm.md §8).

    sd, sg : [N] float (same dtype). Returns ``(keep, grow)``, bool ``[N]`` each (grow is
    disjoint from keep unless ``min(sg) - 1`` rounds to ``min(sg)``).
    """
    n = sd.size
    v, ix = _pairs(sd)
    _topk(v, ix, n, True, n_keep, n_keep)                   # topk(|W|, N)[:n_keep]
    keep = np.zeros(n, dtype=np.bool_)                      # [N] bool
    for j in range(n_keep):
        keep[ix[j]] = True
    low = sg.min()
    for p in range(n):
        v[p] = low - 1 if keep[p] else sg[p]
        ix[p] = p
    _topk(v, ix, n, True, n_prune, n_prune)                 # topk(lifted, N)[:n_prune]
    grow = np.zeros(n, dtype=np.bool_)                      # [N] bool
    for j in range(n_prune):
        grow[ix[j]] = True
    return keep, grow
