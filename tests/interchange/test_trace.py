"""Training traces: ``write_case`` per layer and update, replayed to identical results.

The trace is built here from updates we compute (not from the trainer), with the layout
``srigl-ref train --trace DIR`` uses: ``DIR/step_{step:07d}/{layer_name}.npz``.
"""
import numpy as np
import pytest

import srigl_ref
from srigl_ref.interchange import cases, replay
from tests.interchange.conftest import make_layer

T_END, ALPHA = 1000, 0.3
LAYERS = [("fc1.weight", (12, 20), 0.8, (3, 7)), ("conv.weight", (6, 2, 3, 3), 0.7, (1,)),
          ("fc3.weight", (4, 12), 0.5, ())]


def write_trace(directory, rng, *, method="srigl", tie_break="stable", steps=(100, 200)):
    """Two updates of three layers (the last one exempt from ablation, as the classifier)."""
    state = {name: make_layer(rng, shape, s, dead_rows=dead)
             for name, shape, s, dead in LAYERS}
    written = []
    for step in steps:
        df = srigl_ref.drop_fraction(step, ALPHA, T_END)
        for i, (name, shape, s, _) in enumerate(LAYERS):
            weight, mask, grad, momentum = state[name]
            ablation = i < len(LAYERS) - 1
            if method == "srigl":
                u = srigl_ref.srigl_update(weight, mask, grad, sparsity=s, drop_fraction=df,
                                           gamma_sal=0.3, ablation=ablation,
                                           momentum=momentum, tie_break=tie_break)
            elif method == "rigl":
                u = srigl_ref.rigl_update(weight, mask, grad, drop_fraction=df,
                                          momentum=momentum, tie_break=tie_break)
            else:
                u = srigl_ref.set_update(weight, mask, drop_fraction=df, rng=rng,
                                         momentum=momentum)
                grad = None
            path = cases.trace_path(directory, step, name)
            cases.write_case(path, method=method, weight=weight, mask=mask, grad=grad,
                             momentum=momentum, sparsity=s, drop_fraction=df, step=step,
                             t_end=T_END, alpha=ALPHA, gamma_sal=0.3, ablation=ablation,
                             ablation_base="sparse", tie_break=tie_break, result=u,
                             meta={"layer_index": i, "name": name})
            written.append((path, u))
            new_grad = (rng.standard_normal(shape)).astype(np.float32)
            state[name] = (u.weight, u.mask, new_grad, u.momentum)
    return written


@pytest.mark.parametrize("method, tie_break", [("srigl", "stable"), ("srigl", "torch_cpu"),
                                               ("rigl", "stable"), ("set", "stable")])
def test_trace_round_trip_replays_identically(tmp_path, rng, method, tie_break):
    written = write_trace(tmp_path / "trace", rng, method=method, tie_break=tie_break)
    results = list(replay.replay_dir(tmp_path / "trace"))
    assert [r.case.path for r in results] == [str(p) for p, _ in written]   # step, layer
    for r, (_, u) in zip(results, written):
        assert r.mismatch is None, r.summary()
        assert r.tie_break == tie_break and r.case.method == method
        if method != "set":                                # SET regrows at random
            assert r.update.weight.tobytes() == u.weight.tobytes()
            np.testing.assert_array_equal(r.update.mask, u.mask)
            np.testing.assert_array_equal(r.update.kept, u.kept)
            np.testing.assert_array_equal(r.update.ablated, u.ablated)
        else:
            np.testing.assert_array_equal(r.update.kept, u.kept)


def test_trace_files_hold_the_schema(tmp_path, rng):
    (path, u), *_ = write_trace(tmp_path, rng, steps=(100,))
    assert path == tmp_path / "step_0000100" / "fc1.weight.npz"
    case = cases.read_case(path)
    a = case.arrays
    assert case.method == "srigl" and case.tie_break == "stable"
    assert case.meta == {"layer_index": 0, "name": "fc1.weight"}
    assert a["dynamic_ablation"] and not a["ablation_exempt"]
    assert a["use_sparse_const_fan_in_for_ablation"]
    assert int(a["step"]) == 100 and int(a["t_end"]) == T_END and a["alpha"] == ALPHA
    assert a["drop_fraction"] == srigl_ref.drop_fraction(100, ALPHA, T_END)
    assert a["ablated"].tolist() == u.ablated.tolist() == [3, 7]
    assert int(a["k_out"]) == u.fan_in and int(a["threshold"]) == u.threshold
    assert a["weight_out"].tobytes() == u.weight.tobytes()
    assert a["ties"].dtype == np.bool_ and not a["ties"]   # random floats: no tie decides


