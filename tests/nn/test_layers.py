"""Layers: gradient checks (input and parameters), conv / max-pool against naive loops,
the adjoint identity of conv's backward, dtypes, validation messages, no mutation;
BatchNorm (training and evaluation mode, running statistics) and the residual block."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from srigl_ref.nn.layers import (BasicBlock, BatchNorm1d, BatchNorm2d, BiasFreeConv2d, Conv2d,
                                 Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU)
from tests.gradcheck import check_gradient
from tests.nn import naive_layers as naive


def _params(layer, rng, dtype=np.float64):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in layer.param_shapes().items()}


def _check_layer(layer, x, params, rng):
    """Gradient-check dx and every parameter gradient of ``sum(y * R)`` for a random R."""
    y, cache = layer.forward(x, params)
    r = rng.standard_normal(y.shape)                       # dL/dy, non-trivial

    def loss():
        return float((layer.forward(x, params)[0] * r).sum())

    dx, grads = layer.backward(r, cache)
    assert set(grads) == set(params)
    errors = {"x": check_gradient(loss, x, dx, name=f"{layer} input")}
    for key, p in params.items():
        errors[key] = check_gradient(loss, p, grads[key], name=f"{layer} {key}")
    return errors


def test_linear_gradients(rng):
    layer = Linear(5, 3)
    _check_layer(layer, rng.standard_normal((4, 5)), _params(layer, rng), rng)


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, hw", [
    (2, 3, 3, 1, 0, (5, 6)),
    (2, 3, 3, 2, 1, (7, 6)),
    (1, 2, 1, 1, 0, (3, 3)),
    (3, 2, 2, 3, 2, (5, 4)),
    (2, 2, 5, 1, 2, (4, 4)),
])
def test_conv2d_gradients(rng, c_in, c_out, k, stride, padding, hw):
    layer = Conv2d(c_in, c_out, k, stride=stride, padding=padding)
    x = rng.standard_normal((2, c_in, *hw))
    _check_layer(layer, x, _params(layer, rng), rng)


class _ForcedConv:
    """A Conv2d whose forward always takes one implementation (``direct``)."""

    def __init__(self, conv, direct):
        self.conv, self.direct = conv, direct

    def forward(self, x, params):
        return self.conv.forward(x, params, direct=self.direct)

    def backward(self, dy, cache):
        return self.conv.backward(dy, cache)

    def __repr__(self):
        return f"{self.conv} (direct={self.direct})"


@pytest.mark.parametrize("use_direct", [True, False])
@pytest.mark.parametrize("c_in, c_out, k, padding, hw", [
    (1, 6, 5, 2, (6, 7)),        # LeNet-5 conv1, small image
    (6, 5, 5, 0, (7, 6)),        # conv2-like, odd channel counts
    (3, 2, 3, 1, (4, 5)),
    (2, 3, 1, 0, (3, 3)),
    (2, 2, 4, 3, (2, 3)),        # padding >= kernel_size - 1, a kernel size of neither 3 nor 5
    (1, 1, 7, 1, (6, 8)),        # taps grouped 5 + 1 + 1
])
def test_conv2d_gradients_of_each_implementation(rng, use_direct, c_in, c_out, k, padding,
                                                 hw):
    conv = Conv2d(c_in, c_out, k, padding=padding)
    x = rng.standard_normal((2, c_in, *hw))
    _check_layer(_ForcedConv(conv, use_direct), x, _params(conv, rng), rng)


def test_relu_gradients(rng):
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5                              # keep away from the kink
    _check_layer(ReLU(), x, {}, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_at_exact_zeros(dtype):
    """The gradient is passed only where x > 0: not at 0.0, not at -0.0 (as PyTorch)."""
    x = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.0], [0.0, 5.0, -1e-30, -0.0, 0.0]], dtype)
    dy = np.arange(1, 11, dtype=dtype).reshape(x.shape)
    y, cache = ReLU().forward(x, {})
    dx, grads = ReLU().backward(dy, cache)
    assert grads == {}
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(dx, [[0, 0, 0, 4, 5], [0, 7, 0, 0, 0]])
    assert dx.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_is_dy_times_positive_bitwise(rng, dtype):
    x = rng.choice(np.array([-1.5, -0.0, 0.0, 2.0, np.nan, np.inf], dtype), size=(4, 30))
    dy = rng.choice(np.array([-3.0, -0.0, 0.5, np.nan], dtype), size=(4, 30))
    y, cache = ReLU().forward(x, {})
    dx, _ = ReLU().backward(dy, cache)
    np.testing.assert_array_equal(y.view(np.uint8), np.maximum(x, 0).view(np.uint8))
    np.testing.assert_array_equal(dx.view(np.uint8), (dy * (x > 0)).view(np.uint8))


@pytest.mark.parametrize("size, stride", [(2, None), (3, 2), (2, 1)])
def test_maxpool_gradients(rng, size, stride):
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) * 0.01   # distinct: no ties
    _check_layer(MaxPool2d(size, stride), x.astype(np.float64), {}, rng)


def test_gap_and_flatten_gradients(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    _check_layer(GlobalAvgPool(), x, {}, rng)
    _check_layer(Flatten(), x, {}, rng)


@st.composite
def conv_cases(draw):
    """(layer, x, params, rng): a small Conv2d with any stride / padding that fits, float64."""
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    low = max(1, k - 2 * padding)
    h, w = draw(st.integers(low, low + 6)), draw(st.integers(low, low + 6))
    n_batch, c_in, c_out = (draw(st.integers(1, 3)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layer = Conv2d(c_in, c_out, k, stride=stride, padding=padding)
    return layer, rng.standard_normal((n_batch, c_in, h, w)), _params(layer, rng), rng


@given(conv_cases())
def test_conv2d_forward_matches_naive(case):
    layer, x, p, _ = case
    y, _ = layer.forward(x, p)
    want = naive.conv2d(x, p["weight"], p["bias"], layer.stride, layer.padding)
    assert y.shape == want.shape == (len(x), *layer.output_shape(x.shape[1:]))
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    p32 = {key: v.astype(np.float32) for key, v in p.items()}
    y32, _ = layer.forward(x.astype(np.float32), p32)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, want, rtol=1e-4, atol=1e-4)


@given(conv_cases())
def test_conv2d_backward_is_the_adjoint(case):
    """conv is linear in x and in W: <conv(x) - b, dy> = <x, dx> = <W, dW>."""
    layer, x, p, rng = case
    y, cache = layer.forward(x, p)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache)
    inner = ((y - p["bias"][:, None, None]) * dy).sum()
    np.testing.assert_allclose((x * dx).sum(), inner, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose((p["weight"] * grads["weight"]).sum(), inner, rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(grads["bias"], dy.sum(axis=(0, 2, 3)), rtol=1e-12)


@st.composite
def stride1_conv_cases(draw):
    """(layer, x, params, dy): a stride-1 Conv2d of any kernel size, padding and channel
    counts (odd and even: the direct kernels pair channels), float32 or float64."""
    k = draw(st.integers(1, 7))
    padding = draw(st.integers(0, k))
    low = max(1, k - 2 * padding)
    h, w = draw(st.integers(low, low + 9)), draw(st.integers(low, low + 9))
    n_batch, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layer = Conv2d(c_in, c_out, k, padding=padding)
    x = rng.standard_normal((n_batch, c_in, h, w)).astype(dtype)
    dy = rng.standard_normal((n_batch, *layer.output_shape(x.shape[1:]))).astype(dtype)
    return layer, x, _params(layer, rng, dtype), dy


@given(stride1_conv_cases())
def test_conv2d_direct_equals_im2col(case):
    """Forward, input gradient, weight and bias gradients of the direct kernels equal the
    im2col + GEMM results up to float rounding, in both dtypes."""
    layer, x, p, dy = case
    y_direct, cache_direct = layer.forward(x, p, direct=True)
    y_gemm, cache_gemm = layer.forward(x, p, direct=False)
    dx_direct, g_direct = layer.backward(dy, cache_direct)
    dx_gemm, g_gemm = layer.backward(dy, cache_gemm)
    tol = 1e-12 if x.dtype == np.float64 else 2e-5
    terms = layer.in_channels * layer.kernel_size ** 2            # summands per output
    for got, want in [(y_direct, y_gemm), (dx_direct, dx_gemm),
                      (g_direct["weight"], g_gemm["weight"]), (g_direct["bias"], g_gemm["bias"])]:
        assert got.dtype == want.dtype == x.dtype and got.shape == want.shape
        scale = tol * np.sqrt(terms * x.shape[0] * x.shape[2] * x.shape[3])
        np.testing.assert_allclose(got, want, rtol=tol, atol=scale)


@given(stride1_conv_cases())
def test_conv2d_direct_forward_matches_naive(case):
    layer, x, p, _ = case
    y, _ = layer.forward(x.astype(np.float64), {k: v.astype(np.float64) for k, v in p.items()},
                         direct=True)
    want = naive.conv2d(x.astype(np.float64), p["weight"].astype(np.float64),
                        p["bias"].astype(np.float64), 1, layer.padding)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer, x_shape, direct", [
    (Linear(5, 3), (4, 5), None),
    (Conv2d(2, 3, 3, padding=1), (2, 2, 5, 4), True),
    (Conv2d(2, 3, 3, padding=1), (2, 2, 5, 4), False),
    (Conv2d(2, 3, 3, stride=2), (2, 2, 5, 4), None),
])
def test_backward_without_input_gradient(rng, layer, x_shape, direct):
    """``need_dx=False`` returns no dx and the same parameter gradients, bit for bit."""
    x = rng.standard_normal(x_shape)
    params = _params(layer, rng)
    kwargs = {} if direct is None else {"direct": direct}
    y, cache = layer.forward(x, params, **kwargs)
    dy = rng.standard_normal(y.shape)
    _, want = layer.backward(dy, cache)
    dx, grads = layer.backward(dy, cache, need_dx=False)
    assert dx is None and set(grads) == set(want)
    for key in want:
        np.testing.assert_array_equal(grads[key], want[key])


@pytest.mark.parametrize("layer, x_shape", [
    (Conv2d(2, 3, 3, padding=1), (2, 2, 5, 4)),               # direct
    (Conv2d(40, 30, 3, padding=1), (2, 40, 5, 4)),            # im2col (channel product)
    (Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 6, 5)),     # im2col (stride)
])
def test_conv2d_weight_grad_is_the_backward_s(rng, layer, x_shape):
    """``weight_grad(x, dy)`` alone equals the backward's weight gradient, bit for bit."""
    x = rng.standard_normal(x_shape)
    y, cache = layer.forward(x, _params(layer, rng))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.weight_grad(x, dy), layer.backward(dy, cache)[1]["weight"])
    with pytest.raises(ValueError, match=r"dy.shape == "):
        layer.weight_grad(x, dy[:, :, 1:])


