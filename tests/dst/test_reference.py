"""The readable reference ``srigl_ref.dst.reference``: the authors' outputs, its named
deviations, its errors.

Equality with the fast kernels on random states is in ``test_topology_reference.py``; the
worked example of ``docs/algorithm.md §12`` is ``test_worked_example.py``.
"""
import inspect
import json

import numpy as np
import pytest

import srigl_ref
from srigl_ref.dst import reference
from tests.dst.test_golden import RIGL, SRIGL, check_exact, srigl_kwargs

TIE_FREE_SRIGL = [p for p in SRIGL if not np.load(p)["ties"]]
TIE_FREE_RIGL = [p for p in RIGL if not np.load(p)["ties"]]


def test_tie_free_golden_cases_are_present():
    assert len(TIE_FREE_SRIGL) == 23 and len(TIE_FREE_RIGL) == 7


@pytest.mark.parametrize("path", TIE_FREE_SRIGL, ids=lambda p: p.stem)
def test_srigl_reference_matches_official(path):
    d = np.load(path)
    u = reference.srigl_update(d["weight"], d["mask"], d["grad"], **srigl_kwargs(d))
    check_exact(d, u)
    meta = json.loads(d["meta"].item())
    assert (u.n_keep, u.n_prune) == (meta["n_keep"], meta["n_prune"])


@pytest.mark.parametrize("path", TIE_FREE_RIGL, ids=lambda p: p.stem)
def test_rigl_reference_matches_official(path):
    d = np.load(path)
    u = reference.rigl_update(d["weight"], d["mask"], d["grad"],
                              drop_fraction=d["drop_fraction"].item(), momentum=d["momentum"])
    check_exact(d, u)
    meta = json.loads(d["meta"].item())
    assert (u.n_keep, u.n_prune) == (meta["n_keep"], meta["n_prune"])


# ---------------------------------------------------------------- named deviations (SRigL)
def layer(dtype=np.float32):
    """A 4x10 layer at sparsity 0.5 (budget 20, k = 5), rows 0-2 strong, row 3 weak.

    |W|: rows 0-2 hold 1.00..1.24 in columns 0-4; row 3 holds 0.5 at column 0 and
    0.01..0.04 in columns 1-4 (inactive entries are -0.0). |G| is 0.001 * (flat index + 1)
    except the top eight: 0.9 (0,5), 0.8 (1,5), 0.7 (1,6), 0.6 (0,6), then row 3's
    0.5, 0.45, 0.4, 0.35 at columns 5-8. With drop fraction 0.2: n_ones 20, n_prune 4,
    n_keep 16, and the salient counts (top-16 |W| or top-4 |G|) are [7, 7, 5, 1].
    """
    weight = np.zeros((4, 10), dtype)
    for i in range(3):
        weight[i, :5] = [1 + 0.1 * i + 0.01 * j for j in range(5)]
    weight[3, :5] = [0.5, 0.01, 0.02, 0.03, 0.04]
    mask = weight != 0
    weight[~mask] = -0.0
    grad = ((np.arange(40).reshape(4, 10) + 1) * 1e-3).astype(dtype)
    grad[0, 5], grad[0, 6], grad[1, 5], grad[1, 6] = 0.9, 0.6, 0.8, 0.7
    grad[3, 5:9] = [0.5, 0.45, 0.4, 0.35]
    momentum = np.where(mask, 0.5, 0).astype(dtype)
    return weight, mask, grad, momentum


def srigl(drop_fraction=0.2, **kwargs):
    weight, mask, grad, momentum = layer()
    return reference.srigl_update(weight, mask, grad, sparsity=0.5,
                                  drop_fraction=drop_fraction, momentum=momentum, **kwargs)


def test_the_layer_has_the_documented_salient_counts():
    weight, _, grad, _ = layer()
    counts = reference.salient_counts(np.abs(weight), np.abs(grad), 16, 4)
    assert counts.tolist() == [7, 7, 5, 1]
    assert srigl(gamma_sal=0.3).ablated.size == 0            # threshold 1: nobody goes


@pytest.mark.parametrize("offset, n_keep", [(-1, 15), (1, 17), (-2, 14), (100, 20),
                                            (-100, 0)])
