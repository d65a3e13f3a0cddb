"""Shared hypothesis strategies: layer shapes, budgets and whole layer states.

Shapes and parameters are drawn by hypothesis; array contents come from a
``numpy.random.Generator`` seeded by a drawn seed (elementwise hypothesis arrays of 20k
entries would be far too slow), in one of several *value kinds* chosen to provoke ties
and exact zeros.
"""
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

VALUE_KINDS = ("continuous", "quantized", "zeros", "dead_rows")


@st.composite
def weight_shapes(draw, max_out=64, max_in=300):
    """Linear ``(out, in)`` or conv ``(out, C_in, kh, kw)`` shapes, from 1x1 up."""
    if draw(st.booleans()):
        return (draw(st.integers(1, max_out)), draw(st.integers(1, max_in)))
    return (draw(st.integers(1, 16)), draw(st.integers(1, 8)), draw(st.integers(1, 3)),
            draw(st.integers(1, 3)))


def sparsity_for_budget(budget: int, size: int) -> float:
    """A sparsity ``S`` with ``int(size * (1 - S)) == budget``."""
    if budget == size:
        return 0.0
    s = 1 - (budget + 0.5) / size
    assert int(size * (1 - s)) == budget
    return s


def scores(rng, shape, kind, dtype):
    """Float array of ``shape`` whose values follow ``kind`` (see ``VALUE_KINDS``)."""
    if kind == "quantized":
        a = rng.integers(-3, 4, size=shape).astype(dtype)
    else:
        a = rng.standard_normal(shape).astype(dtype)
    if kind == "zeros":
        a[rng.random(shape) < 0.4] = 0
    if kind == "dead_rows":
        a[rng.random(shape[0]) < 0.3] = 0
    return a


@dataclass
class LayerState:
    """A layer just before a topology update (SPEC section 5 order)."""
    weight: np.ndarray    # shape, float32/float64, zero outside mask
    mask: np.ndarray      # shape, bool, constant fan-in, rows in abl_old empty
    grad: np.ndarray      # shape, dense gradient
    momentum: np.ndarray  # shape, zero outside mask
    sparsity: float
    budget: int
    abl_old: np.ndarray   # int64, rows ablated before the update


@st.composite
def layer_states(draw, max_out=64, max_in=300):
    """Valid SRigL layer states: constant fan-in masks, previously ablated rows, ties."""
    shape = draw(weight_shapes(max_out, max_in))
    out = shape[0]
    fan = math.prod(shape[1:])
    size = out * fan
    budget = draw(st.integers(out, size))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    w_kind = draw(st.sampled_from(VALUE_KINDS))
    g_kind = draw(st.sampled_from(VALUE_KINDS))
    rng = np.random.default_rng(seed)
    # previously ablated rows: as many as keep k_old = B // (out - a) within [1, F]
    max_abl = max(a for a in range(out) if budget // (out - a) <= fan)
    n_abl_old = draw(st.integers(0, max_abl))
    abl_old = np.sort(rng.choice(out, size=n_abl_old, replace=False)).astype(np.int64)
    k_old = budget // (out - n_abl_old)
    mask = np.zeros((out, fan), bool)
    for i in range(out):
        if i not in abl_old:
            mask[i, rng.choice(fan, size=k_old, replace=False)] = True
    mask = mask.reshape(shape)
    weight = scores(rng, shape, w_kind, dtype) * mask
    if draw(st.booleans()):           # inactive entries as -0.0, as after w *= mask
        weight = np.where(mask, weight, -0.0).astype(dtype)
    grad = scores(rng, shape, g_kind, dtype)
    momentum = (rng.standard_normal(shape) * mask).astype(dtype)
    return LayerState(weight, mask, grad, momentum, sparsity_for_budget(budget, size), budget,
                      abl_old)


drop_fractions = st.one_of(st.just(0.0), st.floats(0.0, 1.0), st.sampled_from([0.3, 0.5]))
gamma_sals = st.one_of(st.just(0.0), st.floats(0.01, 0.99), st.integers(1, 4).map(float))
