"""``srigl_ref.testing``: differential testing finds, shrinks and names planted deviations.

Each deviant implementation is srigl-ref's readable reference with one named deviation
(``srigl_ref.dst.reference``), wrapped as a user's update function would be: inputs as
keyword arguments, a dict (or an object) of outputs. ``check_update`` must pass
srigl-ref's own update and, for every deviant, find a disagreement, shrink it to a layer
of at most 256 weights, name the stage that differs and the deviation that reproduces it.
"""
import sys

import numpy as np
import pytest
from hypothesis import given, settings

from srigl_ref import rigl_update, srigl_update, testing
from srigl_ref.cli import main
from srigl_ref.dst import check_constant_fan_in, reference

MAX_EXAMPLES = 100


def srigl_deviant(gamma_sal_used=None, **deviation):
    """A user's SRigL: the reference with ``deviation`` (or ignoring ``gamma_sal``)."""
    def update(weight, mask, grad, *, sparsity, drop_fraction, gamma_sal, momentum):
        gamma = gamma_sal if gamma_sal_used is None else gamma_sal_used
        kw = dict(sparsity=sparsity, drop_fraction=drop_fraction, gamma_sal=gamma,
                  momentum=momentum, **deviation)
        try:
            u = reference.srigl_update(weight, mask, grad, **kw)
        except ValueError:                    # no keep-alive: every neuron ablated
            return dict(mask=np.zeros_like(mask), weight=weight * 0, momentum=momentum * 0,
                        ablated=np.arange(mask.shape[0]))
        return dict(mask=u.mask, weight=u.weight, momentum=u.momentum, ablated=u.ablated,
                    fan_in=u.fan_in)
    return update


def rigl_deviant(**deviation):
    """A user's RigL returning an object (the reference's TopologyUpdate)."""
    def update(weight, mask, grad, *, drop_fraction, momentum):
        return reference.rigl_update(weight, mask, grad, drop_fraction=drop_fraction,
                                     momentum=momentum, **deviation)
    return update


def srigl_ref_own(weight, mask, grad, *, sparsity, drop_fraction, gamma_sal, momentum):
    u = srigl_update(weight, mask, grad, sparsity=sparsity, drop_fraction=drop_fraction,
                     gamma_sal=gamma_sal, momentum=momentum)
    return {"mask": u.mask, "weight": u.weight, "momentum": u.momentum,
            "ablated": u.ablated, "fan_in": u.fan_in}


def rigl_ref_own(weight, mask, grad, *, drop_fraction, momentum):
    return rigl_update(weight, mask, grad, drop_fraction=drop_fraction, momentum=momentum)


deviant_n_keep = srigl_deviant(n_keep_offset=-1)          # for the command line test


def test_srigl_refs_own_update_passes():
    report = testing.check_update(srigl_ref_own, max_examples=MAX_EXAMPLES)
    assert report.ok and report.case is None and report.stage is None, report.describe()
    assert report.examples == MAX_EXAMPLES
    assert testing.check_update(rigl_ref_own, method="rigl", max_examples=MAX_EXAMPLES).ok


SRIGL_DEVIANTS = [
    ("n_keep_offset=-1", srigl_deviant(n_keep_offset=-1), "count"),
    ("n_keep_offset=+1", srigl_deviant(n_keep_offset=1), "count"),
    ("n_keep_offset=-2", srigl_deviant(n_keep_offset=-2), "count"),
    ("salient_grad_count='n_keep'", srigl_deviant(salient_grad_count="n_keep"), "ablation"),
    ("ablation_test='real'", srigl_deviant(ablation_test="real"), "ablation"),
    ("keep_alive=False", srigl_deviant(keep_alive=False), "ablation"),
    ("gamma_sal=0.3", srigl_deviant(gamma_sal_used=0.3), "ablation"),
    ("regrow_emptied_rows=False", srigl_deviant(regrow_emptied_rows=False), "grow"),
    ("redistribute_fan_in=False", srigl_deviant(redistribute_fan_in=False), "fan_in"),
    ("reinit_grown=False", srigl_deviant(reinit_grown=False), "weight"),
    ("mask_momentum=False", srigl_deviant(mask_momentum=False), "momentum"),
]
RIGL_DEVIANTS = [
    ("keep_count='jaxpruner'", rigl_deviant(keep_count="jaxpruner"), "count"),
    ("inactive_below_active_zeros=True", rigl_deviant(inactive_below_active_zeros=True),
     "keep"),
    ("drop_fraction_dtype=float32", rigl_deviant(drop_fraction_dtype=np.float32), "count"),
    ("mask_momentum=False", rigl_deviant(mask_momentum=False), "momentum"),
]


