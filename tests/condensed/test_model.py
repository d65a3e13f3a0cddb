"""Whole-model condensation (SPEC section 9): condensed logits == masked dense logits, ablated
neurons removed and their constant folded, save/load, corrupt files, the ``condense`` CLI."""
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srigl_ref import checkpoint, cli
from srigl_ref.condensed import (CondensedModel, condense_model, from_checkpoint,
                                 load_condensed, matmul, model_from_checkpoint)
from srigl_ref.condensed.model import _MlpPlan
from srigl_ref.nn.models import Model, build_model, sparse_init
from srigl_ref.train import TrainConfig, Trainer

from . import naive_condensed as naive

SMALL = {  # name -> (input_shape, builder kwargs): small enough for hypothesis
    "mlp": ((1, 6, 6), dict(hidden=(20, 12))),
    "lenet5": ((1, 28, 28), {}),
    "cnn": ((1, 12, 12), dict(channels=(5, 6), hidden=9)),
}


def masked_model(name, seed, *, sparsity=0.7, ablate=0.3, dense_last=True, ablate_last=0):
    """A random masked model: constant fan-in masks, random nonzero biases, a random subset
    (fraction ``ablate``) of every hidden layer's neurons ablated, biases of some ablated
    neurons positive (so relu(bias) > 0 must be folded into the next layer)."""
    rng = np.random.default_rng(seed)
    input_shape, kw = SMALL[name]
    model = build_model(name, input_shape, 4, rng=rng, **kw)
    n = len(model.sparse_names)
    sparsities = [sparsity] * (n - 1) + [0.0 if dense_last else sparsity]
    masks = sparse_init(model, sparsities, rng)
    for i, wname in enumerate(model.sparse_names):
        out = model.params[wname].shape[0]
        bname = wname.replace("weight", "bias")
        model.params[bname] = rng.uniform(-1, 1, out).astype(np.float32)
        n_abl = round(ablate * out) if i < n - 1 else ablate_last
        if n_abl:
            rows = rng.choice(out, size=min(n_abl, out - 1), replace=False)
            mask = masks[wname].copy()
            mask[rows] = False
            masks[wname] = mask
            model.params[wname] = np.where(mask, model.params[wname], 0).astype(np.float32)
    return model, masks, rng


def float64_logits(model, x):
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    m64 = Model(model.name, model.input_shape, model.layers, params64)
    return m64.forward(x.astype(np.float64), train=False)[0]


def assert_same_predictions(model, cmodel, x):
    """Logits within 1e-4 relative of the float64 masked dense model; argmax equal to the
    float32 masked dense forward."""
    got = cmodel(x)
    ref64 = float64_logits(model, x)
    ref32 = model.forward(x, train=False)[0]
    assert got.dtype == np.float32 and got.shape == ref32.shape
    scale = np.abs(ref64).max()
    assert np.abs(got - ref64).max() <= 1e-4 * scale
    np.testing.assert_array_equal(got.argmax(axis=1), ref32.argmax(axis=1))


def inputs(model, rng, n=16):
    return rng.standard_normal((n, *model.input_shape)).astype(np.float32)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), ablate=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9]))
def test_mlp_matches_masked_dense(seed, ablate, sparsity):
    model, masks, rng = masked_model("mlp", seed, sparsity=sparsity, ablate=ablate)
    assert_same_predictions(model, condense_model(model, masks), inputs(model, rng))