def test_conv2d_chooses_direct_by_shape():
    assert Conv2d(1, 6, 5, padding=2).direct and Conv2d(6, 16, 5).direct
    assert not Conv2d(6, 16, 5, stride=2).direct
    assert not Conv2d(64, 64, 3, padding=1).direct


def test_conv2d_direct_needs_stride_1(rng):
    layer = Conv2d(1, 2, 3, stride=2)
    with pytest.raises(ValueError, match=r"direct == True needs stride == 1, got stride == 2"):
        layer.forward(np.zeros((1, 1, 5, 5)), _params(layer, rng), direct=True)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8),
       st.integers(0, 2**32 - 1))
def test_maxpool_forward_matches_naive(size, stride, h_extra, w_extra, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, size + h_extra - 1, size + w_extra - 1)).astype(np.float32)
    y, _ = MaxPool2d(size, stride).forward(x, {})
    np.testing.assert_array_equal(y, naive.maxpool2d(x, size, stride))


def test_maxpool_gradient_goes_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]], np.float32)
    layer = MaxPool2d(2)
    y, cache = layer.forward(x, {})
    dx, _ = layer.backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_float32_in_float32_out(rng):
    layers = [(Linear(4, 3), (2, 4)), (Conv2d(2, 3, 3, padding=1), (2, 2, 4, 4)),
              (ReLU(), (2, 3)), (MaxPool2d(2), (2, 2, 4, 4)), (GlobalAvgPool(), (2, 2, 4, 4)),
              (Flatten(), (2, 2, 3))]
    for layer, shape in layers:
        x = rng.standard_normal(shape).astype(np.float32)
        params = _params(layer, rng, np.float32)
        y, cache = layer.forward(x, params)
        dx, grads = layer.backward(np.ones_like(y), cache)
        assert y.dtype == dx.dtype == np.float32 and dx.shape == x.shape, layer
        assert all(g.dtype == np.float32 for g in grads.values()), layer
        assert all(g.shape == params[k].shape for k, g in grads.items()), layer