def test_n_keep_offset_shifts_n_keep_and_clips(offset, n_keep):
    base = srigl(ablation=False)
    u = srigl(ablation=False, n_keep_offset=offset)
    assert (base.n_keep, base.n_prune) == (16, 4)
    assert (u.n_keep, u.n_prune) == (n_keep, 20 - n_keep)
    assert int(u.kept.sum()) == n_keep
    if offset == -1:       # row 3's 0.5 was the 16th largest weight: now it is dropped
        assert base.kept[3, 0] and not u.kept[3, 0]
        assert u.mask[3].nonzero()[0].tolist() == [5, 6, 7, 8, 9]   # by |G|: 0.5, 0.45, ...
        assert base.weight[3, 0] == 0.5 and u.weight[3, 0] == 0


def test_salient_grad_count_n_keep_counts_more_gradients():
    # gamma 0.5: threshold max(1, int(0.5 * 5)) = 2; row 3 has 1 salient weight
    assert srigl(gamma_sal=0.5).ablated.tolist() == [3]
    u = srigl(gamma_sal=0.5, salient_grad_count="n_keep")
    assert u.ablated.size == 0            # its large gradients are among the top 16 |G|
    weight, _, grad, _ = layer()
    assert reference.salient_counts(np.abs(weight), np.abs(grad), 16, 16)[3] == 10


def test_real_ablation_test_rounds_the_threshold_up():
    # gamma 0.3, base 5: integer threshold int(1.5) = 1, real count / 5 < 0.3 <=> count < 2
    assert srigl(gamma_sal=0.3).ablated.size == 0
    u = srigl(gamma_sal=0.3, ablation_test="real")
    assert u.ablated.tolist() == [3] and u.threshold == 2 and u.fan_in == 20 // 3


@pytest.mark.parametrize("gamma, n_ones, want", [(0.3, 20, 2), (0.2, 20, 1), (0.4, 20, 2),
                                                 (0.3, 16, 2), (0.3, 12, 1), (0.3, 3, 0),
                                                 (1.5, 20, 8)])
def test_real_salient_threshold_is_the_smallest_passing_count(gamma, n_ones, want):
    t = reference.salient_threshold(gamma, 20, n_ones, (4, 10), ablation_test="real")
    assert t == want
    base = n_ones // 4
    assert all((c / base < gamma) == (c < t) for c in range(11)) if base else t == 0


def test_keep_alive_off_ablates_below_the_keep_alive_pivot():
    # absolute threshold 6; counts [7, 7, 5, 1]; budget // F = 2, so the 3rd-ranked neuron
    # (row 2, count 5) must survive: the threshold is lowered to 5
    u = srigl(gamma_sal=6.0)
    assert u.ablated.tolist() == [3] and u.threshold == 5 and u.fan_in == 6
    u = srigl(gamma_sal=6.0, keep_alive=False)
    assert u.ablated.tolist() == [2, 3] and u.threshold == 6 and u.fan_in == 10
    assert u.mask.sum(1).tolist() == [10, 10, 0, 0]


def test_keep_alive_off_can_ablate_every_neuron():
    with pytest.raises(ValueError, match=r"all 4 neurons .* were ablated"):
        srigl(gamma_sal=8.0, keep_alive=False)
    u = srigl(gamma_sal=8.0, keep_alive=False, redistribute_fan_in=False)
    assert u.ablated.tolist() == [0, 1, 2, 3] and not u.mask.any()


def test_regrow_emptied_rows_off_leaves_a_pruned_neuron_empty():
    # drop fraction 0.25: n_keep 15 = rows 0-2's weights, row 3 keeps nothing
    base = srigl(drop_fraction=0.25, ablation=False)
    assert base.mask.sum(1).tolist() == [5, 5, 5, 5] and not base.kept[3].any()
    u = srigl(drop_fraction=0.25, ablation=False, regrow_emptied_rows=False)
    assert u.mask.sum(1).tolist() == [5, 5, 5, 0]
    np.testing.assert_array_equal(u.mask[:3], base.mask[:3])


def test_redistribute_fan_in_off_keeps_k_at_budget_over_out():
    assert srigl(gamma_sal=0.5).fan_in == 20 // 3
    u = srigl(gamma_sal=0.5, redistribute_fan_in=False)
    assert u.ablated.tolist() == [3] and u.fan_in == 20 // 4
    assert u.mask.sum(1).tolist() == [5, 5, 5, 0]


