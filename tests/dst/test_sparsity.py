"""Layer sparsities, budget and constant fan-in (SPEC sections 2-3)."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import srigl_ref
from tests.dst import naive_sparsity as naive
from tests.strategies import weight_shapes

model_shapes = st.lists(weight_shapes(max_out=300, max_in=800), min_size=1, max_size=6)


@given(shapes=model_shapes, density=st.floats(0.01, 1.0),
       distribution=st.sampled_from(["erk", "uniform", "er"]),
       power=st.sampled_from([0.5, 1.0, 2.0]), data=st.data())
def test_layer_sparsities_equal_naive(shapes, density, distribution, power, data):
    dense = data.draw(st.sets(st.integers(0, len(shapes) - 1), max_size=len(shapes) - 1))
    try:
        want = naive.layer_sparsities(shapes, density, distribution, power, tuple(dense))
    except ZeroDivisionError:                     # every layer dense: we raise instead
        with pytest.raises(ValueError, match="every layer dense"):
            srigl_ref.layer_sparsities(shapes, density, distribution, erk_power_scale=power,
                                       dense_layers=tuple(dense))
        return
    if distribution != "uniform" and max(want) >= 1:      # no weight left for a sparse layer
        with pytest.raises(ValueError, match="too low for dense_layers"):
            srigl_ref.layer_sparsities(shapes, density, distribution, erk_power_scale=power,
                                       dense_layers=tuple(dense))
        return
    got = srigl_ref.layer_sparsities(shapes, density, distribution, erk_power_scale=power,
                                     dense_layers=tuple(dense))
    assert got == want
    assert all(got[i] == 0.0 for i in dense)


def test_dense_layers_that_take_exactly_the_whole_budget_raise():
    """The forced-dense layer holds 2 of 3 weights at density 0.5: the other layer would get
    sparsity exactly 1 (no weight at all), which is refused like a sparsity above 1."""
    with pytest.raises(ValueError, match=r"density == 0.5 is too low for dense_layers == \[0\]"):
        srigl_ref.layer_sparsities([(1, 2), (1, 1)], 0.5, "erk", erk_power_scale=0.5,
                                   dense_layers=(0,))


@pytest.mark.parametrize("density", [1.0, 0.99999])
def test_erk_refuses_a_budget_that_drops_nothing(density):
    """When a uniform layering would drop no weight, ERK makes every layer dense, which is
    refused (hypothesis found [(27, 77)]; dense training is ``--method dense``)."""
    with pytest.raises(ValueError, match=rf"density == {density}: ERK made every layer dense"):
        srigl_ref.layer_sparsities([(27, 77)], density, "erk")


@given(shapes=model_shapes, density=st.floats(0.05, 1.0))
def test_erk_meets_the_budget(shapes, density):
    """Realised weights: at most the uniform budget plus rounding, every S in [0, 1); ERK
    refuses only budgets under which a uniform layering would drop no weight at all."""
    sizes = [math.prod(x) for x in shapes]
    try:
        s = srigl_ref.layer_sparsities(shapes, density, "erk")
    except ValueError as e:
        assert "ERK made every layer dense" in str(e)
        assert sum(int(n * (1 - density)) for n in sizes) == 0
        return
    assert all(0.0 <= x < 1.0 for x in s)
    active = sum(n * (1 - x) for n, x in zip(sizes, s))
    target = sum(n - int(n * (1 - density)) for n in sizes)
    assert active == pytest.approx(target, rel=1e-9, abs=1e-6)


def test_uniform_spreads_evenly():
    assert srigl_ref.layer_sparsities([(300, 784), (100, 300), (10, 100)], 0.1,
                                      "uniform") == [0.9] * 3


@given(shape=weight_shapes(), s=st.floats(0.0, 0.999))
def test_budget_and_fan_in(shape, s):
    n = math.prod(shape)
    budget = srigl_ref.fan_in_budget(shape, s)
    assert budget == int(n * (1 - s))
    if budget // shape[0] == 0:
        with pytest.raises(ValueError, match=r"constant fan-in k == 0 for a layer of shape"):
            srigl_ref.constant_fan_in(shape, s)
    else:
        assert srigl_ref.constant_fan_in(shape, s) == budget // shape[0]


def test_fan_in_after_ablation():
    assert srigl_ref.constant_fan_in((10, 100), 0.5, n_ablated=5) == 500 // 5
    # B = int(1000 * (1 - 0.9)) = int(99.99999999999997) = 99, as in the authors' code
    assert srigl_ref.fan_in_budget((10, 100), 0.9) == 99
    assert srigl_ref.constant_fan_in((10, 100), 0.9, n_ablated=5) == 99 // 5
    with pytest.raises(ValueError, match=r"k == 1000 exceeds the dense fan-in 100"):
        srigl_ref.constant_fan_in((10, 100), 0.0, n_ablated=9)
    with pytest.raises(ValueError, match=r"n_ablated == 10, must be in \[0, 9\]"):
        srigl_ref.constant_fan_in((10, 100), 0.9, n_ablated=10)


@pytest.mark.parametrize("density, match", [
    (0.0, r"density == 0.0, must be in \(0, 1\]"),
    (1.5, r"density == 1.5, must be in \(0, 1\]"),
    (float("nan"), r"density == nan, must be in \(0, 1\]"),
    (-0.1, r"density == -0.1, must be in \(0, 1\]")])
def test_bad_density(density, match):
    with pytest.raises(ValueError, match=match):
        srigl_ref.layer_sparsities([(10, 10)], density)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"distribution == 'erdos', must be one of"):
        srigl_ref.layer_sparsities([(10, 10)], 0.5, "erdos")
    with pytest.raises(ValueError, match=r"shapes\[1\] == \(10,\), must have ndim >= 2"):
        srigl_ref.layer_sparsities([(10, 10), (10,)], 0.5)
    with pytest.raises(ValueError, match=r"shapes == \[\], must be a non-empty sequence"):
        srigl_ref.layer_sparsities([], 0.5)
    with pytest.raises(ValueError, match=r"dense_layers entry == 3, must be in \[0, 1\]"):
        srigl_ref.layer_sparsities([(10, 10), (5, 10)], 0.5, dense_layers=(3,))
    with pytest.raises(ValueError, match=r"forces every layer dense"):
        srigl_ref.layer_sparsities([(10, 10)], 0.5, dense_layers=(0,))
    with pytest.raises(ValueError, match=r"erk_power_scale == 0, must be in \(0, inf\]"):
        srigl_ref.layer_sparsities([(10, 10)], 0.5, erk_power_scale=0)
    with pytest.raises(ValueError, match=r"sparsity == 1.0, must be in \[0, 1\)"):
        srigl_ref.fan_in_budget((10, 10), 1.0)
    with pytest.raises(TypeError, match=r"sparsity == '0.5', must be a real number"):
        srigl_ref.fan_in_budget((10, 10), "0.5")
    with pytest.raises(ValueError, match=r"shape == \(0, 10\), must have ndim >= 2 and positive"):
        srigl_ref.fan_in_budget((0, 10), 0.5)


def test_erk_small_net_first_and_last_layers_go_dense():
    """SPEC section 2: ERK makes the thin first/last layers of small nets dense."""
    s = srigl_ref.layer_sparsities([(6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120),
                                    (10, 84)], 0.2)
    assert s[0] == 0.0 and s[-1] == 0.0 and all(0 < x < 1 for x in s[1:-1])
    assert np.isclose(sum((1 - x) * math.prod(sh) for x, sh in zip(
        s, [(6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)])), 0.2 * 61470,
        rtol=1e-3)
