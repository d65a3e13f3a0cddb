"""Kernels == the literal SPEC transcriptions of tests/naive.py, bit for bit."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import srigl_ref
from tests import naive
from tests.strategies import VALUE_KINDS, drop_fractions, gamma_sals, layer_states, scores


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


@given(state=layer_states(), df=drop_fractions, gamma=gamma_sals, ablation=st.booleans(),
       base=st.sampled_from(["sparse", "dense"]), init=st.sampled_from([0.0, 0.25]))
def test_srigl_update_equals_naive(state, df, gamma, ablation, base, init):
    got = srigl_ref.srigl_update(state.weight, state.mask, state.grad, sparsity=state.sparsity,
                                 drop_fraction=df, gamma_sal=gamma, ablation=ablation,
                                 ablation_base=base, grown_init=init, momentum=state.momentum)
    want = naive.srigl_update(state.weight, state.mask, state.grad, state.sparsity, df,
                              gamma_sal=gamma, ablation_on=ablation, base=base,
                              grown_init=init, momentum=state.momentum)
    np.testing.assert_array_equal(got.mask, want["mask"])
    assert_same_bits(got.weight, want["weight"])
    assert_same_bits(got.momentum, want["momentum"])
    assert got.ablated.tolist() == want["ablated"]
    assert got.fan_in == want["k"]
    assert got.threshold == want["threshold"]


@given(state=layer_states(), df=drop_fractions)
def test_rigl_update_equals_naive(state, df):
    got = srigl_ref.rigl_update(state.weight, state.mask, state.grad, drop_fraction=df,
                                momentum=state.momentum)
    want = naive.rigl_update(state.weight, state.mask, state.grad, df, momentum=state.momentum)
    np.testing.assert_array_equal(got.mask, want["mask"])
    assert_same_bits(got.weight, want["weight"])
    assert_same_bits(got.momentum, want["momentum"])
    assert got.fan_in == -1 and got.threshold == -1 and got.ablated.size == 0


@given(state=layer_states(), n=st.integers(0, 400), data=st.data())
def test_top_magnitude_mask_equals_naive(state, n, data):
    from srigl_ref.dst.ranking import top_magnitude_mask
    a = state.grad.reshape(state.grad.shape[0], -1)
    skip = data.draw(st.booleans())
    pos_skip = state.mask.reshape(a.shape) if skip else None
    got, tied = top_magnitude_mask(a, n, pos_skip=pos_skip, with_tie=True)
    eligible = None if pos_skip is None else ~pos_skip.ravel()
    want = np.zeros(a.size, bool)
    want[sorted(naive.top_n(np.abs(a), n, eligible))] = True
    np.testing.assert_array_equal(got.ravel(), want)
    values = sorted(np.abs(a).ravel()[eligible if eligible is not None else slice(None)],
                    reverse=True)
    assert tied == (0 < n < len(values) and values[n - 1] == values[n])


@given(state=layer_states(), n_keep=st.integers(0, 500), n_prune=st.integers(0, 500))
def test_salient_counts_equal_naive(state, n_keep, n_prune):
    """The salient-count stage: naive counts, and each boundary's tie flag."""
    from srigl_ref.dst import stages
    from srigl_ref.dst.ranking import magnitude_keys
    out = state.weight.shape[0]
    w2 = state.weight.reshape(out, -1)
    g2 = state.grad.reshape(out, -1)
    got = stages.salient_counts(magnitude_keys(w2), magnitude_keys(g2), n_keep, n_prune)
    want = naive.salient_counts(np.abs(w2), np.abs(g2), n_keep, n_prune)
    assert got.counts.tolist() == want
    for threshold, a, n in ((got.keep, w2, n_keep), (got.grad, g2, n_prune)):
        values = np.sort(np.abs(a).ravel())[::-1]
        assert threshold.tied == (0 < n < len(values) and values[n - 1] == values[n])


@pytest.mark.parametrize("shape", [(64, 300), (16, 8, 3, 3), (300, 64)])
@pytest.mark.parametrize("kind", VALUE_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_srigl_update_equals_naive_on_large_layers(shape, kind, dtype):
    """The largest shapes, where the radix select descends several levels."""
    rng = np.random.default_rng([*shape, VALUE_KINDS.index(kind)])
    s = 0.9
    k = srigl_ref.constant_fan_in(shape, s)
    mask = srigl_ref.random_fan_in_mask(shape, k, rng)
    mask[: shape[0] // 8] = False                         # some rows previously ablated
    weight = scores(rng, shape, kind, dtype) * mask
    grad = scores(rng, shape, kind, dtype)
    got = srigl_ref.srigl_update(weight, mask, grad, sparsity=s, drop_fraction=0.3)
    want = naive.srigl_update(weight, mask, grad, s, 0.3)
    np.testing.assert_array_equal(got.mask, want["mask"])
    assert_same_bits(got.weight, want["weight"])
    assert got.ablated.tolist() == want["ablated"] and got.threshold == want["threshold"]