def test_reinit_grown_off_keeps_the_stale_value():
    base = srigl(ablation=False, grown_init=0.25)
    grown = base.mask & ~layer()[1]
    assert grown.sum() == base.n_grown == 4
    assert (base.weight[grown] == 0.25).all()
    u = srigl(ablation=False, grown_init=0.25, reinit_grown=False)
    np.testing.assert_array_equal(u.mask, base.mask)
    assert (u.weight[grown] == 0).all() and np.signbit(u.weight[grown]).all()   # -0.0 kept
    np.testing.assert_array_equal(u.weight[~grown], base.weight[~grown])


def test_mask_momentum_off_leaves_the_momentum_of_dropped_weights():
    weight, mask, _, momentum = layer()
    base = srigl(ablation=False)
    dropped = mask & ~base.mask
    assert dropped.sum() == base.n_pruned == 4 and not base.momentum[dropped].any()
    u = srigl(ablation=False, mask_momentum=False)
    assert u.momentum.tobytes() == momentum.tobytes()
    np.testing.assert_array_equal(u.mask, base.mask)


# ---------------------------------------------------------------- named deviations (RigL)
def rigl_layer():
    """4x4 layer, 5 active weights: 0.9 (0,0), 0.7 (1,1), 0.5 (2,2), 0.0 (3,3) active but
    exactly zero, 0.3 (3,0); |G| = 0.01 * (flat index + 1)."""
    mask = np.zeros((4, 4), bool)
    mask[[0, 1, 2, 3, 3], [0, 1, 2, 3, 0]] = True
    weight = np.zeros((4, 4), np.float32)
    weight[[0, 1, 2, 3], [0, 1, 2, 0]] = [0.9, 0.7, 0.5, 0.3]
    grad = ((np.arange(16) + 1) * 0.01).reshape(4, 4).astype(np.float32)
    return weight, mask, grad


def test_jaxpruner_keep_count_rounds_half_to_even_in_float32():
    # n_ones 5, drop fraction 0.5: authors n_prune int(2.5) = 2, n_keep 3;
    # jaxpruner: 16 * (5/16 * 0.5) = 2.5 -> round half even = 2 kept, 5 - 2 = 3 grown
    mask = rigl_layer()[1]
    assert reference.rigl_counts(mask, 0.5) == (5, 2, 3, 2)
    assert reference.rigl_counts(mask, 0.5, keep_count="jaxpruner") == (5, 3, 2, 3)
    weight, mask, grad = rigl_layer()
    u = reference.rigl_update(weight, mask, grad, drop_fraction=0.5, keep_count="jaxpruner")
    assert (u.n_keep, u.n_prune) == (2, 3) and int(u.kept.sum()) == 2
    assert int(u.mask.sum()) == 5
    assert np.flatnonzero(u.kept).tolist() == [0, 5]                  # 0.9 and 0.7


def test_inactive_below_active_zeros_keeps_the_active_zero():
    # drop fraction 0: n_keep 5 but only 4 nonzero weights; the 5th kept is a zero score:
    # the authors' tie-break takes the lowest flat index (0,1, inactive), jaxpruner (3,3)
    weight, mask, grad = rigl_layer()
    base = reference.rigl_update(weight, mask, grad, drop_fraction=0.0)
    assert base.kept[0, 1] and not base.kept[3, 3]
    u = reference.rigl_update(weight, mask, grad, drop_fraction=0.0,
                              inactive_below_active_zeros=True)
    np.testing.assert_array_equal(u.mask, mask)             # the mask is unchanged
    assert u.kept[3, 3] and not u.kept[0, 1]


def test_drop_fraction_in_float32_moves_the_drop_count():
    # 10 * (0.1 - 1e-12) = 0.99999999999 -> 0 in float64; float32(0.1 - 1e-12) = 0.1f and
    # 10 * 0.1f rounds to 1.0f -> 1
    mask = np.zeros((2, 10), bool)
    mask[:, :5] = True
    df = 0.1 - 1e-12
    assert reference.rigl_counts(mask, df).n_prune == 0
    assert reference.rigl_counts(mask, df, drop_fraction_dtype=np.float32).n_prune == 1


