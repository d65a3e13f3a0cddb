"""Layer sparsities (uniform, ERK, ER), the budget ``B`` and the constant fan-in ``k``.

docs/algorithm.md §2, §3. All arithmetic is Python float (float64) in that page's operation
order, so results are bit-exact with the authors' code (checked against
``tests/golden/distributions.json``).
"""
from __future__ import annotations

import math

from .._validate import check_choice, check_density, check_int, check_real, check_shape

DISTRIBUTIONS = ("erk", "uniform", "er")


def layer_sparsities(shapes, density, distribution="erk", *, erk_power_scale=1.0,
                     dense_layers=()) -> list[float]:
    """Per-layer sparsities for a global density (docs/algorithm.md §2).

    Parameters
    ----------
    shapes : sequence of tuple of int
        Weight shapes of the sparse-able layers in model order (PyTorch layout).
    density : float in (0, 1]
        Global density over all listed layers.
    distribution : {"erk", "uniform", "er"}
    erk_power_scale : float > 0
        Power ``p`` of the ERK/ER raw scores.
    dense_layers : sequence of int
        Indices of layers forced dense (e.g. ``(0,)`` to keep the first layer dense).

    Returns
    -------
    list of float
        ``S_i`` (float64); 0.0 for dense layers.

    Raises
    ------
    ValueError
        Bad arguments; every layer ends dense; or the forced-dense layers alone exceed the
        budget (the authors' code returns sparsities > 1 there; we refuse).
    """
    if isinstance(shapes, (str, bytes)) or not hasattr(shapes, "__len__") or len(shapes) == 0:
        raise ValueError(f"shapes == {shapes!r}, must be a non-empty sequence of weight shapes")
    shapes = [check_shape(f"shapes[{i}]", s) for i, s in enumerate(shapes)]
    d = check_density("density", density)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    p = check_real("erk_power_scale", erk_power_scale, low=0.0, low_open=True)
    forced = set()
    for i in dense_layers:
        idx = check_int("dense_layers entry", i, low=0, high=len(shapes) - 1)
        forced.add(idx)
    sizes = [math.prod(s) for s in shapes]
    if len(forced) == len(shapes):
        raise ValueError(f"dense_layers == {sorted(forced)} forces every layer dense; "
                         f"at least one layer must be sparse")
    if distribution == "uniform":
        return _uniform(sizes, d, forced)
    if distribution == "erk":
        raw = [(sum(s) / math.prod(s)) ** p for s in shapes]
    else:
        raw = [((s[0] + s[1]) / (s[0] * s[1])) ** p for s in shapes]
    return _erk(sizes, raw, d, forced)


def _uniform(sizes, d, forced) -> list[float]:
    n_dense = sum(n for i, n in enumerate(sizes) if i in forced)
    n_sparse = sum(n for i, n in enumerate(sizes) if i not in forced)
    n_total = n_dense + n_sparse
    s_u = 1 - (n_total * d - n_dense) / n_sparse
    if s_u > 1:
        s_u = 1 - d
    return [0.0 if i in forced else s_u for i in range(len(sizes))]


def _erk(sizes, raw, d, forced) -> list[float]:
    dense = set(forced)
    while True:
        rhs = 0.0
        divisor = 0.0
        for i, n in enumerate(sizes):
            n_zeros = int(n * (1 - d))
            if i in dense:
                rhs -= n_zeros
            else:
                rhs += n - n_zeros
                divisor += raw[i] * n
        if divisor == 0.0:
            raise ValueError(f"density == {d!r}: ERK made every layer dense; "
                             f"no sparse layer is left to hold the budget")
        eps = rhs / divisor
        max_raw = max(raw[i] for i in range(len(sizes)) if i not in dense)
        if max_raw * eps > 1:
            dense.add(next(i for i in range(len(sizes)) if i not in dense and raw[i] == max_raw))
        else:
            break
    if rhs <= 0:
        n_dense = sum(sizes[i] for i in dense)
        raise ValueError(
            f"density == {d!r} is too low for dense_layers == {sorted(forced)}: the dense "
            f"layers alone hold {n_dense} of {sum(sizes)} weights, so the sparse layers would "
            f"need a negative density; use density > {n_dense / sum(sizes):.6g} or fewer "
            f"dense layers")
    return [0.0 if i in dense else 1 - eps * raw[i] for i in range(len(sizes))]


def fan_in_budget(shape, sparsity) -> int:
    """Active weights a layer may hold: ``B = int(N * (1 - S))`` (docs/algorithm.md §3).

    Parameters
    ----------
    shape : tuple of int
        Weight shape, ``[out, in]`` or ``[out, C_in, kh, kw]``.
    sparsity : float in [0, 1)

    Returns
    -------
    int
    """
    shape = check_shape("shape", shape)
    s = check_real("sparsity", sparsity, low=0.0, high=1.0, high_open=True)
    return int(math.prod(shape) * (1 - s))


def constant_fan_in(shape, sparsity, n_ablated=0) -> int:
    """Constant fan-in ``k = B // (out - n_ablated)`` (docs/algorithm.md §3).

    Parameters
    ----------
    shape : tuple of int
    sparsity : float in [0, 1)
    n_ablated : int in [0, out - 1]

    Returns
    -------
    int
        ``k >= 1``.

    Raises
    ------
    ValueError
        If ``k == 0`` (the budget cannot give every active neuron one input) or
        ``k > F`` (the budget cannot fit into the remaining neurons).
    """
    shape = check_shape("shape", shape)
    budget = fan_in_budget(shape, sparsity)
    n_ablated = check_int("n_ablated", n_ablated, low=0, high=shape[0] - 1)
    return fan_in_from_budget(budget, shape, n_ablated, sparsity)


def fan_in_from_budget(budget: int, shape: tuple[int, ...], n_ablated: int,
                       sparsity: float) -> int:
    """``k = budget // (out - n_ablated)``, checked (trusted arguments; see ``constant_fan_in``)."""
    n_active = shape[0] - n_ablated
    k = budget // n_active
    if k == 0:
        raise ValueError(
            f"constant fan-in k == 0 for a layer of shape {shape} at sparsity == {sparsity!r} "
            f"with {n_ablated} ablated neuron(s): the budget B == {budget} is smaller than the "
            f"{n_active} active neurons; use a higher density for this layer")
    fan = math.prod(shape[1:])
    if k > fan:
        raise ValueError(
            f"constant fan-in k == {k} exceeds the dense fan-in {fan} of a layer of shape "
            f"{shape} at sparsity == {sparsity!r} with {n_ablated} ablated neuron(s): the "
            f"budget B == {budget} cannot fit into {n_active} neurons")
    return k