def test_inputs_are_not_mutated(rng):
    layer = Conv2d(2, 3, 3, stride=2, padding=1)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    params = _params(layer, rng, np.float32)
    x0, p0 = x.copy(), {k: v.copy() for k, v in params.items()}
    y, cache = layer.forward(x, params)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy0 = dy.copy()
    layer.backward(dy, cache)
    for a, b in [(x, x0), (dy, dy0)] + [(params[k], p0[k]) for k in params]:
        np.testing.assert_array_equal(a, b)


def test_forward_validation_messages(rng):
    lin = Linear(4, 3)
    p = _params(lin, rng, np.float32)
    with pytest.raises(ValueError, match=r"x.shape == \(2, 5\), must be \(batch, 4\)"):
        lin.forward(np.zeros((2, 5), np.float32), p)
    with pytest.raises(TypeError, match=r"params\['weight'\].dtype == float32, must equal "
                                        r"x.dtype == float64"):
        lin.forward(np.zeros((2, 4)), p)
    with pytest.raises(ValueError, match=r"params has keys \['weight'\], must have keys "
                                         r"\['bias', 'weight'\]"):
        lin.forward(np.zeros((2, 4), np.float32), {"weight": p["weight"]})
    with pytest.raises(ValueError, match=r"params\['weight'\].shape == \(3, 5\), must be "
                                         r"\(3, 4\)"):
        lin.forward(np.zeros((2, 4), np.float32), {**p, "weight": np.zeros((3, 5), np.float32)})
    with pytest.raises(TypeError, match=r"x.dtype == int64, must be float32 or float64"):
        lin.forward(np.zeros((2, 4), np.int64), p)
    conv = Conv2d(2, 3, 5)
    with pytest.raises(ValueError, match=r"input shape \(1, 6, 6\) does not fit Conv2d"):
        conv.forward(np.zeros((1, 1, 6, 6), np.float32), _params(conv, rng, np.float32))
    with pytest.raises(ValueError, match=r"x.ndim == 3 .*, must be 4"):
        conv.forward(np.zeros((1, 6, 6), np.float32), _params(conv, rng, np.float32))
    with pytest.raises(ValueError, match=r"input shape \(1, 1, 3\) is smaller than the window"):
        MaxPool2d(2).forward(np.zeros((1, 1, 1, 3), np.float32), {})
    with pytest.raises(ValueError, match=r"stride == 0, must be in \[1, inf\]"):
        Conv2d(1, 1, 3, stride=0)


