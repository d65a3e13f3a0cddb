"""condense / CondensedLinear (SPEC section 9): naive twin, masked dense forward, golden."""
import dataclasses
import glob
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from srigl_ref.condensed import CondensedLinear, condense

from . import naive_condensed as naive
from .cases import activations, layers

GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "golden",
                                       "condensed", "case_*.npz")))


def masked_dense_forward(weight, mask, bias, x):
    """The readable reference: float64 ``x @ (W * M).T + bias`` over the active rows.

    ``x`` is rounded to float32 first, as ``CondensedLinear`` does with float64 input.
    """
    out = weight.shape[0]
    w = np.where(mask, weight, 0).reshape(out, -1).astype(np.float32).astype(np.float64)
    b = np.zeros(out) if bias is None else bias.astype(np.float32).astype(np.float64)
    x64 = x.astype(np.float32).astype(np.float64)
    active = mask.reshape(out, -1).any(axis=1)
    y = x64 @ w.T + b                                                  # [B, out] or [out]
    scale = np.abs(x64) @ np.abs(w.T) + np.abs(b)                      # error scale
    return y[..., active], scale[..., active]


@given(layers())
def test_condense_matches_naive_twin(layer):
    c = condense(**layer)
    bias = np.zeros(layer["weight"].shape[0]) if layer["bias"] is None else layer["bias"]
    values, indices, rows, b = naive.condense(layer["weight"], layer["mask"], bias)
    assert c.values.dtype == np.float32 and c.indices.dtype == np.int32
    assert c.active_rows.dtype == np.int64 and c.bias.dtype == np.float32
    assert c.values.tobytes() == values.tobytes()        # bitwise: active zeros stay +-0
    np.testing.assert_array_equal(c.indices, indices)
    np.testing.assert_array_equal(c.active_rows, rows)
    np.testing.assert_array_equal(c.bias, b)
    assert c.shape == layer["weight"].shape and c.n_active == rows.size
    assert c.k == (indices.shape[1] if rows.size else 0)
    c.check()
    dense = np.where(layer["mask"], layer["weight"], 0).astype(np.float32)
    np.testing.assert_array_equal(c.todense(), dense)


@given(st.data())
def test_forward_matches_masked_dense_float64(data):
    layer = data.draw(layers())
    c = condense(**layer)
    x = data.draw(activations(c.in_features))
    y = c(x)
    ref, scale = masked_dense_forward(layer["weight"], layer["mask"], layer["bias"], x)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= 1e-5 * scale + 1e-30)


@pytest.mark.parametrize("path", GOLDEN, ids=os.path.basename)
def test_golden_official_condensed_layer(path):
    d = np.load(path)
    c = condense(d["weight"], d["mask"], d["bias"])
    np.testing.assert_array_equal(c.values, d["values"])
    np.testing.assert_array_equal(c.indices, d["indices"])
    np.testing.assert_array_equal(c.active_rows, d["active_rows"])
    assert c.indices.dtype == d["indices"].dtype and c.active_rows.dtype == np.int64
    for take in (slice(None), 0):                                      # batched, batch 1
        y = c(d["x"][take])
        np.testing.assert_allclose(y, d["y"][take], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, d["y_ref_f64"][take], rtol=1e-5, atol=1e-6)


def test_golden_cases_present():
    assert len(GOLDEN) == 5


def test_structure_comes_from_mask_not_weight():
    weight = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]], dtype=np.float32)
    mask = np.array([[True, False, True], [False, True, True]])       # grown zeros active
    c = condense(weight, mask)
    np.testing.assert_array_equal(c.indices, [[0, 2], [1, 2]])
    np.testing.assert_array_equal(c.values, [[0.0, 0.0], [0.0, 3.0]])


def test_all_rows_ablated_gives_empty_output():
    c = condense(np.ones((3, 4), np.float32), np.zeros((3, 4), bool))
    assert (c.n_active, c.k) == (0, 0)
    assert c(np.ones(4, np.float32)).shape == (0,)
    assert c(np.ones((2, 4), np.float32)).shape == (2, 0)


