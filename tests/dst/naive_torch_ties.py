"""Slow, literal transcription of docs/algorithm.md §13 (the libstdc++ algorithms torch CPU uses).

The algorithmic reference for ``srigl_ref/dst/_torch_kernels.py``: every function below is a
line-by-line copy of the spec page, in pure Python, on a list ``a`` of ``(value, index)``
pairs, with recursion where the spec recurses and nothing skipped. Comparisons are
descending by value only: ``comp(x, y) := x.value > y.value``. Never used by the package.
"""
from __future__ import annotations

import numpy as np

THRESHOLD = 16  # libstdc++ _S_threshold


def comp(x, y) -> bool:
    return x[0] > y[0]


def lg(n: int) -> int:
    return n.bit_length() - 1


def pairs(values) -> list:
    return [(v, i) for i, v in enumerate(values)]


def swap(a, i, j) -> None:
    a[i], a[j] = a[j], a[i]


# ---- primitives -------------------------------------------------------------------------
def insertion_sort(a, first, last) -> None:
    for i in range(first + 1, last):
        if comp(a[i], a[first]):
            val = a[i]
            a[first + 1:i + 1] = a[first:i]
            a[first] = val
        else:
            unguarded_insert(a, i)


def unguarded_insert(a, i) -> None:
    val = a[i]
    while comp(val, a[i - 1]):
        a[i] = a[i - 1]
        i -= 1
    a[i] = val


def final_insertion_sort(a, first, last) -> None:
    if last - first > THRESHOLD:
        insertion_sort(a, first, first + THRESHOLD)
        for i in range(first + THRESHOLD, last):
            unguarded_insert(a, i)
    else:
        insertion_sort(a, first, last)


def median_to_first(a, result, x, y, z) -> None:
    if comp(a[x], a[y]):
        if comp(a[y], a[z]):
            swap(a, result, y)
        elif comp(a[x], a[z]):
            swap(a, result, z)
        else:
            swap(a, result, x)
    elif comp(a[x], a[z]):
        swap(a, result, x)
    elif comp(a[y], a[z]):
        swap(a, result, z)
    else:
        swap(a, result, y)


def unguarded_partition(a, lo, hi, pivot) -> int:
    while True:
        while comp(a[lo], a[pivot]):
            lo += 1
        hi -= 1
        while comp(a[pivot], a[hi]):
            hi -= 1
        if not lo < hi:
            return lo
        swap(a, lo, hi)
        lo += 1


