"""The condensed training engine: kernels == naive twins, float64 gradient checks
of the layer, equivalence with the masked engine, SPEC section 10 after every step, dense
gradients only where needed, resume, configuration errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import srigl_ref
from srigl_ref import checkpoint, cli
from srigl_ref.condensed import _kernels as K
from srigl_ref.nn import SGD, build_model
from srigl_ref.train import TrainConfig, Trainer
from srigl_ref.train.condensed_engine import (CondensedEngine, CondensedTrainLinear,
                                              condensed_names)

from ..gradcheck import check_gradient
from .test_trainer import TINY, CheckedTrainer, strip_seconds

# 50 steps of batch 32 on 1024 synthetic examples; delta 5: nine updates in 50 steps
EQUIV = dict(dataset="synthetic", n_train=1024, batch_size=32, epochs=2, delta=5, lr=0.05)
# density 0.02, uniform, gamma_sal 0.5: hidden neurons get ablated (test_trainer's setting)
ABLATING = dict(EQUIV, density=0.02, distribution="uniform", gamma_sal=0.5)


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


def test_engine_rejects_bad_names(rng):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng)
    opt = SGD(model.params, 0.1)
    masks = {n: np.ones(model.params[n].shape, bool) for n in model.sparse_names}
    with pytest.raises(ValueError, match=r"names contains 'conv1.weight', must hold Linear"):
        CondensedEngine(model, opt, masks, ["conv1.weight"])
    with pytest.raises(ValueError, match=r"masks has no entry for 'fc1.weight'"):
        CondensedEngine(model, opt, {}, ["fc1.weight"])
    with pytest.raises(TypeError, match=r"optimizer must be the srigl_ref.nn.SGD"):
        CondensedEngine(model, SGD(model.copy().params, 0.1), masks, ["fc1.weight"])
    assert condensed_names(model, [0.5, 0.5, 0.9, 0.0, 0.9]) == ["fc1.weight", "fc3.weight"]


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


@pytest.mark.parametrize("cfg", [EQUIV, ABLATING], ids=["erk", "ablating"])
def test_condensed_equals_masked_first_50_steps(tmp_path, cfg):
    """Same seed, same batches: loss, gradients and weights agree to float32 rounding at
    every step; masks are identical after every topology update (continuous data, no
    ties)."""
    masked = Trainer(TrainConfig(**cfg), tmp_path / "m", progress=None)
    cond = Trainer(TrainConfig(engine="condensed", **cfg), tmp_path / "c", progress=None)
    assert list(cond.engine.layers) == ["fc1.weight", "fc2.weight"] + (
        ["fc3.weight"] if cfg is ABLATING else [])          # erk keeps fc3 dense
    ablated = 0
    for step, (x, y) in enumerate(_batches(masked, 50), start=1):
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
        ablated = max(ablated, sum(int((~m.any(axis=1)).sum())
                                   for m in cond.state.masks.values()))
    assert masked.state.step == cond.state.step == 50
    assert (ablated > 0) == (cfg is ABLATING)


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
            assert layer.rows.tolist() == np.flatnonzero(m.any(axis=1)).tolist()
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


def test_lenet5_convs_stay_masked(tmp_path):
    """lenet5: the sparse Linear weights train condensed, the convs masked-dense."""
    cfg = TrainConfig(engine="condensed", model="lenet5", method="srigl", dataset="synthetic",
                      n_train=128, batch_size=32, epochs=1, delta=2, density=0.3)
    t = CheckedCondensedTrainer(cfg, tmp_path, progress=None)
    assert set(t.engine.layers) <= {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert t.engine.layers
    t.run()
    assert t.update_steps_seen == [2]


def _run_record(out):
    """What a run leaves behind: checkpoint meta, every array's bytes, metrics (no times)."""
    ckpt = checkpoint.load_checkpoint(out / "model.npz")
    arrays = {(group, name): a.tobytes()
              for group in ("params", "masks", "momentum", "ever_active", "dense_grad")
              for name, a in getattr(ckpt, group).items()}
    return ckpt.meta, arrays, strip_seconds(checkpoint.read_metrics(out / "metrics.jsonl"))


def test_resume_condensed_equals_uninterrupted(tmp_path):
    """Stop after 2 of 4 epochs (dense view saved), resume (condensed state rebuilt from
    it): bit-identical to the uninterrupted run."""
    cfg = TrainConfig(engine="condensed", grad_accumulation_n=3,
                      **dict(TINY, epochs=4, delta=4))
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
