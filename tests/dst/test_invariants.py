"""SPEC section 10: the invariants after every init and update, as hypothesis properties."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import srigl_ref
from srigl_ref.dst import random_mask
from tests.strategies import drop_fractions, gamma_sals, layer_states


def rows(a):
    return a.reshape(a.shape[0], -1)


def srigl(state, df, gamma=0.3, ablation=True, base="sparse", tie_break="stable"):
    return srigl_ref.srigl_update(state.weight, state.mask, state.grad, sparsity=state.sparsity,
                                  drop_fraction=df, gamma_sal=gamma, ablation=ablation,
                                  ablation_base=base, momentum=state.momentum,
                                  tie_break=tie_break)


tie_breaks = st.sampled_from(["stable", "torch_cpu"])


def check_common(state, u):
    """Dtypes, shapes, zeros outside the mask, grown outside keep, no input mutated."""
    assert u.mask.dtype == np.bool_ and u.mask.shape == state.weight.shape
    assert u.weight.dtype == state.weight.dtype and u.weight.shape == state.weight.shape
    assert not u.weight[~u.mask].any()
    assert not u.momentum[~u.mask].any()
    assert u.momentum.tobytes() == (state.momentum * u.mask).tobytes()
    # weights of positions kept from the old mask are unchanged
    kept = state.mask & u.mask
    assert u.weight[kept].tobytes() == state.weight[kept].tobytes()
    activated = u.mask & ~state.mask
    assert not u.weight[activated].any()                # grown_init == 0.0, or a zero kept
    grown = u.mask & ~u.kept & ~state.mask              # zero-score keeps are not "grown"
    assert u.n_grown == grown.sum() and u.n_pruned == (state.mask & ~u.mask).sum()


@given(state=layer_states(), df=drop_fractions, gamma=gamma_sals, ablation=st.booleans(),
       base=st.sampled_from(["sparse", "dense"]), tie_break=tie_breaks)
def test_srigl_constant_fan_in_and_budget(state, df, gamma, ablation, base, tie_break):
    u = srigl(state, df, gamma, ablation, base, tie_break)
    check_common(state, u)
    counts = rows(u.mask).sum(1)
    ablated = np.zeros(len(counts), bool)
    ablated[u.ablated] = True
    assert (counts[ablated] == 0).all()
    assert (counts[~ablated] == u.fan_in).all()
    assert u.fan_in == srigl_ref.constant_fan_in(state.weight.shape, state.sparsity,
                                                 u.ablated.size)
    assert u.mask.sum() <= state.budget
    assert len(set(u.ablated.tolist())) == u.ablated.size
    out, fan = rows(state.weight).shape
    assert out - u.ablated.size >= min(state.budget // fan + 1, out)    # keep-alive rule
    assert (u.threshold == -1) == (not ablation or gamma == 0)


@given(state=layer_states(), df=drop_fractions, tie_break=tie_breaks)
def test_counts_n_keep_n_prune(state, df, tie_break):
    """n_prune = int(popcount * df), n_keep the rest; SRigL keeps at most nnz(W) (guard)."""
    n_ones = int(state.mask.sum())
    n_keep = n_ones - int(n_ones * df)
    guarded = min(n_keep, int(np.count_nonzero(state.weight)))
    updates = {guarded: [srigl(state, df, tie_break=tie_break)],
               n_keep: [srigl_ref.rigl_update(state.weight, state.mask, state.grad,
                                              drop_fraction=df, tie_break=tie_break),
                        srigl_ref.set_update(state.weight, state.mask, drop_fraction=df,
                                             rng=np.random.default_rng(0))]}
    for want, us in updates.items():
        for u in us:
            assert (u.n_keep, u.n_prune) == (want, n_ones - want)


@given(state=layer_states(), df=drop_fractions, gamma=gamma_sals, ablation=st.booleans())
def test_srigl_keep_and_grow_sets(state, df, gamma, ablation):
    """K = top |W| (capped to k per row), grown = per-row top |G| outside K, disjoint."""
    u = srigl(state, df, gamma, ablation)
    kept, new = rows(u.kept), rows(u.mask)
    sd, sg = np.abs(rows(state.weight)), np.abs(rows(state.grad))
    assert not (kept & ~new).any()                       # K is part of the new mask
    assert kept.sum() <= u.n_keep
    assert (kept.sum(1) <= u.fan_in).all()               # the cap
    alive = np.ones(len(new), bool)
    alive[u.ablated] = False
    capped = (kept.sum(1) == u.fan_in) & alive
    if kept.sum() == u.n_keep and kept.any() and not capped.any():
        # no cap bound: K is exactly the top-n_keep of |W| over the alive rows
        assert sd[kept].min() >= sd[alive][~kept[alive]].max(initial=0)
    grown = new & ~kept
    for i in np.flatnonzero(grown.any(1)):               # per-row top |G| outside K
        outside = ~new[i]
        assert sg[i][grown[i]].min() >= sg[i][outside].max(initial=0)
    dropped = rows(state.mask) & ~kept
    assert not (dropped & kept).any() and not (grown & kept).any()


@st.composite
def settled_layers(draw):
    """A layer an update with ``drop_fraction == 0`` must leave as it is.

    Rows hold exactly ``k`` (or are ablated), no active weight is 0, and the ablation
    settings re-ablate exactly the empty rows: with df == 0 every row's salient count is its
    fan-in, so the lowered threshold (at most ``k``) ablates the empty rows as long as the
    keep-alive rank ``min(B // F, out - 1)`` falls on a live row.
    Returns ``(state, gamma_sal, ablation)``.
    """
    state = draw(layer_states())
    out, fan = rows(state.mask).shape
    n_alive = out - state.abl_old.size
    if state.abl_old.size and min(state.budget // fan, out - 1) >= n_alive:
        # the budget fills every live row (k == F) and would revive the empty ones:
        # spread it over all rows instead
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        mask = np.zeros((out, fan), bool)
        for i in range(out):
            mask[i, rng.choice(fan, size=state.budget // out, replace=False)] = True
        state.mask = mask.reshape(state.weight.shape)
        state.weight = (rng.standard_normal(state.mask.shape) * state.mask).astype(
            state.weight.dtype)
        state.abl_old = np.zeros(0, np.int64)
    state.weight = np.where(state.mask & (state.weight == 0), 1, state.weight).astype(
        state.weight.dtype)
    if state.abl_old.size:                      # only ablation can keep empty rows empty
        return state, draw(gamma_sals.filter(lambda g: g > 0)), True
    return state, draw(gamma_sals), draw(st.booleans())


@given(settled=settled_layers())
def test_srigl_zero_drop_fraction_keeps_a_settled_mask(settled):
    """df == 0 on a settled layer: nothing moves, the same rows stay ablated."""
    state, gamma, ablation = settled
    u = srigl(state, 0.0, gamma, ablation)
    assert u.ablated.tolist() == state.abl_old.tolist()
    assert u.n_pruned == u.n_grown == 0
    np.testing.assert_array_equal(u.mask, state.mask)
    assert u.weight.tobytes() == state.weight.tobytes()


@given(state=layer_states(), df=drop_fractions, tie_break=tie_breaks)
def test_rigl_preserves_active_count(state, df, tie_break):
    u = srigl_ref.rigl_update(state.weight, state.mask, state.grad, drop_fraction=df,
                              momentum=state.momentum, tie_break=tie_break)
    check_common(state, u)
    assert u.mask.sum() == state.mask.sum()
    assert u.n_pruned == u.n_grown + (u.kept & ~state.mask).sum()     # zero-score keeps


@given(state=layer_states(), df=drop_fractions, seed=st.integers(0, 2**32 - 1))
def test_set_preserves_active_count_and_is_seeded(state, df, seed):
    kw = dict(drop_fraction=df, momentum=state.momentum)
    u = srigl_ref.set_update(state.weight, state.mask, rng=np.random.default_rng(seed), **kw)
    check_common(state, u)
    assert u.mask.sum() == state.mask.sum()
    again = srigl_ref.set_update(state.weight, state.mask, rng=np.random.default_rng(seed), **kw)
    np.testing.assert_array_equal(u.mask, again.mask)


@given(state=layer_states(), df=drop_fractions)
def test_updates_do_not_mutate_inputs(state, df):
    before = [a.copy() for a in (state.weight, state.mask, state.grad, state.momentum)]
    srigl(state, df)
    srigl_ref.rigl_update(state.weight, state.mask, state.grad, drop_fraction=df,
                          momentum=state.momentum)
    for a, b in zip(before, (state.weight, state.mask, state.grad, state.momentum)):
        assert a.tobytes() == b.tobytes()


@given(state=layer_states(), df=drop_fractions)
def test_same_inputs_same_masks(state, df):
    a, b = srigl(state, df), srigl(state, df)
    assert a.mask.tobytes() == b.mask.tobytes() and a.weight.tobytes() == b.weight.tobytes()


@given(shape=st.tuples(st.integers(1, 64), st.integers(1, 300)), data=st.data(),
       seed=st.integers(0, 2**32 - 1))
def test_random_fan_in_mask_exact_and_seeded(shape, data, seed):
    k = data.draw(st.integers(1, shape[1]))
    m = srigl_ref.random_fan_in_mask(shape, k, np.random.default_rng(seed))
    assert m.dtype == np.bool_ and m.shape == shape
    assert (m.sum(1) == k).all()
    assert srigl_ref.check_constant_fan_in(m) == k
    again = srigl_ref.random_fan_in_mask(shape, k, np.random.default_rng(seed))
    assert m.tobytes() == again.tobytes()


@given(shape=st.tuples(st.integers(1, 16), st.integers(1, 8), st.integers(1, 3),
                       st.integers(1, 3)),
       s=st.floats(0.0, 0.99), seed=st.integers(0, 2**32 - 1))
def test_random_mask_count_and_seeded(shape, s, seed):
    m = random_mask(shape, s, np.random.default_rng(seed))
    n = math.prod(shape)
    assert m.sum() == n - int(s * n)
    assert m.tobytes() == random_mask(shape, s, np.random.default_rng(seed)).tobytes()


@pytest.mark.parametrize("seed", range(3))
def test_srigl_chain_of_updates_keeps_invariants(seed):
    """A sequence of updates with changing gradients: invariants hold after every one."""
    rng = np.random.default_rng(seed)
    shape, s = (24, 40), 0.9
    k = srigl_ref.constant_fan_in(shape, s)
    mask = srigl_ref.random_fan_in_mask(shape, k, rng)
    weight = (rng.standard_normal(shape) * mask).astype(np.float32)
    mom = np.zeros(shape, np.float32)
    for step in range(100, 1000, 100):
        grad = rng.standard_normal(shape).astype(np.float32) * rng.random((shape[0], 1)) ** 4
        u = srigl_ref.srigl_update(weight, mask, grad, sparsity=s,
                                   drop_fraction=srigl_ref.drop_fraction(step, 0.3, 1000),
                                   momentum=mom)
        assert srigl_ref.check_constant_fan_in(u.mask) == u.fan_in
        assert not u.weight[~u.mask].any()
        mask, weight, mom = u.mask, u.weight + 0.01 * u.mask.astype(np.float32), u.momentum
