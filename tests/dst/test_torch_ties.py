"""``tie_break="torch_cpu"`` kernels == the literal libstdc++ transcription (SPEC-torch-ties).

Every kernel of ``srigl_ref/dst/_torch_kernels.py`` is checked against its slow twin in
``tests/dst/naive_torch_ties.py`` on tie-heavy arrays; the stage functions of
``srigl_ref/dst/torch_ties.py`` against the naive stages (which use full, unpruned sorts,
recompute ``min`` over the layer for every ablated row and cap every row).
"""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import srigl_ref
from srigl_ref.dst import _torch_kernels as tk
from srigl_ref.dst import torch_ties as tt
from srigl_ref.dst.torch_ties import (rigl_keep_grow_torch, salient_counts_torch,
                                      srigl_keep_grow_torch, torch_sort_desc, torch_topk)
from tests.dst import naive_torch_ties as naive
from tests.strategies import drop_fractions, gamma_sals, layer_states

DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def _listed_ties(draw, max_size=40):
    """Short arrays drawn element by element (they shrink well): integers in [0, levels)."""
    levels = draw(st.integers(1, 12))
    values = draw(st.lists(st.integers(0, levels - 1), max_size=max_size))
    return np.array(values, dtype=draw(DTYPES))


@st.composite
def _seeded_ties(draw, min_size, max_size):
    """Longer arrays from a Generator seeded by a drawn seed (drawing 5000 elements one by
    one is too slow): integers in ``[0, levels)``, or with ``spread`` half of them replaced
    by continuous values."""
    dtype = draw(DTYPES)
    levels = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(min_size, max_size))
    a = rng.integers(0, levels, size=n).astype(dtype)
    if draw(st.booleans()):                     # spread: some distinct values among the ties
        spread = rng.random(n) < 0.5
        a[spread] = rng.random(int(spread.sum())) * levels
    return a


def tie_arrays(max_large=5000):
    """1-D float arrays full of ties: about 40% short, 40% of 17..300 (past introsort's
    16-element leaves), 20% long (up to ``max_large``)."""
    medium = _seeded_ties(17, 300)
    return st.one_of(_listed_ties(), medium, medium, _seeded_ties(300, max_large))


def _pairs(values):
    return values.copy(), np.arange(values.size, dtype=np.int64)


def _naive_pairs_after(fn, values, *args, **kwargs):
    """Run a naive in-place algorithm on the pair list of ``values``; return the indices."""
    a = naive.pairs(values.tolist())
    fn(a, *args, **kwargs)
    return [i for _, i in a]


# ---- torch.sort / torch.topk ------------------------------------------------------------
@given(tie_arrays())
def test_sort_desc_equals_naive(values):
    assert torch_sort_desc(values).tolist() == naive.torch_sort_desc(values.tolist())