@pytest.mark.parametrize("conv", ["condensed", "dense"])
@pytest.mark.parametrize("name", ["lenet5", "cnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_conv_models_match_masked_dense(name, seed, conv):
    model, masks, rng = masked_model(name, seed, sparsity=0.6, ablate=0.34)
    cmodel = condense_model(model, masks, conv=conv)
    x = inputs(model, rng, 8)
    assert_same_predictions(model, cmodel, x)
    np.testing.assert_allclose(cmodel(x[0]), cmodel(x[:1])[0], rtol=1e-6, atol=1e-6)


def test_ablated_rows_removed_and_shapes_shrink():
    model, masks, rng = masked_model("mlp", 3, ablate=0.25)
    cmodel = condense_model(model, masks)
    fc1, fc2, fc3 = cmodel.report
    ablated1 = int((~masks["fc1.weight"].any(axis=1)).sum())
    ablated2 = int((~masks["fc2.weight"].any(axis=1)).sum())
    assert (fc1.n_ablated, fc1.n_active) == (ablated1, 20 - ablated1) and ablated1 == 5
    assert (fc2.n_ablated, fc2.n_inputs_dropped) == (ablated2, ablated1)
    assert fc3.n_inputs_dropped == ablated2 and fc3.format == "dense"
    ops = [op for op in cmodel.ops if hasattr(op, "active_rows")]
    assert ops[0].layer.values.shape[0] == 20 - ablated1
    assert ops[1].layer.shape == (12, 20 - ablated1)                # input columns dropped
    assert ops[1].layer.values.shape[0] == 12 - ablated2
    assert ops[2].weight.shape == (4, 12 - ablated2)
    assert fc1.bytes_condensed < fc1.bytes_dense


def test_constant_of_ablated_relu_neuron_is_folded():
    """fc1 neuron 0 ablated with bias 2: relu(2) = 2 feeds fc2 through weight 3 -> +6."""
    rng = np.random.default_rng(0)
    model = build_model("mlp", (1, 2, 2), 3, rng=rng, hidden=(3, 2))
    m1 = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0]], bool)     # k = 2, row 0 ablated
    m2 = np.array([[1, 1, 0], [1, 0, 1]], bool)                         # both read neuron 0
    p = model.params
    p["fc1.weight"] = np.where(m1, p["fc1.weight"], 0).astype(np.float32)
    p["fc1.bias"] = np.array([2.0, 0.1, -0.1], np.float32)
    p["fc2.weight"] = np.where(m2, 3.0, 0).astype(np.float32)
    p["fc2.bias"] = np.zeros(2, np.float32)
    cmodel = condense_model(model, {"fc1.weight": m1, "fc2.weight": m2})
    fc2 = cmodel.ops[2].layer
    assert fc2.shape == (2, 2) and fc2.n_active == 2
    np.testing.assert_array_equal(fc2.bias, [6.0, 6.0])                # 3 * relu(2)
    assert cmodel.report[1].k == 2 and cmodel.report[1].k_eff == 1     # one input left
    x = rng.standard_normal((5, 1, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(cmodel(x), model.forward(x, train=False)[0], rtol=1e-6)
    # a negative bias folds nothing (relu(-2) = 0) and still matches
    p["fc1.bias"] = np.array([-2.0, 0.1, -0.1], np.float32)
    cmodel = condense_model(model, {"fc1.weight": m1, "fc2.weight": m2})
    np.testing.assert_array_equal(cmodel.ops[2].layer.bias, [0.0, 0.0])
    np.testing.assert_allclose(cmodel(x), model.forward(x, train=False)[0], rtol=1e-6)


def test_padded_conv_gets_bias_map_and_ablated_logits_are_scattered():
    """cnn: an ablated conv channel feeding a padded 3x3 conv folds into a per-position bias
    map (border taps see padding); ablated rows of the last layer come back as constants."""
    model, masks, rng = masked_model("cnn", 5, sparsity=0.5, ablate=0.4, dense_last=False,
                                     ablate_last=1)
    cmodel = condense_model(model, masks)
    conv2 = next(op for op in cmodel.ops if getattr(op, "name", "") == "conv2.weight")
    assert conv2.bias_map is not None and conv2.layer.shape[1] < 5
    assert cmodel.out_index is not None and cmodel.out_index.size == 3
    assert_same_predictions(model, cmodel, inputs(model, rng, 8))


def test_save_load_round_trip(tmp_path):
    model, masks, rng = masked_model("cnn", 7, sparsity=0.5, ablate=0.4, dense_last=False,
                                     ablate_last=1)
    cmodel = condense_model(model, masks)
    path = tmp_path / "condensed.npz"
    checkpoint.atomic_write(path, cmodel.write)
    loaded = load_condensed(path)
    x = inputs(model, rng, 4)
    assert loaded(x).tobytes() == cmodel(x).tobytes()
    assert loaded.report == cmodel.report and loaded.input_shape == cmodel.input_shape
    with np.load(path, allow_pickle=False) as z:                       # plain arrays only
        assert json.loads(z["meta"].item())["format_version"] == 1


def corrupt(tmp_path, edit):
    model, masks, _ = masked_model("mlp", 1)
    arrays = condense_model(model, masks).to_arrays()
    edit(arrays)
    path = tmp_path / "condensed.npz"
    np.savez(path, **arrays)
    return path


def set_meta(key, value):
    def edit(arrays):
        meta = json.loads(arrays["meta"].item())
        meta[key] = value
        arrays["meta"] = np.array(json.dumps(meta))
    return edit


@pytest.mark.parametrize("edit, match", [
    (lambda a: a.pop("meta"), r"condensed\.npz: no 'meta' entry"),
    (lambda a: a.update(meta=np.array("{not json")), r"condensed\.npz: 'meta' is not valid JSON"),
    (set_meta("format_version", 9), r"condensed\.npz: format_version == 9, must be 1"),
    (lambda a: a.pop("1/values"), r"condensed\.npz: missing entry or meta key '1/values'"),
    (lambda a: a.update({"1/indices": np.where(np.arange(a["1/indices"].size).reshape(
        a["1/indices"].shape) == 0, 999, a["1/indices"])}),
     r"condensed\.npz: op 1 \(fc1\.weight\): indices contains 999 .* must be in \[0, 36\)"),
    (lambda a: a.update({"2/values": a["2/values"][:, :-1]}),
     r"condensed\.npz: op 2 \(fc2\.weight\): indices\.shape == .* must be"),
    (lambda a: a.update({"3/weight": a["3/weight"][:, 1:]}),
     r"condensed\.npz: op 'fc3\.weight' expects input of shape"),
    (lambda a: a.update({"3/bias": np.full(4, np.nan, np.float32)}),
     r"condensed\.npz: entry '3/bias' has non-finite values"),
])
def test_corrupt_file_raises_value_error(tmp_path, edit, match):
    with pytest.raises(ValueError, match=match):
        load_condensed(corrupt(tmp_path, edit))


def test_conv_geometry_must_fit_weight(tmp_path):
    model, masks, _ = masked_model("lenet5", 0)
    arrays = condense_model(model, masks).to_arrays()
    meta = json.loads(arrays["meta"].item())
    meta["ops"][0]["kernel_size"] = 7                                 # weight taps are 5x5
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "condensed.npz", **arrays)
    with pytest.raises(ValueError, match=r"op 'conv1\.weight': weight taps \(5, 5\), "
                       r"kernel_size 7"):
        load_condensed(tmp_path / "condensed.npz")


def test_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match=r"nothing\.npz: no such condensed model file"):
        load_condensed(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz condensed model file"):
        load_condensed(tmp_path / "junk.npz")


def test_bad_arguments():
    model, masks, _ = masked_model("mlp", 2, ablate=0.0)
    with pytest.raises(ValueError, match=r"conv == 'sparse', must be one of"):
        condense_model(model, masks, conv="sparse")
    with pytest.raises(TypeError, match=r"model must be a srigl_ref\.nn\.models\.Model"):
        condense_model("mlp", masks)
    with pytest.raises(ValueError, match=r"masks has name\(s\) \['fc9\.weight'\]"):
        condense_model(model, dict(masks, **{"fc9.weight": masks["fc1.weight"]}))
    broken = masks["fc1.weight"].copy()
    broken[0, np.flatnonzero(~broken[0])[0]] = True                     # row 0 has k + 1
    with pytest.raises(ValueError, match=r"row 0"):
        condense_model(model, dict(masks, **{"fc1.weight": broken}))
    outside = masks["fc1.weight"].copy()
    outside[0, np.flatnonzero(outside[0])[0]] = False
    outside[0, np.flatnonzero(~masks["fc1.weight"][0])[0]] = True       # same k, other place
    with pytest.raises(ValueError, match=r"fc1\.weight'\] is nonzero outside masks"):
        condense_model(model, dict(masks, **{"fc1.weight": outside}))
    cmodel = condense_model(model, masks)
    with pytest.raises(ValueError, match=r"x\.shape == \(2, 36\), must be \(B, 1, 6, 6\)"):
        cmodel(np.zeros((2, 36), np.float32))
    with pytest.raises(TypeError, match=r"x\.dtype == int64, must be float32 or float64"):
        cmodel(np.zeros((2, 1, 6, 6), np.int64))


TINY = dict(dataset="synthetic", n_train=256, batch_size=32, epochs=2, delta=4, lr=0.05)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Trainer(TrainConfig(**TINY), out, progress=None).run()
    return out


def test_from_checkpoint_matches_trained_model(tiny_run):
    ckpt = checkpoint.load_checkpoint(tiny_run / "model.npz")
    cmodel = from_checkpoint(ckpt, (1, 28, 28))
    assert isinstance(cmodel, CondensedModel) and cmodel.name == "mlp"
    assert [r.name for r in cmodel.report] == ["fc1.weight", "fc2.weight", "fc3.weight"]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_from_checkpoint_reads_widths_off_the_weights(name):
    model, masks, rng = masked_model(name, 4)                         # non-default widths
    ckpt = SimpleNamespace(params=model.state_dict(), masks=masks, config={"model": name})
    cmodel = from_checkpoint(ckpt, model.input_shape)
    x = inputs(model, rng, 4)
    np.testing.assert_allclose(cmodel(x), model.forward(x, train=False)[0], rtol=1e-5,
                               atol=1e-5)
    bad = SimpleNamespace(params=dict(model.state_dict(), **{"fc1.bias": np.zeros(3)}),
                          masks=masks, config={"model": name})
    with pytest.raises(ValueError, match=r"fc1\.bias"):
        from_checkpoint(bad, model.input_shape)


def test_cli_condense_tiny_run(tiny_run, capsys):
    code = cli.main(["condense", str(tiny_run), "--n-check", "300"])
    out = capsys.readouterr().out
    assert code == 0, out
    for text in ("fc1.weight", "condensed", "300 agree, 0 differ", "accuracy dense "):
        assert text in out
    assert (tiny_run / "condensed.npz").is_file()
    load_condensed(tiny_run / "condensed.npz")
    assert cli.main(["condense", str(tiny_run / "model.npz"), "--n-check", "10"]) == 0


def test_cli_condense_disagreement_exits_1(tiny_run, capsys, monkeypatch):
    real_call = CondensedModel.__call__
    monkeypatch.setattr(CondensedModel, "__call__", lambda self, x: -real_call(self, x))
    assert cli.main(["condense", str(tiny_run), "--n-check", "50"]) == 1
    assert "0 agree, 50 differ" in capsys.readouterr().out


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing", r"missing does not exist \(expected a run folder"),
    (lambda p: p, r"has no model\.npz \(expected a run folder holding model\.npz"),
])
def test_cli_condense_bad_dir_exits_2(tmp_path, capsys, make, match):
    assert cli.main(["condense", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srigl-ref: error:") and len(err.splitlines()) == 1
    assert re.search(match, err)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), ablate=st.sampled_from([0.2, 0.5]))