def test_ties_flag_is_set_when_tie_breaks_disagree(tmp_path):
    shape = (4, 8)
    mask = np.zeros(shape, np.bool_)
    mask[:, :4] = True
    weight = np.where(mask, 1.0, 0.0).astype(np.float32)        # every |W| tied
    grad = np.ones(shape, np.float32)                            # every |G| tied
    kw = dict(sparsity=0.5, drop_fraction=0.25, gamma_sal=0.0, tie_break="stable")
    u = srigl_ref.srigl_update(weight, mask, grad, **kw)
    alt = srigl_ref.srigl_update(weight, mask, grad, **dict(kw, tie_break="torch_cpu"))
    path = tmp_path / "tied.npz"
    cases.write_case(path, method="srigl", weight=weight, mask=mask, grad=grad, momentum=None,
                     sparsity=0.5, drop_fraction=0.25, step=1, t_end=10, alpha=0.3,
                     gamma_sal=0.0, ablation=True, ablation_base="dense", tie_break="stable",
                     result=u, meta={"layer_index": 0})
    d = np.load(path)
    assert bool(d["ties"]) == (not np.array_equal(u.mask, alt.mask))
    assert "momentum" not in d and "momentum_out" not in d
    assert replay.replay_file(path).mismatch is None


def test_first_diverging_update_is_reported_in_step_then_layer_order(tmp_path, rng):
    written = write_trace(tmp_path, rng)
    # corrupt step 100's layers 0 (fc1.weight) and 1 (conv.weight): in path order
    # conv.weight comes first, in update order fc1.weight does
    for path, _ in written[:2]:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["mask_out"] = ~arrays["mask_out"]
        np.savez(path, **arrays)
    bad = [r for r in replay.replay_dir(tmp_path) if r.mismatch]
    assert [r.case.path for r in bad] == [str(written[0][0]), str(written[1][0])]
    assert "[step 100, layer 0 (fc1.weight)]" in bad[0].summary()


def test_write_case_validates_and_does_not_mutate(tmp_path, rng):
    weight, mask, grad, momentum = make_layer(rng, (5, 8), 0.5)
    before = [a.copy() for a in (weight, mask, grad, momentum)]
    u = srigl_ref.srigl_update(weight, mask, grad, sparsity=0.5, drop_fraction=0.2,
                               momentum=momentum)
    kw = dict(method="srigl", weight=weight, mask=mask, grad=grad, momentum=momentum,
              sparsity=0.5, drop_fraction=0.2, step=3, t_end=10, alpha=0.3, gamma_sal=0.3,
              ablation=True, ablation_base="sparse", tie_break="stable", result=u,
              meta={"layer_index": 0})
    cases.write_case(tmp_path / "a" / "ok.npz", **kw)
    for a, b in zip(before, (weight, mask, grad, momentum)):
        assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match=r"method == 'dense', must be one of"):
        cases.write_case(tmp_path / "x.npz", **dict(kw, method="dense"))
    with pytest.raises(TypeError, match=r"grad must be a numpy.ndarray for method 'srigl'"):
        cases.write_case(tmp_path / "x.npz", **dict(kw, grad=None))
    with pytest.raises(TypeError, match=r"result must be a TopologyUpdate, got dict"):
        cases.write_case(tmp_path / "x.npz", **dict(kw, result={}))
    with pytest.raises(TypeError, match=r"meta must be JSON-serialisable"):
        cases.write_case(tmp_path / "x.npz", **dict(kw, meta={"a": object()}))
    with pytest.raises(ValueError, match=r"drop_fraction == 1.5, must be in \[0, 1\]"):
        cases.write_case(tmp_path / "x.npz", **dict(kw, drop_fraction=1.5))
    assert not (tmp_path / "x.npz").exists()


def test_set_case_with_seed_is_compared_exactly(tmp_path, rng):
    weight, mask, _, momentum = make_layer(rng, (6, 10), 0.6)
    u = srigl_ref.set_update(weight, mask, drop_fraction=0.3, momentum=momentum,
                             rng=np.random.default_rng(7))
    path = tmp_path / "set.npz"
    cases.write_case(path, method="set", weight=weight, mask=mask, grad=None,
                     momentum=momentum, sparsity=0.6, drop_fraction=0.3, step=1, t_end=10,
                     alpha=0.3, gamma_sal=0.3, ablation=False, ablation_base="sparse",
                     tie_break="stable", result=u, meta={"layer_index": 0})
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "kept"}
    np.savez(path, **arrays, seed=np.int64(7))
    r = replay.replay_file(path)
    assert r.mismatch is None and r.update.mask.tobytes() == u.mask.tobytes()
    np.savez(path, **dict(arrays, seed=np.int64(8)))
    assert replay.replay_file(path).mismatch.stage in ("grow", "keep")


def test_set_without_seed_checks_the_number_grown(tmp_path, rng):
    written = write_trace(tmp_path, rng, method="set", steps=(100,))
    path, u = written[0]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "kept"}
    grown = np.flatnonzero(arrays["mask_out"] & ~u.kept)
    arrays["mask_out"].flat[grown[0]] = False                  # one grown position fewer
    np.savez(path, **arrays)
    m = replay.replay_file(path).mismatch.first
    assert (m.stage, m.expected, m.got) == ("grow", f"{grown.size - 1} grown",
                                            f"{grown.size} grown")
