"""The condensed training engine: kernels == naive twins, float64 gradient checks
of the linear and conv layers, conv layer == masked Conv2d, equivalence with the masked
engine (MLP and CNN), SPEC section 10 after every step, dense gradients only where needed,
resume, configuration errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import srigl_ref
from srigl_ref import checkpoint, cli
from srigl_ref.condensed import _kernels as K
from srigl_ref.nn import SGD, build_model
from srigl_ref.train import TrainConfig, Trainer
from srigl_ref.nn.layers import Conv2d
from srigl_ref.train.condensed_engine import (CondensedEngine, CondensedTrainConv2d,
                                              CondensedTrainLinear, condensed_names)

from ..gradcheck import check_gradient
from ..nn.naive_layers import conv2d as naive_conv
from .test_trainer import TINY, CheckedTrainer, strip_seconds

# 50 steps of batch 32 on 1024 synthetic examples; delta 5: nine updates in 50 steps
EQUIV = dict(dataset="synthetic", n_train=1024, batch_size=32, epochs=2, delta=5, lr=0.05)
# density 0.02, uniform, gamma_sal 0.5: hidden neurons get ablated (test_trainer's setting)
ABLATING = dict(EQUIV, density=0.02, distribution="uniform", gamma_sal=0.5)
# the cnn at density 0.05 (ERK: every layer sparse), an update every 2 steps; gamma_sal 0.5
# ablates channels of conv3 and neurons of fc1
CNN = dict(dataset="synthetic", model="cnn", n_train=128, batch_size=32, epochs=2, delta=2,
           density=0.05, gamma_sal=0.5)
CNN_LAYERS = ["conv1.weight", "conv2.weight", "conv3.weight", "conv4.weight", "fc1.weight",
              "fc2.weight"]


def naive_forward(xT, values, indices, rows, bias):
    """Slow twin of ``matmat_rows``: scatter to dense ``W`` and multiply (float64)."""
    weight = np.zeros((bias.size, xT.shape[0]))
    weight[rows[:, None], indices] = values
    return weight @ xT + bias[:, None]


def naive_backward(dyT, xT, values, indices, rows):
    """Slow twin of ``backward_rows``: ``(dxT, dvalues)`` through the dense ``W`` (float64)."""
    weight = np.zeros((dyT.shape[0], xT.shape[0]))
    weight[rows[:, None], indices] = values
    return weight.T @ dyT, (dyT @ xT.T)[rows[:, None], indices]


@st.composite
def layers(draw, max_out=9, max_in=40):
    """``(mask, xT, values, bias, dyT)`` with some neurons ablated, float32 or float64."""
    n_out, n_in = draw(st.integers(1, max_out)), draw(st.integers(1, max_in))
    k = draw(st.integers(1, n_in))
    batch = draw(st.sampled_from([1, 2, 5, 33]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = np.zeros((n_out, n_in), bool)
    for i in range(n_out):
        mask[i, rng.choice(n_in, k, replace=False)] = True
    ablated = rng.random(n_out) < 0.3
    ablated[rng.integers(n_out)] = False                  # at least one active row
    mask[ablated] = False
    values = rng.standard_normal((int((~ablated).sum()), k)).astype(dtype)
    return (mask, rng.standard_normal((n_in, batch)).astype(dtype), values,
            rng.standard_normal(n_out).astype(dtype),
            rng.standard_normal((n_out, batch)).astype(dtype))


@given(layers())
def test_kernels_match_naive_twins(case):
    mask, xT, values, bias, dyT = case
    layer = CondensedTrainLinear(mask)
    tol = 1e-4 if values.dtype == np.float32 else 1e-12
    yT = np.empty_like(dyT)
    K.matmat_rows(xT, values, layer._index, layer.rows, bias, yT)
    ref = naive_forward(xT, values, layer.indices, layer.rows, bias)
    np.testing.assert_allclose(yT, ref, rtol=tol, atol=tol)
    for need_dx in (True, False):
        dxT, dvalues = np.zeros_like(xT), np.empty_like(values)
        K.backward_rows(dyT, xT, values, layer._index, layer.rows, dxT, dvalues, need_dx)
        ref_dx, ref_dv = naive_backward(dyT, xT, values, layer.indices, layer.rows)
        np.testing.assert_allclose(dvalues, ref_dv, rtol=tol, atol=tol)
        np.testing.assert_allclose(dxT, ref_dx if need_dx else 0, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [1, 6])
def test_layer_gradcheck_float64(rng, batch):
    """Layer-level forward/backward with bias and an ablated neuron (row 2): dx, dvalues,
    dbias by central differences of ``sum(y * R)``; the dense dW is dY^T X everywhere."""
    n_out, n_in, k = 5, 9, 3
    mask = np.zeros((n_out, n_in), bool)
    for i in (0, 1, 3, 4):
        mask[i, rng.choice(n_in, k, replace=False)] = True
    layer = CondensedTrainLinear(mask)
    assert layer.rows.tolist() == [0, 1, 3, 4]
    x = rng.standard_normal((batch, n_in))
    values = rng.standard_normal((4, k))
    bias = rng.standard_normal(n_out)
    weights = rng.standard_normal((batch, n_out))         # R: loss = sum(y * R)

    def loss():
        return float((layer.forward(x, values, bias)[0] * weights).sum())

    y, cache = layer.forward(x, values, bias)
    np.testing.assert_allclose(y[:, 2], np.broadcast_to(bias[2], batch))   # ablated: bias
    dx, grads, dweight = layer.backward(weights, cache, values, dense=True)
    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, values, grads["values"], name="values")
    check_gradient(loss, bias, grads["bias"], name="bias")
    np.testing.assert_allclose(dweight, weights.T @ x, rtol=1e-12)
    np.testing.assert_allclose(layer.gather(dweight), grads["values"], rtol=1e-12)
    assert layer.backward(weights, cache, values, need_dx=False)[0] is None
    np.testing.assert_array_equal(layer.scatter(values) != 0, mask)


@pytest.mark.parametrize("change, error, match", [
    (dict(mask=np.ones((2, 3), np.float32)), TypeError, r"mask.dtype == float32, must be bool"),
    (dict(mask=np.eye(3, dtype=bool)[:, :, None]), ValueError, r"mask.shape == \(3, 3, 1\)"),
    (dict(mask=np.array([[1, 1, 0], [1, 0, 0]], bool)), ValueError, r"row 1"),
    (dict(mask=np.zeros((2, 3), bool)), ValueError, r"has no active row"),
    (dict(x=np.ones((2, 4), np.float32)), ValueError, r"x.shape == \(2, 4\), must be \(B, 3\)"),
    (dict(x=np.ones((2, 3), np.int64)), TypeError, r"x.dtype == int64"),
    (dict(values=np.ones((2, 1), np.float64)), ValueError,
     r"values is float64 \(2, 1\), must be a C-contiguous float32 array of shape \(2, 2\)"),
    (dict(bias=np.ones(3, np.float32)), ValueError, r"bias is float32 \(3,\)"),
])
def test_layer_rejects_bad_arguments(change, error, match):
    args = dict(mask=np.array([[1, 1, 0], [0, 1, 1]], bool), x=np.ones((2, 3), np.float32),
                values=np.ones((2, 2), np.float32), bias=np.ones(2, np.float32))
    args.update(change)
    with pytest.raises(error, match=match):
        CondensedTrainLinear(args["mask"]).forward(args["x"], args["values"], args["bias"])


def naive_conv_backward(x, weight, dy, stride, padding):
    """Slow twin of ``conv_backward_rows``: ``(dx, dW)`` of ``naive_conv``, one output
    position at a time (float64)."""
    k = weight.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dweight = np.zeros_like(xp), np.zeros_like(weight)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            win = (slice(None), slice(None), slice(i * stride, i * stride + k),
                   slice(j * stride, j * stride + k))
            dweight += np.einsum("bo,bcpq->ocpq", dy[:, :, i, j], xp[win])
            dxp[win] += np.einsum("bo,ocpq->bcpq", dy[:, :, i, j], weight)
    height, width = x.shape[2:]
    return dxp[:, :, padding:padding + height, padding:padding + width], dweight


def random_conv_mask(rng, shape, k, ablated=()):
    """A constant fan-in mask of ``shape`` (C_out, C_in, kh, kw): ``k`` random taps per
    output channel, none for the channels ``ablated``."""
    flat = np.zeros((shape[0], int(np.prod(shape[1:]))), bool)
    for o in range(shape[0]):
        if o not in ablated:
            flat[o, rng.choice(flat.shape[1], k, replace=False)] = True
    return flat.reshape(shape)


@st.composite
def conv_layers(draw):
    """``(layer, x, values, bias, dy, weight)``: a condensed convolution (stride 1-3,
    padding 0-2, kernel 1-3, some output channels ablated, fan-in 1 to C*k*k), its input,
    parameters, an output gradient and the dense weight, float32 or float64."""
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kernel, stride, padding = draw(st.integers(1, 3)), draw(st.integers(1, 3)), \
        draw(st.integers(0, 2))
    height = draw(st.integers(max(1, kernel - 2 * padding), 9))
    width = draw(st.integers(max(1, kernel - 2 * padding), 9))
    k = draw(st.integers(1, n_in * kernel * kernel))
    batch = draw(st.sampled_from([1, 2, 3]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ablated = {o for o in range(1, n_out) if rng.random() < 0.3}       # channel 0 active
    layer = CondensedTrainConv2d(random_conv_mask(rng, (n_out, n_in, kernel, kernel), k,
                                                  ablated), stride=stride, padding=padding)
    x = rng.standard_normal((batch, n_in, height, width)).astype(dtype)
    values = rng.standard_normal((layer.n_active, k)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    dy = rng.standard_normal((batch, *layer.conv.output_shape(x.shape[1:]))).astype(dtype)
    return layer, x, values, bias, dy, layer.scatter(values)


@given(conv_layers())
def test_conv_kernels_match_naive_twins_and_masked_conv2d(case):
    """Forward, dx, dvalues, dbias and the dense dW equal the naive twins (float64) and the
    masked ``Conv2d`` (im2col; also the direct kernels at stride 1) to rounding."""
    layer, x, values, bias, dy, weight = case
    tol = 1e-4 if x.dtype == np.float32 else 1e-12
    y, cache = layer.forward(x, values, bias)
    x64, w64, dy64 = x.astype(float), weight.astype(float), dy.astype(float)
    assert y.dtype == x.dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, naive_conv(x64, w64, bias.astype(float), layer.conv.stride,
                                             layer.conv.padding), rtol=tol, atol=tol)
    ref_dx, ref_dw = naive_conv_backward(x64, w64, dy64, layer.conv.stride, layer.conv.padding)
    dx, grads, dweight = layer.backward(dy, cache, values, dense=True)
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["values"], layer.gather(ref_dw), rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["bias"], dy64.sum(axis=(0, 2, 3)), rtol=tol, atol=tol)
    np.testing.assert_allclose(dweight, ref_dw, rtol=tol, atol=tol)
    assert layer.backward(dy, cache, values, need_dx=False)[0] is None
    for direct in [False] + [True] * (layer.conv.stride == 1):
        m_y, m_cache = layer.conv.forward(x, {"weight": weight, "bias": bias}, direct=direct)
        m_dx, m_grads = layer.conv.backward(dy, m_cache)
        np.testing.assert_allclose(y, m_y, rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, m_dx, rtol=tol, atol=tol)
        np.testing.assert_allclose(grads["values"], layer.gather(m_grads["weight"]),
                                   rtol=tol, atol=tol)
        np.testing.assert_allclose(dweight, m_grads["weight"], rtol=tol, atol=tol)


@pytest.mark.parametrize("k", [1, 18])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
def test_conv_fan_in_extremes_match_masked_conv2d(rng, k, stride, padding):
    """k = 1 and k = C*kh*kw (every tap), an ablated channel, cnn-like sizes, float32."""
    layer = CondensedTrainConv2d(random_conv_mask(rng, (6, 2, 3, 3), k, ablated={2}),
                                 stride=stride, padding=padding)
    x = rng.standard_normal((4, 2, 12, 11)).astype(np.float32)
    values = rng.standard_normal((5, k)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    y, cache = layer.forward(x, values, bias)
    np.testing.assert_array_equal(y[:, 2], np.broadcast_to(bias[2], y[:, 2].shape))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads, dweight = layer.backward(dy, cache, values, dense=True)
    m_y, m_cache = layer.conv.forward(x, {"weight": layer.scatter(values), "bias": bias})
    m_dx, m_grads = layer.conv.backward(dy, m_cache)
    for got, want in [(y, m_y), (dx, m_dx), (grads["values"], layer.gather(m_grads["weight"])),
                      (grads["bias"], m_grads["bias"]), (dweight, m_grads["weight"])]:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (3, 0)])
def test_conv_layer_gradcheck_float64(rng, stride, padding):
    """dx, dvalues, dbias of the conv layer by central differences of ``sum(y * R)``, with
    an ablated output channel (1)."""
    layer = CondensedTrainConv2d(random_conv_mask(rng, (3, 2, 3, 3), 5, ablated={1}),
                                 stride=stride, padding=padding)
    assert layer.rows.tolist() == [0, 2]
    x = rng.standard_normal((2, 2, 7, 6))
    values = rng.standard_normal((2, 5))
    bias = rng.standard_normal(3)
    y, cache = layer.forward(x, values, bias)
    weights = rng.standard_normal(y.shape)                 # R: loss = sum(y * R)

    def loss():
        return float((layer.forward(x, values, bias)[0] * weights).sum())

    dx, grads, _ = layer.backward(weights, cache, values)
    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, values, grads["values"], name="values")
    check_gradient(loss, bias, grads["bias"], name="bias")
    np.testing.assert_array_equal(layer.scatter(values) != 0, layer.scatter(
        np.ones(values.shape, bool)))


@pytest.mark.parametrize("change, error, match", [
    (dict(mask=np.ones((2, 1, 2, 2), np.int8)), TypeError, r"mask.dtype == int8, must be bool"),
    (dict(mask=np.ones((2, 4), bool)), ValueError,
     r"mask.shape == \(2, 4\), must be \(C_out, C_in, kh, kw\)"),
    (dict(mask=np.ones((2, 1, 2, 1), bool)), ValueError, r"kernel must be square"),
    (dict(mask=np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool).reshape(2, 1, 2, 2)), ValueError,
     r"row 1 has fan-in 1"),
    (dict(mask=np.zeros((2, 1, 2, 2), bool)), ValueError, r"has no active row"),
    (dict(stride=0), ValueError, r"stride"),
    (dict(x=np.ones((3, 2, 5, 5), np.float32)), ValueError,
     r"x.shape == \(3, 2, 5, 5\), must be \(B, 1, H, W\) with B >= 1"),
    (dict(x=np.ones((3, 1, 5), np.float32)), ValueError, r"x.shape == \(3, 1, 5\)"),
    (dict(x=np.ones((3, 1, 1, 5), np.float32)), ValueError, r"does not fit Conv2d"),
    (dict(x=np.ones((3, 1, 5, 5), np.int32)), TypeError, r"x.dtype == int32"),
    (dict(values=np.ones((2, 2), np.float64)), ValueError,
     r"values is float64 \(2, 2\), must be a C-contiguous float32 array of shape \(2, 2\)"),
    (dict(values=np.ones((2, 3), np.float32)), ValueError, r"values is float32 \(2, 3\)"),
    (dict(bias=np.ones(3, np.float32)), ValueError, r"bias is float32 \(3,\)"),
    (dict(dy=np.ones((3, 2, 4, 3), np.float32)), ValueError,
     r"dy is float32 \(3, 2, 4, 3\), must be float32 \(3, 2, 4, 4\)"),
    (dict(dy=np.ones((3, 2, 4, 4))), ValueError, r"dy is float64 \(3, 2, 4, 4\), must be float32"),
    (dict(dy=np.ones((3, 1, 4, 4), np.float32)), ValueError, r"dy.shape == \(3, 1, 4, 4\)"),
])
def test_conv_layer_rejects_bad_arguments(change, error, match):
    args = dict(mask=np.array([[1, 1, 0, 0], [0, 1, 1, 0]], bool).reshape(2, 1, 2, 2),
                stride=1, x=np.ones((3, 1, 5, 5), np.float32),
                values=np.ones((2, 2), np.float32), bias=np.ones(2, np.float32), dy=None)
    args.update(change)
    with pytest.raises(error, match=match):
        layer = CondensedTrainConv2d(args["mask"], stride=args["stride"])
        _, cache = layer.forward(args["x"], args["values"], args["bias"])
        layer.backward(args["dy"], cache, args["values"])


def test_engine_rejects_bad_names(rng):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng)
    opt = SGD(model.params, 0.1)
    masks = {n: np.ones(model.params[n].shape, bool) for n in model.sparse_names}
    with pytest.raises(ValueError, match=r"names contains 'conv1.bias', must hold Linear or "
                                         r"Conv2d weights of the model \(one of \['conv1."):
        CondensedEngine(model, opt, masks, ["conv1.bias"])
    with pytest.raises(ValueError, match=r"masks has no entry for 'fc1.weight'"):
        CondensedEngine(model, opt, {}, ["fc1.weight"])
    with pytest.raises(TypeError, match=r"optimizer must be the srigl_ref.nn.SGD"):
        CondensedEngine(model, SGD(model.copy().params, 0.1), masks, ["fc1.weight"])
    assert condensed_names(model, [0.5, 0.0, 0.9, 0.0, 0.9]) == ["conv1.weight", "fc1.weight",
                                                               "fc3.weight"]


def assert_close(actual, desired, what, rtol=1e-4, atol=1e-5):
    """``assert_allclose``'s test; its report (costly on large arrays) only on failure."""
    if not (np.abs(actual - desired) <= atol + rtol * np.abs(desired)).all():
        np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def _batches(t, n_steps):
    order = np.random.default_rng(1).permutation(len(t.data.y_train))
    bs = t.config.batch_size
    for s in range(n_steps):
        idx = order[(s * bs) % len(order):][:bs]
        yield np.ascontiguousarray(t.data.x_train[idx]), t.data.y_train[idx]


