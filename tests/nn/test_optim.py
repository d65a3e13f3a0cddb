"""SGD (SPEC section 5 masked semantics) and learning-rate schedules."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from srigl_ref.nn.optim import SGD, CosineLR, StepLR


@pytest.mark.parametrize("nesterov", [False, True])
def test_masked_weights_stay_exactly_zero(rng, nesterov):
    mask = rng.random((6, 5)) < 0.4
    params = {"w": rng.standard_normal((6, 5)).astype(np.float32) * mask,
              "b": rng.standard_normal(6).astype(np.float32)}
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    for _ in range(200):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        opt.step(grads, {"w": mask})
        assert not params["w"][~mask].any()
        assert not opt.momentum_buffers["w"][~mask].any()
    assert params["w"][mask].all()                        # the active ones did move
    assert params["b"].all()


def _two_steps(nesterov):
    params = {"w": np.array([1.0, 2.0])}
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    mask = {"w": np.array([True, False])}
    opt.step({"w": np.array([0.5, 7.0])}, mask)
    w1 = params["w"].copy()
    opt.step({"w": np.array([-0.25, 7.0])}, mask)
    return w1, params["w"], opt.momentum_buffers["w"]


def test_momentum_two_steps_by_hand():
    # step 1: g = 0.5 + 0.01*1 = 0.51; buf = 0.51; w = 1 - 0.1*0.51 = 0.949
    # step 2: g = -0.25 + 0.01*0.949 = -0.24051; buf = 0.9*0.51 - 0.24051 = 0.21849
    #         w = 0.949 - 0.1*0.21849 = 0.927151
    w1, w2, buf = _two_steps(nesterov=False)
    np.testing.assert_allclose(w1, [0.949, 0.0], rtol=1e-14)
    np.testing.assert_allclose(w2, [0.927151, 0.0], rtol=1e-14)
    np.testing.assert_allclose(buf, [0.21849, 0.0], rtol=1e-14)


def test_nesterov_two_steps_by_hand():
    # step 1: g = 0.51; buf = 0.51; g' = 0.51 + 0.9*0.51 = 0.969; w = 1 - 0.0969 = 0.9031
    # step 2: g = -0.25 + 0.01*0.9031 = -0.240969; buf = 0.459 - 0.240969 = 0.218031
    #         g' = -0.240969 + 0.9*0.218031 = -0.0447411; w = 0.9031 + 0.00447411 = 0.90757411
    w1, w2, buf = _two_steps(nesterov=True)
    np.testing.assert_allclose(w1, [0.9031, 0.0], rtol=1e-14)
    np.testing.assert_allclose(w2, [0.90757411, 0.0], rtol=1e-14)
    np.testing.assert_allclose(buf, [0.218031, 0.0], rtol=1e-14)


def test_plain_sgd_without_momentum():
    params = {"w": np.array([1.0, -1.0], np.float32)}
    SGD(params, lr=0.5, momentum=0.0).step({"w": np.array([0.2, 0.4], np.float32)})
    np.testing.assert_array_equal(params["w"], np.array([0.9, -1.2], np.float32))


def test_step_lr_argument_overrides_default():
    params = {"w": np.array([1.0])}
    opt = SGD(params, lr=1.0, momentum=0.0)
    opt.step({"w": np.array([1.0])}, lr=0.25)
    np.testing.assert_array_equal(params["w"], [0.75])


def test_grads_and_masks_are_not_mutated(rng):
    params = {"w": rng.standard_normal((3, 4))}
    grads = {"w": rng.standard_normal((3, 4))}
    mask = rng.random((3, 4)) < 0.5
    g0, m0 = grads["w"].copy(), mask.copy()
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    opt.step(grads, {"w": mask})
    opt.step(grads, {"w": mask})
    np.testing.assert_array_equal(grads["w"], g0)
    np.testing.assert_array_equal(mask, m0)


def test_replaced_entries_are_used(rng):
    """A topology update replaces params[name] and momentum_buffers[name] between steps."""
    params = {"w": np.ones((2, 2))}
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step({"w": np.ones((2, 2))})
    params["w"] = np.full((2, 2), 5.0)
    opt.momentum_buffers["w"] = np.zeros((2, 2))
    opt.step({"w": np.ones((2, 2))})
    np.testing.assert_allclose(params["w"], 5.0 - 0.1)


def test_state_dict_round_trip(rng):
    def run(opt, params, n):
        for i in range(n):
            opt.step({"w": np.full(3, float(i + 1))}, lr=0.1 / (i + 1))
        return params["w"].copy()

    p_a = {"w": np.arange(3.0)}
    opt_a = SGD(p_a, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    run(opt_a, p_a, 3)
    state = opt_a.state_dict()
    p_b = {"w": p_a["w"].copy()}
    opt_b = SGD(p_b, lr=1.0, momentum=0.5)
    opt_b.load_state_dict(state)
    state["momentum_buffers"]["w"][:] = 99.0           # the loaded state is a copy
    np.testing.assert_array_equal(run(opt_a, p_a, 2), run(opt_b, p_b, 2))


def test_validation_messages():
    params = {"w": np.zeros((2, 3), np.float32)}
    with pytest.raises(ValueError, match=r"nesterov == True needs momentum > 0"):
        SGD(params, lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=r"lr == -1, must be in \(0, inf\]"):
        SGD(params, lr=-1)
    with pytest.raises(ValueError, match=r"momentum == 1.0, must be in \[0, 1\)"):
        SGD(params, lr=0.1, momentum=1.0)
    opt = SGD(params, lr=0.1)
    with pytest.raises(ValueError, match=r"grads must have the keys of params \['w'\]"):
        opt.step({"v": np.zeros((2, 3), np.float32)})
    with pytest.raises(TypeError, match=r"grads\['w'\].dtype == float64, must be float32"):
        opt.step({"w": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"grads\['w'\].shape == \(3, 2\), must be \(2, 3\)"):
        opt.step({"w": np.zeros((3, 2), np.float32)})
    with pytest.raises(ValueError, match=r"masks\['w'\].shape == \(2, 2\), must be \(2, 3\)"):
        opt.step({"w": np.zeros((2, 3), np.float32)}, {"w": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match=r"masks has names \['x'\] that are not parameters"):
        opt.step({"w": np.zeros((2, 3), np.float32)}, {"x": np.ones((2, 3), bool)})
    with pytest.raises(TypeError, match=r"masks\['w'\].dtype == float32, must be bool"):
        opt.step({"w": np.zeros((2, 3), np.float32)}, {"w": np.ones((2, 3), np.float32)})


def test_cosine_schedule_with_warmup():
    sched = CosineLR(base_lr=0.1, total_steps=110, warmup_steps=10, min_lr=0.001)
    assert sched(0) == pytest.approx(0.01)
    assert sched(9) == pytest.approx(0.1)
    assert sched(10) == pytest.approx(0.1)
    assert sched(60) == pytest.approx(0.001 + 0.099 * 0.5)
    assert sched(110) == pytest.approx(0.001)
    assert sched(500) == pytest.approx(0.001)
    lrs = [sched(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert CosineLR(0.2, 4)(1) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))


def test_step_schedule_with_warmup():
    sched = StepLR(base_lr=0.1, milestones=(20, 30), gamma=0.5, warmup_steps=4)
    assert [sched(s) for s in (0, 1, 3)] == pytest.approx([0.025, 0.05, 0.1])
    assert [sched(s) for s in (4, 19, 20, 29, 30, 99)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_schedule_validation_messages():
    with pytest.raises(ValueError, match=r"milestones == \(30, 20\), must be strictly "
                                         r"increasing"):
        StepLR(0.1, (30, 20))
    with pytest.raises(ValueError, match=r"warmup_steps == 10, must be in \[0, 9\]"):
        CosineLR(0.1, 10, warmup_steps=10)
    with pytest.raises(ValueError, match=r"step == -1, must be in \[0, inf\]"):
        CosineLR(0.1, 10)(-1)


@st.composite
def sgd_cases(draw):
    """Parameters (one sparse weight with its mask, one dense bias), hyper-parameters and a
    few gradient steps; values include zeros, negative zeros and repeated entries."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 40)))
    mask = rng.random(shape) < draw(st.floats(0.0, 1.0))
    pool = np.array([0.0, -0.0, 1.5, -2.25, 1e-3], dtype)

    def values(s):
        v = rng.standard_normal(s).astype(dtype)
        pick = rng.random(s) < 0.2
        v[pick] = rng.choice(pool, size=int(pick.sum()))
        return v

    params = {"w": values(shape) * mask, "b": values(shape[:1])}
    grads = [{k: values(v.shape) for k, v in params.items()} for _ in range(3)]
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    hyper = dict(lr=draw(st.sampled_from([0.1, 0.01, 0.3])), momentum=momentum,
                 nesterov=momentum > 0 and draw(st.booleans()),
                 weight_decay=draw(st.sampled_from([0.0, 5e-4, 1e-4])))
    return params, {"w": mask}, grads, hyper