def test_cnn_matches_masked_dense_hypothesis(seed, ablate):
    model, masks, rng = masked_model("cnn", seed, sparsity=0.5, ablate=ablate)
    assert_same_predictions(model, condense_model(model, masks), inputs(model, rng, 4))


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), ablate=st.sampled_from([0.0, 0.3]),
       dense_last=st.booleans())
def test_whole_mlp_batch1_kernel_matches_naive(seed, ablate, dense_last):
    """``_kernels.mlp_matvec_lanes`` (the batch-1 path of an all-linear model) against
    ``naive_condensed.forward`` layer by layer in float64, and against the per-layer path."""
    model, masks, rng = masked_model("mlp", seed, ablate=ablate, dense_last=dense_last)
    cmodel = condense_model(model, masks)
    assert cmodel._mlp is not None
    x = inputs(model, rng, 2)
    h = x[0].reshape(-1).astype(np.float64)
    for op in cmodel.ops[1:]:
        if op.dense:
            h = op.weight.astype(np.float64) @ h + op.bias
        else:
            h = naive.forward(h, op.layer.values, op.layer.indices, op.layer.bias)
        h = np.maximum(h, 0) if op.relu else h
    got = cmodel(x[0])                                                # fused kernel
    assert got.dtype == np.float32 and got.shape == (4,)
    np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-5 * np.abs(h).max())
    np.testing.assert_allclose(got, cmodel(x)[0], rtol=1e-5, atol=1e-6)   # batched path