def test_conv_weight_condenses_over_receptive_field(rng):
    mask = np.zeros((4, 2, 3, 3), dtype=bool)
    for i in (0, 2, 3):                                                # row 1 ablated
        mask[i].flat[rng.choice(18, size=5, replace=False)] = True
    weight = rng.standard_normal(mask.shape).astype(np.float32)
    c = condense(weight, mask)
    assert c.in_features == 18 and c.k == 5 and c.active_rows.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(c.values, weight.reshape(4, 18)[[0, 2, 3]][
        mask.reshape(4, 18)[[0, 2, 3]]].reshape(3, 5))
    np.testing.assert_array_equal(c.todense(), np.where(mask, weight, 0))


def test_wide_layer_uses_uint32_index(rng):
    n_in = 70_000
    mask = np.zeros((3, n_in), dtype=bool)
    mask[:, [5, 65_536, 69_999]] = True
    weight = rng.standard_normal((3, n_in)).astype(np.float32)
    c = condense(weight, mask)
    assert "index_dtype=uint32" in repr(c)
    x = rng.standard_normal((2, n_in)).astype(np.float32)
    ref = x[:, [5, 65_536, 69_999]].astype(np.float64) @ weight[:, [5, 65_536, 69_999]].T
    np.testing.assert_allclose(c(x), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c(x[1]), ref[1], rtol=1e-5, atol=1e-6)


def test_repr_is_one_line():
    mask = np.eye(3, 700, dtype=bool)
    assert repr(condense(np.ones((3, 700), np.float32), mask)) == (
        "CondensedLinear(shape=(3, 700), k=1, n_active=3, index_dtype=uint16)")


def test_inputs_not_mutated_and_layer_frozen(rng):
    weight = rng.standard_normal((4, 6)).astype(np.float32)
    mask = np.zeros((4, 6), dtype=bool)
    mask[:, :2] = True
    bias = rng.standard_normal(4).astype(np.float32)
    x = np.asfortranarray(rng.standard_normal((3, 6)).astype(np.float32))
    copies = [a.copy() for a in (weight, mask, bias, x)]
    c = condense(weight, mask, bias)
    c(x)
    for a, b in zip((weight, mask, bias, x), copies):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.values = c.values
    with pytest.raises(ValueError, match="read-only"):
        c.values[0, 0] = 1.0
    weight[:] = 0                                                      # no aliasing
    assert c.values.any()


def test_read_only_input_gives_the_same_output(rng):
    """A read-only ``x`` is a different Numba type; both kernels must accept it."""
    mask = np.zeros((20, 9), dtype=bool)
    mask[:, 2:6] = True
    c = condense(rng.standard_normal((20, 9)).astype(np.float32), mask)
    for x in (rng.standard_normal(9).astype(np.float32),
              rng.standard_normal((3, 9)).astype(np.float32)):
        frozen = x.copy()
        frozen.flags.writeable = False
        assert c(frozen).tobytes() == c(x).tobytes()


def test_float64_weight_rounds_to_float32_values():
    weight = np.array([[1 / 3, 2.0]])
    c = condense(weight, np.array([[True, False]]))
    assert c.values.dtype == np.float32 and c.values[0, 0] == np.float32(1 / 3)


# ---- errors name the argument, its value and the expectation ----------------------------

def test_non_constant_fan_in_names_first_bad_row():
    mask = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=bool)
    with pytest.raises(ValueError, match=r"mask row 2 has fan-in 3, but row 0 has 2"):
        condense(np.ones((4, 3), np.float32), mask)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(weight=np.ones((2, 3), np.int64)), TypeError, r"weight.dtype == int64"),
    (dict(weight=np.ones(3, np.float32)), ValueError, r"weight.shape == \(3,\)"),
    (dict(mask=np.ones((2, 4), bool)), ValueError, r"mask.shape == \(2, 4\), must be \(2, 3\)"),
    (dict(mask=np.ones((2, 3), np.int8)), TypeError, r"mask.dtype == int8, must be bool"),
    (dict(bias=np.ones(3, np.float32)), ValueError, r"bias.shape == \(3,\), must be \(2,\)"),
    (dict(bias=np.array([0, np.inf], np.float32)), ValueError, r"bias contains 1 non-finite"),
])
def test_condense_rejects_bad_arguments(kwargs, error, match):
    args = dict(weight=np.ones((2, 3), np.float32), mask=np.ones((2, 3), bool), bias=None)
    with pytest.raises(error, match=match):
        condense(**{**args, **kwargs})