@given(sgd_cases())
def test_fused_step_is_bit_identical_to_the_numpy_sequence(case):
    params, masks, grads, hyper = case
    fused = SGD({k: v.copy() for k, v in params.items()}, **hyper)
    twin = SGD({k: v.copy() for k, v in params.items()}, **hyper)
    twin._update = twin._update_numpy
    for g in grads:
        fused.step(g, masks)
        twin.step(g, masks)
        for name in params:
            for got, want in [(fused.params[name], twin.params[name]),
                              (fused.momentum_buffers[name], twin.momentum_buffers[name])]:
                assert got.dtype == want.dtype
                # bitwise, so -0.0 against 0.0 would fail
                np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_non_contiguous_parameter_is_updated_in_place(rng):
    base = rng.standard_normal((4, 6))
    params = {"w": base.T}                                    # F-contiguous view
    mask = rng.random((6, 4)) < 0.5
    grad = rng.standard_normal((6, 4))
    want = {"w": base.T.copy()}
    SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3).step({"w": grad}, {"w": mask})
    twin = SGD(want, lr=0.1, momentum=0.9, weight_decay=1e-3)
    twin.step({"w": grad}, {"w": mask})
    assert np.shares_memory(params["w"], base)
    np.testing.assert_array_equal(params["w"], want["w"])


def test_non_finite_gradients_reach_the_weights():
    params = {"w": np.ones(3, np.float32)}
    SGD(params, lr=0.1, momentum=0.0).step({"w": np.array([np.nan, np.inf, 0], np.float32)})
    assert np.isnan(params["w"][0]) and params["w"][1] == -np.inf and params["w"][2] == 1