def test_backward_validation_messages(rng):
    lin = Linear(4, 3)
    _, cache = lin.forward(np.zeros((2, 4), np.float32), _params(lin, rng, np.float32))
    with pytest.raises(ValueError, match=r"dy.shape == \(2, 4\), must be \(2, 3\)"):
        lin.backward(np.zeros((2, 4), np.float32), cache)
    with pytest.raises(TypeError, match=r"dy.dtype == float64, must equal the forward's "
                                        r"dtype float32"):
        lin.backward(np.zeros((2, 3)), cache)


# --- BatchNorm, bias-free conv, residual block ------------------------------------------

def _buffers(layer, rng, dtype=np.float64):
    """Non-trivial running statistics (variance > 0)."""
    return {k: (rng.standard_normal(s) if k.endswith("mean") else rng.uniform(0.5, 2.0, s))
            .astype(dtype) for k, s in layer.buffer_shapes().items()}


def _check_stateful(layer, x, params, buffers, rng, *, train, floor=1e-4):
    """``_check_layer`` for layers with buffers: ``sum(y * R)`` in one mode. ``floor``: see
    ``check_gradient`` (deeper compositions carry more round-off on tiny gradients)."""
    y, cache, _ = layer.forward(x, params, buffers, train=train)
    r = rng.standard_normal(y.shape)

    def loss():
        return float((layer.forward(x, params, buffers, train=train)[0] * r).sum())

    dx, grads = layer.backward(r, cache)
    assert list(grads) == list(params)
    check_gradient(loss, x, dx, name=f"{layer} input (train={train})", floor=floor)
    for key, p in params.items():
        check_gradient(loss, p, grads[key], name=f"{layer} {key} (train={train})", floor=floor)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layer, x_shape", [(BatchNorm2d(3), (4, 3, 2, 3)),
                                            (BatchNorm1d(5), (6, 5))])