def adjust_heap(a, first, hole, length, value) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if comp(a[first + child], a[first + child - 1]):
            child -= 1
        a[first + hole] = a[first + child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[first + hole] = a[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and comp(a[first + parent], value):
        a[first + hole] = a[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    a[first + hole] = value


def make_heap(a, first, last) -> None:
    length = last - first
    if length < 2:
        return
    for parent in range((length - 2) // 2, -1, -1):
        adjust_heap(a, first, parent, length, a[first + parent])


def sort_heap(a, first, last) -> None:
    while last - first > 1:
        last -= 1
        value = a[last]
        a[last] = a[first]
        adjust_heap(a, first, 0, last - first, value)


def heap_select(a, first, middle, last) -> None:
    make_heap(a, first, middle)
    for i in range(middle, last):
        if comp(a[i], a[first]):
            value = a[i]
            a[i] = a[first]
            adjust_heap(a, first, 0, middle - first, value)


# ---- the three algorithms ---------------------------------------------------------------
def sort(a, first, last, depth=None) -> None:
    """``std::sort``; ``depth`` overrides ``2*lg(n)`` (to reach the heap-sort fallback)."""
    n = last - first
    if n > 0:
        introsort_loop(a, first, last, 2 * lg(n) if depth is None else depth)
        final_insertion_sort(a, first, last)


def introsort_loop(a, first, last, depth) -> None:
    while last - first > THRESHOLD:
        if depth == 0:
            make_heap(a, first, last)
            sort_heap(a, first, last)
            return
        depth -= 1
        mid = first + (last - first) // 2
        median_to_first(a, first, first + 1, mid, last - 1)
        cut = unguarded_partition(a, first + 1, last, first)
        introsort_loop(a, cut, last, depth)
        last = cut


def partial_sort(a, first, middle, last) -> None:
    heap_select(a, first, middle, last)
    sort_heap(a, first, middle)


def nth_element(a, first, nth, last, depth=None) -> None:
    """``std::nth_element`` (introselect); ``depth`` overrides ``2*lg(last - first)``."""
    if depth is None:
        depth = 2 * lg(last - first)
    while last - first > 3:
        if depth == 0:
            heap_select(a, first, nth + 1, last)
            swap(a, first, nth)
            return
        depth -= 1
        mid = first + (last - first) // 2
        median_to_first(a, first, first + 1, mid, last - 1)
        cut = unguarded_partition(a, first + 1, last, first)
        if cut <= nth:
            first = cut
        else:
            last = cut
    insertion_sort(a, first, last)


# ---- how torch uses them ----------------------------------------------------------------
def torch_sort_desc(values) -> list[int]:
    """``torch.sort(x, descending=True)`` on CPU: the indices in sorted order."""
    a = pairs(values)
    sort(a, 0, len(a))
    return [i for _, i in a]


def torch_topk(values, k: int, sorted: bool = True) -> list[int]:
    """``torch.topk(x, k, largest=True, sorted=sorted)`` on CPU: the indices of the result."""
    a = pairs(values)
    n = len(a)
    if k == 0:
        return []
    if k * 64 <= n:
        partial_sort(a, 0, k, n)
    else:
        if k - 1 != n:
            nth_element(a, 0, k - 1, n)
        if sorted:
            sort(a, 0, k - 1)
    return [i for _, i in a[:k]]


# ---- where SRigL / RigL call them (ties page items 1-5), literally -------------------------
def salient_counts(sd, sg, n_keep: int, n_prune: int) -> list[int]:
    """Item 1: per-row count of ``sort(sd)[:n_keep] ∪ sort(sg)[:n_prune]`` (sd, sg [out, F])."""
    out, fan = sd.shape
    salient = set(torch_sort_desc(sd.ravel().tolist())[:n_keep])
    salient |= set(torch_sort_desc(sg.ravel().tolist())[:n_prune])
    return [sum(1 for p in salient if p // fan == i) for i in range(out)]


def srigl_keep_grow(sd, sg, ablated, n_keep: int, k: int):
    """Items 2-4 on copies of sd, sg ([out, F], float32 or float64): (keep, grow) [out, F]."""
    out, fan = sd.shape
    sd = sd.copy()
    for i in range(out):                                  # item 2: ascending row order
        if i in ablated:
            sd[i, :] = sd.min() - 1                       # min over the modified layer
    keep = np.zeros(out * fan, dtype=bool)
    keep[torch_topk(sd.ravel().tolist(), n_keep, sorted=False)] = True
    keep = keep.reshape(out, fan)
    for i in range(out):                                  # item 3: the cap
        order = torch_sort_desc(keep[i].astype(sd.dtype).tolist())
        keep[i, order[k:]] = False
    grow = np.zeros_like(keep)
    for i in range(out):                                  # item 4
        c = int(keep[i].sum())
        if i not in ablated and c < k:
            lifted = np.where(keep[i], sg[i].min() - 1, sg[i]).astype(sg.dtype)
            grow[i, torch_topk(lifted.tolist(), k - c, sorted=True)] = True
    return keep, grow


def rigl_keep_grow(sd, sg, n_keep: int, n_prune: int):
    """Item 5 on 1-D sd, sg ([N], float32 or float64): (keep, grow) [N]."""
    n = sd.size
    keep = np.zeros(n, dtype=bool)
    keep[torch_topk(sd.tolist(), n, sorted=True)[:n_keep]] = True
    lifted = np.where(keep, sg.min() - 1, sg).astype(sg.dtype)
    grow = np.zeros(n, dtype=bool)
    grow[torch_topk(lifted.tolist(), n, sorted=True)[:n_prune]] = True
    return keep, grow