def test_condense_rejects_non_finite_active_weight_only():
    weight = np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float32)
    condense(weight, np.array([[True, False], [False, True]]))          # inactive: ignored
    with pytest.raises(ValueError, match=r"weight\[1, 0\] == inf .* must be finite"):
        condense(weight, np.array([[True, False], [True, False]]))


def hand_built(**changes):
    args = dict(values=np.ones((2, 2), np.float32), indices=np.array([[0, 3], [1, 2]]),
                active_rows=np.array([0, 2]), bias=np.zeros(2, np.float32), shape=(3, 4))
    return CondensedLinear(**{**args, **changes})


@pytest.mark.parametrize("changes, error, match", [
    (dict(indices=np.array([[0, 4], [1, 2]])), ValueError,
     r"indices contains 4 at \(0, 1\), must be in \[0, 4\) \(in_features == 4\)"),
    (dict(indices=np.array([[0, 1], [-1, 2]])), ValueError, r"indices contains -1 at \(1, 0\)"),
    (dict(active_rows=np.array([0, 3])), ValueError, r"active_rows contains 3 at \(1,\)"),
    (dict(values=np.ones((2, 2))), TypeError, r"values.dtype == float64, must be float32"),
    (dict(indices=np.ones((2, 2), np.float32)), TypeError, r"indices.dtype == float32"),
    (dict(indices=np.zeros((2, 3), int)), ValueError,
     r"indices.shape == \(2, 3\), must be \(2, 2\)"),
    (dict(bias=np.zeros(3, np.float32)), ValueError, r"bias.shape == \(3,\), must be \(2,\)"),
    (dict(values=np.ones((2, 0), np.float32), indices=np.ones((2, 0), int)), ValueError,
     r"values.shape == \(2, 0\): active rows need k >= 1"),
    (dict(shape=(1, 4)), ValueError, r"n_active must be <= out == 1"),
    (dict(shape=(3,)), ValueError, r"shape == \(3,\), must have ndim >= 2"),
    (dict(values=[[1.0]]), TypeError, r"values must be a numpy.ndarray"),
])
def test_hand_built_layer_cheap_checks(changes, error, match):
    with pytest.raises(error, match=match):
        hand_built(**changes)


@pytest.mark.parametrize("changes, match", [
    (dict(indices=np.array([[3, 0], [1, 2]])), r"indices row 0 == \[3, 0\], must be strictly"),
    (dict(indices=np.array([[0, 3], [2, 2]])), r"indices row 1 == \[2, 2\], must be strictly"),
    (dict(active_rows=np.array([2, 0])), r"active_rows == \[2, 0\], must be strictly"),
    (dict(values=np.array([[1, np.nan], [1, 1]], np.float32)), r"values contains nan at \(0, 1\)"),
])
def test_check_finds_what_construction_does_not(changes, match):
    c = hand_built(**changes)
    with pytest.raises(ValueError, match=match):
        c.check()


@pytest.mark.parametrize("x, error, match", [
    (np.ones((3, 5), np.float32), ValueError, r"x.shape == \(3, 5\), must be \(B, 4\) or \(4,\)"),
    (np.ones((1, 3, 4), np.float32), ValueError, r"x.shape == \(1, 3, 4\)"),
    (np.ones((0, 4), np.float32), ValueError, r"x.shape == \(0, 4\), the batch must not be empty"),
    (np.ones(4, np.int32), TypeError, r"x.dtype == int32, must be float32 or float64"),
    ([1.0, 2.0, 3.0, 4.0], TypeError, r"x must be a numpy.ndarray, got list"),
])
def test_call_rejects_bad_x(x, error, match):
    with pytest.raises(error, match=match):
        hand_built()(x)