def test_batchnorm_gradients(rng, layer, x_shape, train):
    x = rng.standard_normal(x_shape) * 2 + 0.5
    _check_stateful(layer, x, _params(layer, rng), _buffers(layer, rng), rng, train=train)


def test_batchnorm2d_forward_and_running_statistics(rng):
    """Against the formulas written out per channel (PyTorch's definition)."""
    layer = BatchNorm2d(3, momentum=0.2, eps=1e-3)
    x = rng.standard_normal((4, 3, 5, 2)) * 3 + 1
    params, buffers = _params(layer, rng), _buffers(layer, rng)
    x_before = x.copy()
    buffers_before = {k: v.copy() for k, v in buffers.items()}
    y, _, new = layer.forward(x, params, buffers, train=True)
    for c in range(3):
        v = x[:, c].reshape(-1)                                     # the 40 values of c
        mean, var = v.sum() / v.size, ((v - v.sum() / v.size) ** 2).sum() / v.size
        want = params["weight"][c] * (x[:, c] - mean) / math.sqrt(var + 1e-3) + params["bias"][c]
        np.testing.assert_allclose(y[:, c], want, rtol=1e-12, atol=1e-12)
        unbiased = var * v.size / (v.size - 1)
        assert new["running_mean"][c] == pytest.approx(
            0.8 * buffers["running_mean"][c] + 0.2 * mean, rel=1e-12)
        assert new["running_var"][c] == pytest.approx(
            0.8 * buffers["running_var"][c] + 0.2 * unbiased, rel=1e-12)
    np.testing.assert_array_equal(x, x_before)                      # nothing mutated
    for k in buffers:
        np.testing.assert_array_equal(buffers[k], buffers_before[k])
    y_eval, _, same = layer.forward(x, params, new, train=False)
    assert all(np.array_equal(same[k], new[k]) for k in new)       # evaluation: unchanged
    want = ((x - new["running_mean"][:, None, None]) / np.sqrt(new["running_var"] + 1e-3)
            [:, None, None] * params["weight"][:, None, None] + params["bias"][:, None, None])
    np.testing.assert_allclose(y_eval, want, rtol=1e-12, atol=1e-12)