@pytest.mark.parametrize("cfg, n_steps, layers, ablates", [
    (EQUIV, 50, ["fc1.weight", "fc2.weight"], False),          # erk keeps fc3 dense
    (ABLATING, 50, ["fc1.weight", "fc2.weight", "fc3.weight"], True),
    (CNN, 8, CNN_LAYERS, True),
], ids=["erk", "ablating", "cnn"])
def test_condensed_equals_masked_step_by_step(tmp_path, cfg, n_steps, layers, ablates):
    """Same seed, same batches: loss, gradients and weights agree to float32 rounding at
    every step; masks are identical after every topology update (continuous data, no
    ties)."""
    masked = Trainer(TrainConfig(**cfg), tmp_path / "m", progress=None)
    cond = Trainer(TrainConfig(engine="condensed", **cfg), tmp_path / "c", progress=None)
    assert list(cond.engine.layers) == layers
    ablated = 0
    for step, (x, y) in enumerate(_batches(masked, n_steps), start=1):
        logits, cache = masked.model.forward(x)
        dlogits = srigl_ref.nn.softmax_cross_entropy(logits, y)[1]
        grads = masked.model.backward(dlogits, cache)
        c_logits, c_cache = cond.engine.forward(x)
        assert_close(c_logits, logits, "logits")
        c_grads, dense = cond.engine.backward(dlogits, c_cache, dense=True)
        for name, g in grads.items():
            layer = cond.engine.layers.get(name)
            assert_close(c_grads[name], g if layer is None else layer.gather(g), name)
            if layer is not None:
                assert_close(dense[name], g, name)
        loss_m, _ = masked.train_step(x, y)
        loss_c, _ = cond.train_step(x, y)
        assert loss_c == pytest.approx(loss_m, rel=1e-5, abs=1e-6)
        cond.sync_dense()
        for name, w in masked.model.params.items():
            assert_close(cond.model.params[name], w, f"{name} at step {step}")
            assert_close(cond.optimizer.momentum_buffers[name],
                         masked.optimizer.momentum_buffers[name], f"momentum of {name}")
        for name, m in masked.state.masks.items():
            assert np.array_equal(cond.state.masks[name], m), (name, step)
        ablated = max(ablated, sum(int((~m.reshape(len(m), -1).any(axis=1)).sum())
                                   for m in cond.state.masks.values()))
    assert masked.state.step == cond.state.step == n_steps
    assert (ablated > 0) == ablates