def test_rigl_mask_momentum_off_leaves_the_momentum():
    weight, mask, grad = rigl_layer()
    momentum = np.where(mask, 1.0, 0.0).astype(np.float32)
    base = reference.rigl_update(weight, mask, grad, drop_fraction=0.5, momentum=momentum)
    assert not base.momentum[mask & ~base.mask].any() and base.n_pruned > 0
    u = reference.rigl_update(weight, mask, grad, drop_fraction=0.5, momentum=momentum,
                              mask_momentum=False)
    assert u.momentum.tobytes() == momentum.tobytes()


# ---------------------------------------------------------------- the deviation registry
@pytest.mark.parametrize("method, update", [("srigl", reference.srigl_update),
                                            ("rigl", reference.rigl_update)])
def test_every_deviation_is_a_keyword_with_other_values_than_its_default(method, update):
    parameters = inspect.signature(update).parameters
    assert reference.DEVIATIONS[method]
    for name, values in reference.DEVIATIONS[method].items():
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default not in values and len(set(values)) == len(values)


def changes_srigl(name, value):
    """Whether ``name=value`` changes a constructed SRigL update (the cases above)."""
    scenario = {"n_keep_offset": dict(ablation=False),
                "salient_grad_count": dict(gamma_sal=0.5),
                "ablation_test": dict(gamma_sal=0.3),
                "keep_alive": dict(gamma_sal=6.0),
                "regrow_emptied_rows": dict(drop_fraction=0.25, ablation=False),
                "redistribute_fan_in": dict(gamma_sal=0.5),
                "reinit_grown": dict(ablation=False, grown_init=0.25),
                "mask_momentum": dict(ablation=False)}[name]
    a, b = srigl(**scenario), srigl(**scenario, **{name: value})
    return not (np.array_equal(a.mask, b.mask) and a.weight.tobytes() == b.weight.tobytes()
                and a.momentum.tobytes() == b.momentum.tobytes())


def test_every_srigl_deviation_value_changes_a_constructed_update():
    for name, values in reference.DEVIATIONS["srigl"].items():
        for value in values:
            assert changes_srigl(name, value), (name, value)


def test_every_rigl_deviation_value_changes_a_constructed_update():
    weight, mask, grad = rigl_layer()
    momentum = np.where(mask, 1.0, 0.0).astype(np.float32)
    scenario = {"keep_count": dict(drop_fraction=0.5),
                "inactive_below_active_zeros": dict(drop_fraction=0.0),
                "drop_fraction_dtype": dict(drop_fraction=0.2 - 1e-12),
                "mask_momentum": dict(drop_fraction=0.5)}
    for name, values in reference.DEVIATIONS["rigl"].items():
        for value in values:
            kw = dict(scenario[name], momentum=momentum)
            a = reference.rigl_update(weight, mask, grad, **kw)
            b = reference.rigl_update(weight, mask, grad, **kw, **{name: value})
            assert not (np.array_equal(a.kept, b.kept)
                        and a.momentum.tobytes() == b.momentum.tobytes()), (name, value)


# ---------------------------------------------------------------- errors
def test_torch_cpu_ties_point_to_the_fast_path():
    weight, mask, grad, _ = layer()
    with pytest.raises(ValueError, match=r"tie_break == 'torch_cpu' is not available in "
                                         r"srigl_ref.dst.reference.*use the fast functions"):
        reference.srigl_update(weight, mask, grad, sparsity=0.5, drop_fraction=0.2,
                               tie_break="torch_cpu")
    w, m, g = rigl_layer()
    with pytest.raises(ValueError, match=r"tie_break == 'torch_cpu' is not available"):
        reference.rigl_update(w, m, g, drop_fraction=0.2, tie_break="torch_cpu")
    with pytest.raises(ValueError, match=r"tie_break == 'random', must be one of"):
        reference.rigl_update(w, m, g, drop_fraction=0.2, tie_break="random")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(salient_grad_count="n_ones"), ValueError, r"salient_grad_count == 'n_ones', must "
                                                    r"be one of 'n_prune', 'n_keep'"),
    (dict(ablation_test="float"), ValueError, r"ablation_test == 'float', must be one of"),
    (dict(n_keep_offset=0.5), TypeError, r"n_keep_offset == 0.5, must be an int"),
    (dict(keep_alive=1), TypeError, r"keep_alive == 1, must be a bool"),
    (dict(reinit_grown="no"), TypeError, r"reinit_grown == 'no', must be a bool"),
    (dict(gamma_sal=1.5), ValueError, r"gamma_sal == 1.5, must be an integer count"),
])
def test_srigl_deviation_errors_name_the_argument(kwargs, error, message):
    weight, mask, grad, _ = layer()
    with pytest.raises(error, match=message):
        reference.srigl_update(weight, mask, grad, sparsity=0.5, drop_fraction=0.2, **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(keep_count="optax"), ValueError, r"keep_count == 'optax', must be one of "
                                           r"'authors', 'jaxpruner'"),
    (dict(drop_fraction_dtype=np.float16), ValueError,
     r"drop_fraction_dtype == .*float16.*, must be one of float64, float32"),
    (dict(drop_fraction_dtype="f8x"), ValueError, r"drop_fraction_dtype == 'f8x'"),
    (dict(inactive_below_active_zeros=None), TypeError,
     r"inactive_below_active_zeros == None, must be a bool"),
])
def test_rigl_deviation_errors_name_the_argument(kwargs, error, message):
    weight, mask, grad = rigl_layer()
    with pytest.raises(error, match=message):
        reference.rigl_update(weight, mask, grad, drop_fraction=0.2, **kwargs)