def test_batchnorm_float32_and_validation_messages(rng):
    layer = BatchNorm1d(4)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    p32, b32 = _params(layer, rng, np.float32), _buffers(layer, rng, np.float32)
    y, _, new = layer.forward(x, p32, b32, train=True)
    assert y.dtype == np.float32 and all(v.dtype == np.float32 for v in new.values())
    with pytest.raises(ValueError, match=r"x.shape == \(1, 4\): training mode needs more "
                                         r"than one value per channel"):
        layer.forward(x[:1], p32, b32, train=True)
    layer.forward(x[:1], p32, b32, train=False)                     # evaluation: fine
    with pytest.raises(ValueError, match=r"input shape \(3,\) does not fit BatchNorm1d"):
        layer.forward(x[:, :3], p32, b32, train=True)
    with pytest.raises(ValueError, match=r"buffers has keys \['running_mean'\], must have "
                                         r"keys \['running_mean', 'running_var'\]"):
        layer.forward(x, p32, {"running_mean": b32["running_mean"]}, train=True)
    with pytest.raises(TypeError, match=r"buffers\['running_var'\].dtype == float64, must "
                                        r"equal x.dtype == float32"):
        layer.forward(x, p32, {**b32, "running_var": np.ones(4)}, train=True)
    with pytest.raises(ValueError, match=r"momentum == 1.5, must be in \[0, 1\]"):
        BatchNorm2d(4, momentum=1.5)


def test_bias_free_conv_is_conv_with_zero_bias(rng):
    layer = BiasFreeConv2d(2, 3, 3, stride=2, padding=1)
    assert layer.param_shapes() == {"weight": (3, 2, 3, 3)}
    x = rng.standard_normal((2, 2, 5, 6))
    params = _params(layer, rng)
    y, _ = layer.forward(x, params)
    want, _ = Conv2d(2, 3, 3, 2, 1).forward(x, {**params, "bias": np.zeros(3)})
    np.testing.assert_array_equal(y, want)
    _check_layer(layer, x, params, rng)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("c_in, c_out, stride", [(3, 3, 1), (2, 4, 2), (3, 2, 1)])
def test_basic_block_gradients(rng, c_in, c_out, stride, train):
    """Identity shortcut (3 -> 3, stride 1) and 1x1 projections (channels and/or stride)."""
    block = BasicBlock(c_in, c_out, stride)
    assert block.projection == (stride != 1 or c_in != c_out)
    x = rng.standard_normal((3, c_in, 5, 4))
    _check_stateful(block, x, _params(block, rng), _buffers(block, rng), rng, train=train,
                    floor=1e-3)


def test_basic_block_names_and_forward(rng):
    block = BasicBlock(2, 4, 2)
    assert list(block.param_shapes()) == [
        "conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
        "shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias"]
    assert list(block.buffer_shapes()) == [
        "bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var",
        "shortcut.1.running_mean", "shortcut.1.running_var"]
    assert block.output_shape((2, 7, 6)) == (4, 4, 3)
    identity = BasicBlock(3, 3)
    assert "shortcut.0.weight" not in identity.param_shapes()
    # the identity block is relu(main + x): written out with the sub-layers
    x = rng.standard_normal((2, 3, 4, 4))
    p, b = _params(identity, rng), _buffers(identity, rng)
    y, _, new = identity.forward(x, p, b, train=True)
    bn = BatchNorm2d(3)

    def sub(name):
        return {k.rpartition(".")[2]: v for k, v in p.items() if k.startswith(name + ".")}

    def state(name):
        return {k.rpartition(".")[2]: v for k, v in b.items() if k.startswith(name + ".")}

    conv = BiasFreeConv2d(3, 3, 3, 1, 1)
    h, _ = conv.forward(x, sub("conv1"))
    h, _, bn1 = bn.forward(h, sub("bn1"), state("bn1"), train=True)
    h, _ = conv.forward(np.maximum(h, 0), sub("conv2"))
    h, _, bn2 = bn.forward(h, sub("bn2"), state("bn2"), train=True)
    np.testing.assert_allclose(y, np.maximum(h + x, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(new["bn1.running_var"], bn1["running_var"])
    np.testing.assert_array_equal(new["bn2.running_mean"], bn2["running_mean"])