@pytest.mark.parametrize("method, label, fn, stage",
                         [("srigl", *d) for d in SRIGL_DEVIANTS]
                         + [("rigl", *d) for d in RIGL_DEVIANTS],
                         ids=lambda x: x if isinstance(x, str) else "")
def test_every_planted_deviation_is_found_shrunk_staged_and_named(method, label, fn, stage):
    report = testing.check_update(fn, method=method, max_examples=MAX_EXAMPLES)
    assert not report.ok
    assert report.case["weight"].size <= 256, report.describe()
    assert report.stage == stage, report.describe()
    assert label in report.explanation, report.describe()
    assert report.explanation.startswith("explain: reproduced exactly by"), report.describe()
    assert set(report.case) >= {"weight", "mask", "grad", "drop_fraction", "momentum"}
    assert f"stage {stage}" in report.describe()


def test_the_same_seed_gives_the_same_report():
    fn = srigl_deviant(n_keep_offset=-1)
    a, b = (testing.check_update(fn, max_examples=20, seed=3) for _ in range(2))
    assert a.describe() == b.describe()
    np.testing.assert_array_equal(a.case["weight"], b.case["weight"])


def test_a_crash_is_reported_as_stage_error():
    def crashes(weight, mask, grad, *, sparsity, drop_fraction):
        raise RuntimeError("boom")
    report = testing.check_update(crashes, max_examples=5)
    assert (report.ok, report.stage) == (False, "error")
    assert report.explanation == "fn raised RuntimeError: boom"


def test_keywords_the_function_lacks_take_srigl_refs_defaults():
    def without_momentum(weight, mask, grad, *, sparsity, drop_fraction):
        u = srigl_update(weight, mask, grad, sparsity=sparsity, drop_fraction=drop_fraction)
        return {"mask": u.mask, "weight": u.weight}
    report = testing.check_update(without_momentum, max_examples=20)
    assert report.ok, report.describe()


@pytest.mark.parametrize("fn, message", [
    (42, r"fn must be callable, got int"),
    (lambda weight, mask, grad, *, sparsity: None, r"must accept the keyword 'drop_fraction'"),
])
def test_bad_functions_are_refused(fn, message):
    with pytest.raises(TypeError, match=message):
        testing.check_update(fn, max_examples=1)


@pytest.mark.parametrize("returned, message", [
    (lambda w, m: {"weight": w}, r"without 'mask'"),
    (lambda w, m: {"mask": m[:1], "weight": w}, r"returned mask of shape \(1, "),
    (lambda w, m: {"mask": m, "weight": w.astype(np.float64)},
     r"returned weight of dtype float64, must be float32"),
])
def test_malformed_outputs_are_refused(returned, message):
    def fn(weight, mask, grad, *, sparsity, drop_fraction):
        return returned(weight, mask)
    with pytest.raises(ValueError, match=message):
        testing.check_update(fn, max_examples=3)


@pytest.mark.parametrize("kw, message", [
    (dict(method="set"), r"method == 'set', must be one of"),
    (dict(max_examples=0), r"max_examples == 0"),
    (dict(tie_break="random"), r"tie_break == 'random'"),
])
def test_bad_arguments_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        testing.check_update(srigl_ref_own, **kw)


@settings(max_examples=30)
@given(testing.layer_states("srigl", max_weights=512))
def test_srigl_layer_states_are_valid_inputs(state):
    w, m = state["weight"], state["mask"]
    assert w.dtype == np.float32 and m.shape == w.shape and w.size <= 512
    assert not w[~m].any() and not state["momentum"][~m].any()
    rows = m.reshape(m.shape[0], -1).sum(axis=1)
    assert check_constant_fan_in(m) == (rows.max() if rows.any() else 0)
    assert int(w.size * (1 - state["sparsity"])) >= rows.sum()
    assert 0 <= state["drop_fraction"] <= 1 and state["gamma_sal"] >= 0