def test_from_checkpoint_uses_the_stored_architecture(tmp_path):
    """The trainer stores the builder's arguments; nothing is guessed from weight shapes."""
    cfg = TrainConfig(**dict(TINY, epochs=1, hidden=(24, 12)))
    t = Trainer(cfg, tmp_path, progress=None)
    t.run()
    ckpt = checkpoint.load_checkpoint(tmp_path / "model.npz")
    assert ckpt.meta["architecture"] == {"name": "mlp", "input_shape": [1, 28, 28],
                                         "n_classes": 10, "kwargs": {"hidden": [24, 12]}}
    model = model_from_checkpoint(ckpt)                              # no input_shape needed
    assert model.input_shape == (1, 28, 28) and model.n_classes == 10
    for name, p in t.model.params.items():
        assert model.params[name].tobytes() == p.tobytes(), name
    x = t.data.x_test[:5]
    np.testing.assert_allclose(from_checkpoint(ckpt)(x), t.model.forward(x, train=False)[0],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"input_shape == \(3, 32, 32\), but the "
                                         r"checkpoint's model takes \(1, 28, 28\)"):
        model_from_checkpoint(ckpt, (3, 32, 32))
    ckpt.meta.pop("architecture")                                    # an older checkpoint
    with pytest.raises(ValueError, match=r"stores no architecture .*: pass input_shape"):
        model_from_checkpoint(ckpt)
    assert model_from_checkpoint(ckpt, (1, 28, 28)).params.keys() == model.params.keys()


@pytest.mark.skipif(not matmul.WINDOW_KERNEL, reason="Numba's target CPU lacks AVX-512 "
                    "(AVX512F/VL): the window kernel cannot run")
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ablate=st.sampled_from([0.0, 0.3]),
       dense_last=st.booleans())
def test_whole_mlp_window_kernel_bit_for_bit_lanes_kernel(seed, ablate, dense_last):
    """``mlp_matvec_windows`` (AVX-512) and ``mlp_matvec_lanes`` give the same bits."""
    model, masks, rng = masked_model("mlp", seed, ablate=ablate, dense_last=dense_last)
    cmodel = condense_model(model, masks)
    ops = cmodel.ops
    x = inputs(model, rng, 1)[0].reshape(-1).astype(np.float32)
    windows = _MlpPlan.build(ops, x.size)
    assert windows.steps is not None and cmodel._mlp.steps is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matmul, "WINDOW_KERNEL", False)
        lanes = _MlpPlan.build(ops, x.size)
    assert lanes.steps is None
    assert np.array_equal(windows(x).view(np.uint32), lanes(x).view(np.uint32))