@given(tie_arrays(), st.data())
def test_topk_equals_naive(values, data):
    n = values.size
    # both branches: k * 64 <= n (partial_sort) and not (nth_element [+ sort of k - 1])
    k = data.draw(st.one_of(st.integers(0, n // 64), st.integers(0, n)), label="k")
    is_sorted = data.draw(st.booleans(), label="sorted")
    got = torch_topk(values, k, sorted=is_sorted)
    assert got.dtype == np.int64
    assert got.tolist() == naive.torch_topk(values.tolist(), k, sorted=is_sorted)


@given(tie_arrays(max_large=3000), st.integers(0, 3), st.data())
def test_introsort_cuts_and_heap_fallback_equal_naive(values, depth, data):
    """``_introsort`` with a forced small depth (heap-sort fallback) and any cut range.

    Exact at cuts ``[lo, hi]``: the set of the first ``c`` equals the full sort's for every
    ``c`` there; with all cuts, the order itself is the full sort's.
    """
    n = values.size
    want = _naive_pairs_after(naive.sort, values, 0, n, depth=depth)
    v, ix = _pairs(values)
    if data.draw(st.booleans(), label="all cuts"):
        tk._introsort(v, ix, 0, n, depth, 1, n - 1)
        assert ix.tolist() == want
        return
    lo = data.draw(st.integers(0, n), label="lo")
    hi = data.draw(st.integers(lo, min(n, lo + 4)), label="hi")
    tk._introsort(v, ix, 0, n, depth, lo, hi)
    assert sorted(ix.tolist()) == list(range(n))
    for c in range(lo, hi + 1):
        assert set(ix[:c].tolist()) == set(want[:c])


@given(tie_arrays(max_large=3000), st.integers(0, 3), st.data())
def test_introselect_forced_depth_equals_naive(values, depth, data):
    n = values.size
    if n == 0:
        return
    nth = data.draw(st.integers(0, n - 1), label="nth")
    v, ix = _pairs(values)
    tk._introselect(v, ix, 0, nth, n, depth)
    assert ix.tolist() == _naive_pairs_after(naive.nth_element, values, 0, nth, n, depth=depth)


@given(tie_arrays(), st.data())
def test_topk_set_only_cut_equals_naive_head(values, data):
    """``_topk`` exact only at cut ``b`` (how the stages call it): the set of the first b."""
    n = values.size
    k = data.draw(st.one_of(st.integers(0, n // 64), st.integers(0, n)), label="k")
    b = data.draw(st.integers(0, k), label="b")
    is_sorted = data.draw(st.booleans(), label="sorted")
    v, ix = _pairs(values)
    tk._topk(v, ix, k, is_sorted, b, b)
    assert set(ix[:b].tolist()) == set(naive.torch_topk(values.tolist(), k, is_sorted)[:b])


def test_sort_and_topk_on_tie_free_inputs_are_the_stable_order(rng):
    """Without ties torch's order is the canonical one (SPEC section 1)."""
    for n in (1, 2, 17, 100, 1000, 5000):
        values = rng.permutation(n).astype(np.float32)
        order = np.argsort(-values, kind="stable")
        np.testing.assert_array_equal(torch_sort_desc(values), order)
        for k in (0, 1, n // 64, n // 3, n):
            np.testing.assert_array_equal(torch_topk(values, k, sorted=True), order[:k])
            np.testing.assert_array_equal(np.sort(torch_topk(values, k, sorted=False)),
                                          np.sort(order[:k]))


@given(tie_arrays(), st.data())
def test_topk_returns_the_k_largest(values, data):
    k = data.draw(st.integers(0, values.size), label="k")
    got = torch_topk(values, k, sorted=True)
    assert np.unique(got).size == k
    np.testing.assert_array_equal(values[got], np.sort(values)[::-1][:k])
    order = torch_sort_desc(values)
    np.testing.assert_array_equal(values[order], np.sort(values)[::-1])


def test_sort_of_all_equal_values_is_libstdcxx_order():
    """A pinned case: 20 equal values (introsort partitions, then insertion sort)."""
    got = torch_sort_desc(np.zeros(20, np.float32)).tolist()
    assert got == naive.torch_sort_desc([0.0] * 20)
    assert got != list(range(20))               # unstable: not the canonical order


def test_kernels_accept_float32_and_float64_alike(rng):
    values = rng.integers(0, 3, size=500)
    for k in (3, 400):
        np.testing.assert_array_equal(torch_topk(values.astype(np.float32), k),
                                      torch_topk(values.astype(np.float64), k))
    np.testing.assert_array_equal(torch_sort_desc(values.astype(np.float32)),
                                  torch_sort_desc(values.astype(np.float64)))


# ---- the SRigL / RigL stages ------------------------------------------------------------
@st.composite
def layer_scores(draw, max_out=8, max_fan=24):
    """``(sd, sg)``, [out, F] non-negative scores with ties and exact zeros, same dtype."""
    out = draw(st.integers(1, max_out))
    fan = draw(st.integers(1, max_fan))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def one():
        levels = draw(st.integers(1, 6))
        a = rng.integers(0, levels, size=(out, fan)).astype(dtype)
        if draw(st.booleans()):
            a *= rng.random((out, fan)) < 0.5         # extra exact zeros
        return a

    return one(), one()


@given(layer_scores(), st.data())
def test_salient_counts_equal_naive(scores, data):
    sd, sg = scores
    n = sd.size
    n_keep = data.draw(st.integers(0, n), label="n_keep")
    n_prune = data.draw(st.integers(0, n), label="n_prune")
    got = salient_counts_torch(sd, sg, n_keep, n_prune)
    assert got.dtype == np.int64
    assert got.tolist() == naive.salient_counts(sd, sg, n_keep, n_prune)


@st.composite
def srigl_stage_inputs(draw):
    sd, sg = draw(layer_scores())
    out, fan = sd.shape
    ablated = draw(st.lists(st.integers(0, out - 1), unique=True, max_size=out - 1))
    n_keep = draw(st.integers(0, sd.size))
    k = draw(st.integers(1, fan))
    return sd, sg, np.array(ablated, dtype=np.int64), n_keep, k


@given(srigl_stage_inputs())
def test_srigl_keep_grow_equals_naive(inputs):
    sd, sg, ablated, n_keep, k = inputs
    keep, grow = srigl_keep_grow_torch(sd, sg, ablated, n_keep, k)
    want_keep, want_grow = naive.srigl_keep_grow(sd, sg, set(ablated.tolist()), n_keep, k)
    np.testing.assert_array_equal(keep, want_keep)
    np.testing.assert_array_equal(grow, want_grow)


@given(srigl_stage_inputs())
@example((np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32),  # n_keep > alive
          np.array([0], np.int64), 3, 1))                             # positions: row 0 kept
def test_srigl_keep_grow_invariants(inputs):
    """Integer scores, so ``min - 1`` is exact: rows end with exactly k (SPEC section 6)."""
    sd, sg, ablated, n_keep, k = inputs
    keep, grow = srigl_keep_grow_torch(sd, sg, ablated, n_keep, k)
    assert keep.dtype == grow.dtype == np.bool_ and keep.shape == grow.shape == sd.shape
    assert not (keep & grow).any()
    assert (keep.sum(1) <= k).all()
    alive = np.ones(sd.shape[0], bool)
    alive[ablated] = False
    assert not grow[~alive].any()
    np.testing.assert_array_equal((keep | grow)[alive].sum(1), k)
    # ablated rows enter the keep set only when n_keep exceeds all other positions
    if keep[~alive].any():
        assert n_keep > alive.sum() * sd.shape[1]


@given(layer_scores(), st.data())
def test_rigl_keep_grow_equals_naive(scores, data):
    sd, sg = scores[0].ravel(), scores[1].ravel()
    n_keep = data.draw(st.integers(0, sd.size), label="n_keep")
    n_prune = data.draw(st.integers(0, sd.size - n_keep), label="n_prune")
    keep, grow = rigl_keep_grow_torch(sd, sg, n_keep, n_prune)
    want_keep, want_grow = naive.rigl_keep_grow(sd, sg, n_keep, n_prune)
    np.testing.assert_array_equal(keep, want_keep)
    np.testing.assert_array_equal(grow, want_grow)
    assert keep.sum() == n_keep and grow.sum() == n_prune and not (keep & grow).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stages_on_a_large_layer_equal_naive(rng, dtype):
    """One layer big enough for introsort's deep partitions and topk's partial_sort branch."""
    out, fan = 40, 150
    sd = (rng.integers(0, 4, size=(out, fan)) * (rng.random((out, fan)) < 0.3)).astype(dtype)
    sg = rng.integers(0, 3, size=(out, fan)).astype(dtype)
    n_keep, n_prune = int(np.count_nonzero(sd)) - 7, 50
    assert salient_counts_torch(sd, sg, n_keep, n_prune).tolist() == \
        naive.salient_counts(sd, sg, n_keep, n_prune)
    ablated = np.array([31, 4, 17], dtype=np.int64)
    for k in (3, 40):                         # grow by partial_sort / by nth_element
        got = srigl_keep_grow_torch(sd, sg, ablated, n_keep, k)
        want = naive.srigl_keep_grow(sd, sg, {4, 17, 31}, n_keep, k)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


@given(state=layer_states(), df=drop_fractions, gamma=gamma_sals, ablation=st.booleans())
def test_srigl_torch_cpu_fast_path_equals_full_emulation(state, df, gamma, ablation):
    """torch_cpu runs the canonical kernels where no boundary is tied; always == emulation."""
    from srigl_ref.dst.ablation import ablated_from_counts
    u = srigl_ref.srigl_update(state.weight, state.mask, state.grad, sparsity=state.sparsity,
                               drop_fraction=df, gamma_sal=gamma, ablation=ablation,
                               momentum=state.momentum, tie_break="torch_cpu")
    out = state.weight.shape[0]
    w2, g2 = state.weight.reshape(out, -1), state.grad.reshape(out, -1)
    sd, sg = np.abs(w2), np.abs(g2)
    n_keep, n_prune = u.n_keep, u.n_prune
    ablated = np.zeros(0, np.int64)
    if ablation and gamma > 0:
        counts = tt.salient_counts_torch(sd, sg, n_keep, n_prune)
        ablated, _ = ablated_from_counts(counts, state.budget, w2.shape[1], gamma, "sparse")
    k = state.budget // (out - ablated.size)
    keep, grow = tt.srigl_keep_grow_torch(sd, sg, ablated, n_keep, k)
    assert u.ablated.tolist() == ablated.tolist()
    np.testing.assert_array_equal(u.kept.reshape(out, -1), keep)
    np.testing.assert_array_equal(u.mask.reshape(out, -1), keep | grow)


@given(state=layer_states(), df=drop_fractions)
def test_rigl_torch_cpu_fast_path_equals_full_emulation(state, df):
    u = srigl_ref.rigl_update(state.weight, state.mask, state.grad, drop_fraction=df,
                              momentum=state.momentum, tie_break="torch_cpu")
    keep, grow = tt.rigl_keep_grow_torch(np.abs(state.weight).ravel(),
                                         np.abs(state.grad).ravel(), u.n_keep, u.n_prune)
    np.testing.assert_array_equal(u.kept.ravel(), keep)
    np.testing.assert_array_equal(u.mask.ravel(), keep | grow)


@pytest.mark.parametrize("scale", [1.0, 2.0 ** 25])
def test_torch_cpu_with_huge_scores_uses_emulation(scale):
    """Above 2**24 (float32) "min - 1" rounds back to min: the canonical shortcut is off."""
    rng = np.random.default_rng(7)
    shape, s = (12, 30), 0.8
    k = srigl_ref.constant_fan_in(shape, s)
    mask = srigl_ref.random_fan_in_mask(shape, k, rng)
    weight = (rng.standard_normal(shape) * mask * scale).astype(np.float32)
    grad = (rng.standard_normal(shape) * scale).astype(np.float32)
    assert tt.lifts_exact(weight, grad) == (scale == 1.0)
    u = srigl_ref.srigl_update(weight, mask, grad, sparsity=s, drop_fraction=0.3,
                               tie_break="torch_cpu")
    keep, grow = tt.srigl_keep_grow_torch(np.abs(weight), np.abs(grad), u.ablated, u.n_keep,
                                          u.fan_in)
    np.testing.assert_array_equal(u.mask, keep | grow)


def test_regression_tied_keep_after_ablation_counts():
    """Found by hypothesis: the keep ranking's tie (|W| = 1, 1 for one slot) was computed
    during ablation and its tie flag lost when reused; torch's nth_element keeps column 166,
    the canonical order column 134."""
    weight = np.zeros((1, 264), np.float32)
    mask = np.zeros((1, 264), bool)
    mask[0, [71, 134, 166, 222]] = True
    weight[0, [134, 166, 222]] = [1.0, 1.0, 2.0]          # an active exact zero at 71
    grad = np.random.default_rng(3).standard_normal((1, 264)).astype(np.float32)
    u = srigl_ref.srigl_update(weight, mask, grad, sparsity=1 - 4.5 / 264, drop_fraction=0.5,
                               gamma_sal=0.5, tie_break="torch_cpu")
    assert np.flatnonzero(u.kept).tolist() == [166, 222]
    keep, grow = tt.srigl_keep_grow_torch(np.abs(weight), np.abs(grad), u.ablated, 2,
                                          u.fan_in)
    np.testing.assert_array_equal(u.kept, keep)
    np.testing.assert_array_equal(u.mask, keep | grow)