def test_cnn_training_curve_matches_masked(tmp_path):
    """The cnn, whole runs through the CLI (2 epochs, 4 topology updates, ablated
    channels): every epoch's metrics equal the masked engine's to float32 rounding, the
    final masks are identical."""
    runs = {}
    for engine in ("masked", "condensed"):
        args = ["train", "--engine", engine, "--out", str(tmp_path / engine)]
        for key, value in CNN.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        assert cli.main(args) == 0
        runs[engine] = (strip_seconds(checkpoint.read_metrics(tmp_path / engine /
                                                              "metrics.jsonl")),
                        checkpoint.load_checkpoint(tmp_path / engine / "model.npz"))
    (m_records, m_ckpt), (c_records, c_ckpt) = runs["masked"], runs["condensed"]
    assert [r["kind"] for r in c_records] == [r["kind"] for r in m_records]
    assert sum(r["kind"] == "epoch" for r in c_records) == 2
    for m_rec, c_rec in zip(m_records, c_records):
        for key, value in m_rec.items():
            if isinstance(value, float):
                assert c_rec[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            else:
                assert c_rec[key] == value, key
    for name, m in m_ckpt.masks.items():
        np.testing.assert_array_equal(c_ckpt.masks[name], m)
        assert_close(c_ckpt.params[name], m_ckpt.params[name], name)
    assert any(d["n_ablated"] for r in c_records if r["kind"] == "epoch"
               for d in r["layers"])


def test_full_run_accuracy_matches_masked(tmp_path):
    """A whole short run (synthetic data, 2 epochs): final test accuracy within 0.5 pp."""
    cfg = dict(dataset="synthetic", epochs=2, delta=20)
    masked = Trainer(TrainConfig(**cfg), tmp_path / "m", progress=None).run()
    cond = Trainer(TrainConfig(engine="condensed", **cfg), tmp_path / "c", progress=None).run()
    assert cond["test_accuracy"] >= 0.95
    assert abs(cond["test_accuracy"] - masked["test_accuracy"]) <= 0.005
    assert [d["fan_in"] for d in cond["layers"]] == [d["fan_in"] for d in masked["layers"]]


class CheckedCondensedTrainer(CheckedTrainer):
    """CheckedTrainer on the dense view, plus the condensed state against the masks."""

    def check_invariants(self):
        self.sync_dense()
        super().check_invariants()
        for name, layer in self.engine.layers.items():
            m = self.state.masks[name]
            active = m.reshape(len(m), -1).any(axis=1)
            assert layer.rows.tolist() == np.flatnonzero(active).tolist()
            assert np.array_equal(layer.scatter(np.ones(layer.indices.shape, bool)), m)
            assert self.engine.params[name].shape == (layer.n_active, layer.k)
            assert self.engine.momentum_buffers[name].shape == (layer.n_active, layer.k)


@pytest.mark.parametrize("cfg", [TINY, dict(ABLATING, epochs=1)], ids=["tiny", "ablating"])
def test_invariants_every_step_condensed(tmp_path, cfg):
    t = CheckedCondensedTrainer(TrainConfig(engine="condensed", **cfg), tmp_path,
                                progress=None)
    dense_steps = []
    backward = t.engine.backward
    t.engine.backward = lambda d, c, dense: (dense_steps.append(dense), backward(d, c,
                                                                              dense=dense))[1]
    t.run()
    want = t.schedule.steps.tolist()
    assert t.update_steps_seen == want
    assert [s for s, d in enumerate(dense_steps, start=1) if d] == want   # n_acc == 1


def test_lenet5_trains_sparse_convs_condensed(tmp_path):
    """lenet5: every weight with sparsity > 0 (convs and Linear) trains condensed, the
    dense ones (ERK's choice) masked; SPEC section 10 after every step."""
    cfg = TrainConfig(engine="condensed", model="lenet5", method="srigl", dataset="synthetic",
                      n_train=128, batch_size=32, epochs=1, delta=2, density=0.3)
    t = CheckedCondensedTrainer(cfg, tmp_path, progress=None)
    sparse = [n for n, s in zip(t.model.sparse_names, t.sparsities) if s > 0]
    assert list(t.engine.layers) == sparse and "conv2.weight" in sparse
    assert isinstance(t.engine.layers["conv2.weight"], CondensedTrainConv2d)
    t.run()
    assert t.update_steps_seen == [2]


def _run_record(out):
    """What a run leaves behind: checkpoint meta, every array's bytes, metrics (no times)."""
    ckpt = checkpoint.load_checkpoint(out / "model.npz")
    arrays = {(group, name): a.tobytes()
              for group in ("params", "masks", "momentum", "ever_active", "dense_grad")
              for name, a in getattr(ckpt, group).items()}
    return ckpt.meta, arrays, strip_seconds(checkpoint.read_metrics(out / "metrics.jsonl"))


@pytest.mark.parametrize("base", [TINY, dict(CNN, n_train=64)], ids=["mlp", "cnn"])
def test_resume_condensed_equals_uninterrupted(tmp_path, base):
    """Stop after 2 of 4 epochs (dense view saved), resume (condensed state rebuilt from
    it): bit-identical to the uninterrupted run."""
    cfg = TrainConfig(engine="condensed", grad_accumulation_n=3,
                      **dict(base, epochs=4, delta=4))
    Trainer(cfg, tmp_path / "full", progress=None).run()
    for kw in (dict(stop_after_epochs=2), dict(resume=True)):
        Trainer(cfg, tmp_path / "part", progress=None).run(**kw)
    assert _run_record(tmp_path / "part") == _run_record(tmp_path / "full")


@pytest.mark.parametrize("kw, error, match", [
    (dict(engine="sparse"), ValueError, r"engine == 'sparse', must be one of 'masked'"),
    (dict(engine="condensed", method="rigl"), ValueError,
     r"engine == 'condensed' needs method == 'srigl' \(constant fan-in\), got method == 'rigl'"),
    (dict(hidden=(64,), model="cnn"), ValueError, r"hidden == \(64,\) applies to model 'mlp'"),
    (dict(hidden=(64, 0)), ValueError, r"hidden\[1\] == 0"),
])
def test_config_rejects_bad_engine_and_hidden(kw, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kw)


def test_cli_engine_and_hidden(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "synthetic", "--n-train", "128", "--epochs", "1",
                     "--delta", "2", "--batch-size", "32", "--engine", "condensed",
                     "--hidden", "64", "32", "--out", str(out)]) == 0
    summary = checkpoint.read_summary(out / "summary.json")
    assert summary["config"]["engine"] == "condensed"
    assert [d["shape"] for d in summary["layers"]] == [[64, 784], [32, 64], [10, 32]]
    assert TrainConfig.from_dict(checkpoint.load_checkpoint(out / "model.npz").config) \
        .hidden == (64, 32)
    capsys.readouterr()


def test_engine_forward_rejects_bad_input(tmp_path):
    t = Trainer(TrainConfig(engine="condensed", **TINY), tmp_path, progress=None)
    with pytest.raises(ValueError, match=r"x.ndim == 2 .*, must be 4"):
        t.engine.forward(np.zeros((2, 784), np.float32))
    with pytest.raises(ValueError, match=r"x.shape == \(2, 1, 28, 27\), must be \(batch, 1, 28"):
        t.engine.forward(np.zeros((2, 1, 28, 27), np.float32))
    with pytest.raises(TypeError, match=r"x.dtype == float64, must be the model's dtype"):
        t.engine.forward(np.zeros((2, 1, 28, 28)))