@settings(max_examples=20)
@given(testing.layer_states("rigl", ties=True, dtype=np.float64, conv=False))
def test_tied_rigl_states_hold_integer_magnitudes(state):
    assert state["weight"].ndim == 2 and state["weight"].dtype == np.float64
    w = state["weight"][state["mask"]]
    assert np.array_equal(np.abs(w)[np.abs(w) >= 1], np.round(np.abs(w)[np.abs(w) >= 1]))


def test_missing_hypothesis_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ModuleNotFoundError, match=r"^srigl_ref.testing needs the hypothesis "
                                                   r"package: pip install 'srigl-ref\[testing\]'$"):
        testing.check_update(srigl_ref_own)


def test_xcheck_command_exit_codes(capsys):
    assert main(["xcheck", "tests.test_testing:srigl_ref_own", "--max-examples", "10"]) == 0
    assert "agrees with srigl-ref on all 10 generated layer states" in capsys.readouterr().out
    assert main(["xcheck", "tests.test_testing:deviant_n_keep", "--max-examples", "30"]) == 1
    out = capsys.readouterr().out
    assert "DISAGREES" in out and "stage count: n_keep: file" in out
    assert "explain: reproduced exactly by the deviation" in out and "n_keep_offset=-1" in out
    for spec, message in (("nocolon", "must name a module and a function"),
                          ("tests.test_testing:nothing", "cannot be imported")):
        assert main(["xcheck", spec]) == 2
        err = capsys.readouterr().err
        assert err.startswith("srigl-ref: error: MODULE:FUNCTION == ") and message in err
        assert err.count("\n") == 1


@pytest.mark.parametrize("what, condition", [
    ("a conv layer", lambda s: s["weight"].ndim == 4),
    ("a previously ablated row", lambda s: (~s["mask"].reshape(len(s["mask"]), -1)
                                            .any(axis=1)).any() and s["mask"].any()),
    ("a weak row", lambda s: 0 < np.abs(s["grad"].reshape(len(s["grad"]), -1)).max(axis=1)
                                   .min() < 0.01),
    ("an exact zero among active weights", lambda s: (s["weight"][s["mask"]] == 0).any()),
    ("-0.0 at an inactive position", lambda s: np.signbit(s["weight"][~s["mask"]]).any()),
    ("a drop fraction just below a count boundary",
     lambda s: 0 < (-s["drop_fraction"] * s["mask"].sum()) % 1 < 1e-6),
])
def test_layer_states_cover_what_the_deviations_need(what, condition):
    from hypothesis import find
    find(testing.layer_states("srigl"), condition, settings=settings(max_examples=500,
                                                                        database=None))


def test_ties_on_demand_give_tied_magnitudes():
    from hypothesis import find
    state = find(testing.layer_states("srigl", ties=True), lambda s: s["mask"].sum() >= 4,
                 settings=settings(max_examples=100, database=None))
    active = np.abs(state["weight"][state["mask"]])
    assert len(np.unique(active)) < active.size        # integer values in [-3, 3] tie


def test_a_whole_library_is_named_when_no_single_deviation_reproduces_it():
    from srigl_ref.interchange.explain import LIBRARIES
    jaxpruner = rigl_deviant(**LIBRARIES["rigl"]["jaxpruner"])
    report = testing.check_update(jaxpruner, method="rigl", max_examples=MAX_EXAMPLES)
    assert not report.ok and report.case["weight"].size <= 256
    assert "these combinations do:" in report.explanation, report.describe()


def test_ties_are_compared_in_the_chosen_tie_break_and_explained():
    def torch_order(weight, mask, grad, *, sparsity, drop_fraction, gamma_sal, momentum):
        u = srigl_update(weight, mask, grad, sparsity=sparsity, drop_fraction=drop_fraction,
                         gamma_sal=gamma_sal, momentum=momentum, tie_break="torch_cpu")
        return {"mask": u.mask, "weight": u.weight, "momentum": u.momentum,
                "ablated": u.ablated, "fan_in": u.fan_in}
    kw = dict(ties=True, max_examples=MAX_EXAMPLES)
    assert testing.check_update(torch_order, tie_break="torch_cpu", **kw).ok
    report = testing.check_update(torch_order, tie_break="stable", **kw)
    assert not report.ok and report.case["weight"].size <= 256
    assert report.explanation.startswith("explain: reproduced exactly by "
                                          "tie_break='torch_cpu'"), report.describe()