def test_weight_outside_the_mask_is_rejected():
    weight, mask, grad, _ = layer()
    weight[0, 9] = 1.0
    with pytest.raises(ValueError, match=r"weight has 1 nonzero value\(s\) outside mask"):
        reference.srigl_update(weight, mask, grad, sparsity=0.5, drop_fraction=0.2)


def _error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        return type(e), str(e)
    return None


def bad_srigl_calls():
    """(args, kwargs) of srigl_update calls that must fail, built on ``layer()``."""
    w, m, g, mom = layer()
    base = dict(sparsity=0.5, drop_fraction=0.2)
    w_out = w.copy()
    w_out[0, 9] = 1.0
    g_nan = g.copy()
    g_nan[1, 2] = np.nan
    return [
        ((w, m[:, :-1], g), base),
        ((w, m, g.T.copy()), base),
        ((w[0], m[0], g[0]), base),
        ((w, m.astype(np.float32), g), base),
        ((w.astype(np.int64), m, g), base),
        ((w, m, g.tolist()), base),
        ((w, m, None), base),
        ((w, m, g_nan), base),
        ((w_out, m, g), base),
        ((w, m, g), dict(base, momentum=mom[:, :2])),
        ((w, m, g), dict(base, drop_fraction=1.1)),
        ((w, m, g), dict(base, sparsity=1.0)),
        ((w, m, g), dict(base, sparsity=0.99)),                # k == 0
        ((w, m, g), dict(base, gamma_sal=-0.1)),
        ((w, m, g), dict(base, gamma_sal=2.5)),
        ((w, m, g), dict(base, ablation=1)),
        ((w, m, g), dict(base, ablation_base="sparse-ish")),
        ((w, m, g), dict(base, grown_init="zero")),
        ((w, m, g), dict(base, tie_break="random")),
    ]


@pytest.mark.parametrize("call", range(len(bad_srigl_calls())))
def test_srigl_errors_equal_the_fast_path(call):
    args, kwargs = bad_srigl_calls()[call]
    want = _error(srigl_ref.srigl_update, *args, **kwargs)
    assert want is not None
    assert _error(reference.srigl_update, *args, **kwargs) == want


@pytest.mark.parametrize("path", SRIGL + RIGL, ids=lambda p: f"{p.parent.name}-{p.stem}")
@pytest.mark.parametrize("tie_break", ["stable", "torch_cpu"])
def test_fast_counts_match_the_recorded_ones(path, tie_break):
    """n_keep / n_prune do not depend on ties: every golden case, both tie-breaks."""
    d = np.load(path)
    meta = json.loads(d["meta"].item())
    if "k_out" in d:
        u = srigl_ref.srigl_update(d["weight"], d["mask"], d["grad"], **srigl_kwargs(d),
                                   tie_break=tie_break)
    else:
        u = srigl_ref.rigl_update(d["weight"], d["mask"], d["grad"],
                                  drop_fraction=d["drop_fraction"].item(), tie_break=tie_break)
    assert (u.n_keep, u.n_prune) == (meta["n_keep"], meta["n_prune"])
