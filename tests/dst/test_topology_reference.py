"""The Numba kernels == the readable reference ``srigl_ref.dst.reference``, bit for bit.

The reference is the oracle: every field of the fast functions' ``TopologyUpdate`` must
equal the reference's on hypothesis layer states (float32 and float64, Linear and conv
shapes, previously ablated rows, exact zeros and ties), under the canonical tie-break.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import srigl_ref
from srigl_ref.dst import _kernels, reference
from srigl_ref.dst.ranking import magnitude_keys, top_magnitude_mask
from tests.strategies import VALUE_KINDS, drop_fractions, gamma_sals, layer_states, scores


def assert_same_update(got, want):
    """Every field equal; float arrays bit for bit (signed zeros included)."""
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.kept, want.kept)
    assert got.weight.dtype == want.weight.dtype
    assert got.weight.tobytes() == want.weight.tobytes()
    if want.momentum is None:
        assert got.momentum is None
    else:
        assert got.momentum.dtype == want.momentum.dtype
        assert got.momentum.tobytes() == want.momentum.tobytes()
    assert got.ablated.tolist() == want.ablated.tolist()
    assert (got.fan_in, got.threshold) == (want.fan_in, want.threshold)
    assert (got.n_pruned, got.n_grown) == (want.n_pruned, want.n_grown)
    assert (got.n_keep, got.n_prune) == (want.n_keep, want.n_prune)


@given(state=layer_states(), df=drop_fractions, gamma=gamma_sals, ablation=st.booleans(),
       base=st.sampled_from(["sparse", "dense"]), init=st.sampled_from([0.0, 0.25]),
       with_momentum=st.booleans())
def test_srigl_update_equals_reference(state, df, gamma, ablation, base, init, with_momentum):
    kwargs = dict(sparsity=state.sparsity, drop_fraction=df, gamma_sal=gamma,
                  ablation=ablation, ablation_base=base, grown_init=init,
                  momentum=state.momentum if with_momentum else None)
    got = srigl_ref.srigl_update(state.weight, state.mask, state.grad, **kwargs)
    want = reference.srigl_update(state.weight, state.mask, state.grad, **kwargs)
    assert_same_update(got, want)


@given(state=layer_states(), df=drop_fractions, init=st.sampled_from([0.0, -0.5]))
def test_rigl_update_equals_reference(state, df, init):
    kwargs = dict(drop_fraction=df, grown_init=init, momentum=state.momentum)
    got = srigl_ref.rigl_update(state.weight, state.mask, state.grad, **kwargs)
    want = reference.rigl_update(state.weight, state.mask, state.grad, **kwargs)
    assert_same_update(got, want)


@given(state=layer_states(), df=drop_fractions, seed=st.integers(0, 2**32 - 1))
def test_set_update_equals_reference(state, df, seed):
    got = srigl_ref.set_update(state.weight, state.mask, drop_fraction=df,
                               rng=np.random.default_rng(seed), momentum=state.momentum)
    want = reference.set_update(state.weight, state.mask, drop_fraction=df,
                                rng=np.random.default_rng(seed), momentum=state.momentum)
    assert_same_update(got, want)


@given(state=layer_states(), n=st.integers(0, 400), skip=st.booleans())
def test_top_magnitude_mask_equals_reference(state, n, skip):
    a = state.grad.reshape(state.grad.shape[0], -1)                  # [out, F]
    pos_skip = state.mask.reshape(a.shape) if skip else None
    got, tied = top_magnitude_mask(a, n, pos_skip=pos_skip, with_tie=True)
    eligible = None if pos_skip is None else ~pos_skip
    np.testing.assert_array_equal(got, reference.top_n(np.abs(a), n, eligible))
    ranked = np.abs(a)[eligible] if eligible is not None else np.abs(a).ravel()
    values = np.sort(ranked)[::-1]                                   # descending
    assert tied == (0 < n < values.size and values[n - 1] == values[n])


@given(state=layer_states(), n_keep=st.integers(0, 500), n_prune=st.integers(0, 500))
def test_salient_counts_kernel_equals_reference(state, n_keep, n_prune):
    """The salient-count stage: the reference's counts, and each boundary's tie flag."""
    from srigl_ref.dst import stages
    out = state.weight.shape[0]
    w2 = state.weight.reshape(out, -1)
    g2 = state.grad.reshape(out, -1)
    got = stages.salient_counts(magnitude_keys(w2), magnitude_keys(g2), n_keep, n_prune)
    want = reference.salient_counts(np.abs(w2), np.abs(g2), n_keep, n_prune)
    assert got.counts.dtype == want.dtype and got.counts.tolist() == want.tolist()
    for threshold, a, n in ((got.keep, w2, n_keep), (got.grad, g2, n_prune)):
        values = np.sort(np.abs(a).ravel())[::-1]
        assert threshold.tied == (0 < n < len(values) and values[n - 1] == values[n])


@pytest.mark.parametrize("shape", [(64, 300), (16, 8, 3, 3), (300, 64)])
@pytest.mark.parametrize("kind", VALUE_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_srigl_update_equals_reference_on_large_layers(shape, kind, dtype):
    """The largest shapes, where the radix select descends several levels."""
    rng = np.random.default_rng([*shape, VALUE_KINDS.index(kind)])
    s = 0.9
    k = srigl_ref.constant_fan_in(shape, s)
    mask = srigl_ref.random_fan_in_mask(shape, k, rng)
    mask[: shape[0] // 8] = False                         # some rows previously ablated
    weight = scores(rng, shape, kind, dtype) * mask
    grad = scores(rng, shape, kind, dtype)
    momentum = (rng.standard_normal(shape) * mask).astype(dtype)
    kwargs = dict(sparsity=s, drop_fraction=0.3, momentum=momentum)
    assert_same_update(srigl_ref.srigl_update(weight, mask, grad, **kwargs),
                       reference.srigl_update(weight, mask, grad, **kwargs))
