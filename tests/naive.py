"""Slow, literal transcriptions of SPEC-srigl.md, the references the kernels are tested against.

Plain Python loops and ``sorted`` with the canonical key ``(-score, flat index)``; no Numba,
no cleverness. Every function names the SPEC section it transcribes.
"""
import math

import numpy as np


# ---------------------------------------------------------------- section 1
def top_n(scores, n, eligible=None):
    """Flat indices of the ``n`` largest ``scores`` (ties: ascending index), as a set."""
    flat = list(np.asarray(scores).ravel())
    idx = [p for p in range(len(flat)) if eligible is None or eligible[p]]
    order = sorted(idx, key=lambda p: (-flat[p], p))
    return set(order[:n])


# ---------------------------------------------------------------- section 2
def layer_sparsities(shapes, density, distribution="erk", erk_power_scale=1.0, dense_layers=()):
    sizes = [math.prod(s) for s in shapes]
    dense = set(dense_layers)
    if distribution == "uniform":
        n_dense = sum(sizes[i] for i in dense)
        n_sparse = sum(sizes[i] for i in range(len(sizes)) if i not in dense)
        n_total = sum(sizes)
        s_u = 1 - (n_total * density - n_dense) / n_sparse
        if s_u > 1:
            s_u = 1 - density
        return [0.0 if i in dense else s_u for i in range(len(sizes))]
    if distribution == "erk":
        raw = [(sum(s) / math.prod(s)) ** erk_power_scale for s in shapes]
    else:
        raw = [((s[0] + s[1]) / (s[0] * s[1])) ** erk_power_scale for s in shapes]
    while True:
        rhs = 0.0
        divisor = 0.0
        for i in range(len(shapes)):
            z = int(sizes[i] * (1 - density))
            if i in dense:
                rhs -= z
            else:
                rhs += sizes[i] - z
                divisor += raw[i] * sizes[i]
        eps = rhs / divisor
        max_raw = max(raw[i] for i in range(len(shapes)) if i not in dense)
        if max_raw * eps > 1:
            for i in range(len(shapes)):
                if i not in dense and raw[i] == max_raw:
                    dense.add(i)
                    break
        else:
            break
    return [0.0 if i in dense else 1 - eps * raw[i] for i in range(len(shapes))]


# ---------------------------------------------------------------- section 7
def salient_counts(sd, sg, n_keep, n_prune):
    """sd, sg: [out, F] scores. Count per row of top-n_keep(sd) | top-n_prune(sg)."""
    out, fan = sd.shape
    salient = top_n(sd, n_keep) | top_n(sg, n_prune)
    return [sum(1 for j in range(fan) if i * fan + j in salient) for i in range(out)]


def ablation(sd, sg, n_keep, n_prune, budget, gamma_sal, base):
    """Returns (ablated list in R order, threshold)."""
    out, fan = sd.shape
    count = salient_counts(sd, sg, n_keep, n_prune)
    min_neurons = budget // fan
    order = sorted(range(out), key=lambda i: (-count[i], i))
    if gamma_sal >= 1:
        thr = int(gamma_sal)
    else:
        b = budget // out if base == "sparse" else fan
        thr = max(1, int(gamma_sal * b))
    pivot = order[min(min_neurons, out - 1)]
    if count[pivot] < thr:
        thr = count[pivot]
    return [i for i in order if count[i] < thr], thr


# ---------------------------------------------------------------- section 6
def srigl_update(weight, mask, grad, sparsity, drop_fraction, gamma_sal=0.3, ablation_on=True,
                 base="sparse", grown_init=0.0, momentum=None):
    """Returns dict(mask, weight, momentum, ablated, k, threshold)."""
    shape = weight.shape
    out = shape[0]
    w = weight.reshape(out, -1)
    m = mask.reshape(out, -1)
    fan = w.shape[1]
    budget = int(weight.size * (1 - sparsity))
    sd = np.abs(w)
    sg = np.abs(grad.reshape(out, -1))
    n_ones = int(m.sum())
    n_prune = int(n_ones * drop_fraction)
    n_keep = n_ones - n_prune
    nnz = int(np.count_nonzero(sd))
    if nnz < n_keep:
        n_keep = nnz
        n_prune = n_ones - n_keep
    if ablation_on and gamma_sal > 0:
        abl, thr = ablation(sd, sg, n_keep, n_prune, budget, gamma_sal, base)
    else:
        abl, thr = [], -1
    k = budget // (out - len(abl))
    assert 0 < k <= fan
    eligible = [p // fan not in abl for p in range(w.size)]
    keep = top_n(sd, n_keep, eligible)
    new = np.zeros((out, fan), bool)
    for i in range(out):                      # step 5: cap, k lowest kept indices per row
        kept = [j for j in range(fan) if i * fan + j in keep]
        for j in kept[:k]:
            new[i, j] = True
    kept = new.copy()
    for i in range(out):                      # step 6: grow per row
        if i in abl:
            continue
        c = int(new[i].sum())
        if c < k:
            cand = [j for j in range(fan) if not new[i, j]]
            cand.sort(key=lambda j: (-sg[i, j], j))
            for j in cand[:k - c]:
                new[i, j] = True
    return _finish(weight, mask, new.reshape(shape), kept.reshape(shape), grown_init, momentum,
                   dict(ablated=abl, k=k, threshold=thr))


def _finish(weight, mask, new, kept, grown_init, momentum, extra):
    """Steps 7-8: W * M_new; grown (new, not kept) from inactive = grown_init; mom * M_new."""
    w_out = weight * new
    flat_w, flat_new, flat_old = w_out.reshape(-1), new.reshape(-1), mask.reshape(-1)
    flat_kept = kept.reshape(-1)
    for p in range(flat_w.size):
        if flat_new[p] and not flat_kept[p] and not flat_old[p]:
            flat_w[p] = grown_init
    mom = None if momentum is None else momentum * new
    return dict(mask=new, weight=w_out, momentum=mom, **extra)


# ---------------------------------------------------------------- section 8
def rigl_update(weight, mask, grad, drop_fraction, grown_init=0.0, momentum=None):
    n_ones = int(mask.sum())
    n_prune = int(n_ones * drop_fraction)
    n_keep = n_ones - n_prune
    keep = top_n(np.abs(weight), n_keep)
    grow = top_n(np.abs(grad), n_prune, [p not in keep for p in range(weight.size)])
    new = np.zeros(weight.size, bool)
    new[sorted(keep | grow)] = True
    kept = np.zeros(weight.size, bool)
    kept[sorted(keep)] = True
    return _finish(weight, mask, new.reshape(weight.shape), kept.reshape(weight.shape),
                   grown_init, momentum, {})
