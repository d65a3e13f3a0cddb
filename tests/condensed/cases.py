"""Hypothesis strategies for condensed-layer tests: constant fan-in layers and inputs."""
import numpy as np
from hypothesis import strategies as st


@st.composite
def layers(draw, max_out=6, max_in=40, conv=None):
    """``dict(weight, mask, bias)`` of one constant fan-in layer.

    Covers 1 row, 1 column, k == in (dense rows), ablated rows up to all of them, conv
    shapes, float32/float64 weights, active weights exactly 0 and inactive ones arbitrary
    (NaN included: condense must read the structure from the mask alone).
    """
    out = draw(st.integers(1, max_out))
    if draw(st.booleans()) if conv is None else conv:
        tail = tuple(draw(st.integers(1, 3)) for _ in range(3))        # (C_in, kh, kw)
    else:
        tail = (draw(st.integers(1, max_in)),)
    n_in = int(np.prod(tail))
    k = draw(st.integers(1, n_in))
    ablated = draw(st.lists(st.booleans(), min_size=out, max_size=out))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = np.zeros((out, n_in), dtype=bool)
    for i in range(out):
        if not ablated[i]:
            mask[i, rng.choice(n_in, size=k, replace=False)] = True
    weight = rng.standard_normal((out, n_in)).astype(dtype)
    weight[mask & (rng.random((out, n_in)) < 0.1)] = 0.0               # active zeros
    weight[~mask & (rng.random((out, n_in)) < 0.1)] = np.nan           # ignored
    bias = rng.standard_normal(out).astype(dtype) if draw(st.booleans()) else None
    return dict(weight=weight.reshape((out,) + tail), mask=mask.reshape((out,) + tail),
                bias=bias)


@st.composite
def activations(draw, n_in):
    """``x`` of shape ``[n_in]`` or ``[B, n_in]`` (B in 1..5), float32/float64, C or F order."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    batch = draw(st.sampled_from([None, 1, 2, 5]))
    if batch is None:
        return rng.standard_normal(n_in).astype(dtype)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    return np.asfortranarray(x) if draw(st.booleans()) else x
