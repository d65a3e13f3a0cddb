"""Slow, literal twin of ``srigl_ref.dst.sparsity.layer_sparsities`` (docs/algorithm.md §2).

Plain Python loops over layers, no cleverness; the topology updates' twin is the shipped
``srigl_ref.dst.reference``.
"""
import math


def layer_sparsities(shapes, density, distribution="erk", erk_power_scale=1.0, dense_layers=()):
    """Per-layer sparsities, transcribed step by step from docs/algorithm.md §2."""
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
