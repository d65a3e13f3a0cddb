"""Bad input to the topology updates and masks: ValueError/TypeError naming the argument."""
import numpy as np
import pytest

import srigl_ref


@pytest.fixture
def layer(rng):
    shape = (8, 20)
    mask = srigl_ref.random_fan_in_mask(shape, 4, rng)
    weight = (rng.standard_normal(shape) * mask).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    return weight, mask, grad


def update(weight, mask, grad, **kw):
    args = dict(sparsity=0.8, drop_fraction=0.3)
    args.update(kw)
    return srigl_ref.srigl_update(weight, mask, grad, **args)


def test_wrong_shapes(layer):
    w, m, g = layer
    with pytest.raises(ValueError, match=r"mask.shape == \(8, 19\), must be \(8, 20\)"):
        update(w, m[:, :-1], g)
    with pytest.raises(ValueError, match=r"grad.shape == \(20, 8\), must be \(8, 20\)"):
        update(w, m, np.ascontiguousarray(g.T))
    with pytest.raises(ValueError, match=r"weight.ndim == 1, must be >= 2"):
        update(w[0], m[0], g[0])
    with pytest.raises(ValueError, match=r"momentum.shape == \(8, 2\), must be \(8, 20\)"):
        update(w, m, g, momentum=w[:, :2])


def test_wrong_dtypes(layer):
    w, m, g = layer
    with pytest.raises(TypeError, match=r"mask.dtype == float32, must be bool"):
        update(w, m.astype(np.float32), g)
    with pytest.raises(TypeError, match=r"weight.dtype == int64, must be float32 or float64"):
        update(w.astype(np.int64), m, g)
    with pytest.raises(TypeError, match=r"grad must be a numpy.ndarray, got list"):
        update(w, m, g.tolist())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(layer, bad):
    w, m, g = layer
    g2 = g.copy()
    g2[3, 5] = bad
    with pytest.raises(ValueError, match=r"grad contains 1 non-finite value\(s\) \(NaN or inf\), "
                                         r"first at flat index 65"):
        update(w, m, g2)
    w2 = w.copy()
    w2[np.nonzero(m)[0][0], np.nonzero(m)[1][0]] = bad
    with pytest.raises(ValueError, match=r"weight contains 1 non-finite"):
        update(w2, m, g)


@pytest.mark.parametrize("df", [-0.1, 1.1, float("nan")])
def test_drop_fraction_outside_unit_interval(layer, df):
    with pytest.raises(ValueError, match=rf"drop_fraction == {df}, must be in \[0, 1\]"):
        update(*layer, drop_fraction=df)
    with pytest.raises(ValueError, match=r"drop_fraction == .*, must be in \[0, 1\]"):
        srigl_ref.rigl_update(*layer, drop_fraction=df)


@pytest.mark.parametrize("s", [-0.1, 1.0, 2.0])
def test_sparsity_outside_range(layer, s):
    with pytest.raises(ValueError, match=rf"sparsity == {s}, must be in \[0, 1\)"):
        update(*layer, sparsity=s)


def test_k_zero(layer):
    w, m, g = layer
    with pytest.raises(ValueError, match=r"constant fan-in k == 0 for a layer of shape \(8, 20\)"):
        update(w, m, g, sparsity=0.99)


def test_budget_cannot_fit():
    """Dense layer (S=0) with ablation forced by an absolute threshold can't fit: k > F."""
    rng = np.random.default_rng(0)
    m = np.ones((4, 3), bool)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    g = np.zeros((4, 3), np.float32)
    # all neurons equally salient (3 each), threshold 4 > 3: the keep-alive rule lowers it
    u = srigl_ref.srigl_update(w, m, g, sparsity=0.0, drop_fraction=0.0, gamma_sal=4.0)
    assert u.ablated.size == 0 and u.threshold == 3
    with pytest.raises(ValueError, match=r"k == 4 exceeds the dense fan-in 3"):
        srigl_ref.constant_fan_in((4, 3), 0.0, n_ablated=1)


def test_weight_outside_mask(layer):
    w, m, g = layer
    w2 = w.copy()
    w2[~m] = 1.0
    with pytest.raises(ValueError, match=r"weight has 128 nonzero value\(s\) outside mask"):
        update(w2, m, g)


def test_other_arguments(layer):
    with pytest.raises(ValueError, match=r"tie_break == .random., must be one of .stable., .torch_cpu."):
        update(*layer, tie_break="random")
    with pytest.raises(ValueError, match=r"gamma_sal == 2.5, must be an integer count"):
        update(*layer, gamma_sal=2.5)
    with pytest.raises(ValueError, match=r"gamma_sal == -1, must be in \[0, inf\]"):
        update(*layer, gamma_sal=-1)
    with pytest.raises(ValueError, match=r"ablation_base == 'both', must be one of"):
        update(*layer, ablation_base="both")
    with pytest.raises(TypeError, match=r"ablation == 1, must be a bool"):
        update(*layer, ablation=1)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        srigl_ref.set_update(layer[0], layer[1], drop_fraction=0.3, rng=0)


def test_mask_functions_bad_input(rng):
    with pytest.raises(ValueError, match=r"k == 21, must be in \[1, 20\]"):
        srigl_ref.random_fan_in_mask((8, 20), 21, rng)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        srigl_ref.random_fan_in_mask((8, 20), 2, 42)
    m = np.zeros((4, 6), bool)
    m[0, :2] = m[2, :2] = m[3, :3] = True
    with pytest.raises(ValueError, match=r"mask row 3 has fan-in 3, but row 0 has 2"):
        srigl_ref.check_constant_fan_in(m)
    with pytest.raises(TypeError, match=r"mask.dtype == int64, must be bool"):
        srigl_ref.fan_in(m.astype(np.int64))
    assert srigl_ref.fan_in(m).tolist() == [2, 0, 2, 3]
    assert srigl_ref.check_constant_fan_in(np.zeros((3, 3), bool)) == 0
