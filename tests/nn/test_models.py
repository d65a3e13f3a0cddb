"""Models: naming and shapes, whole-model gradient checks with masks applied, the model
interface (forward / backward / state_dict / copy), dense Kaiming init and the sparse init of
SPEC section 4."""
from __future__ import annotations

import math

import numpy as np
import pytest

from srigl_ref.dst.masks import check_constant_fan_in
from srigl_ref.dst.sparsity import constant_fan_in, layer_sparsities
from srigl_ref.nn.losses import softmax_cross_entropy
from srigl_ref.nn.models import build_model, sparse_init
from tests.gradcheck import check_gradient


def _shapes(model):
    return [(name, p.shape) for name, p in model.params.items()]


def test_mlp_default_is_lenet_300_100(rng):
    model = build_model("mlp", (1, 28, 28), 10, rng=rng)
    assert _shapes(model) == [("fc1.weight", (300, 784)), ("fc1.bias", (300,)),
                              ("fc2.weight", (100, 300)), ("fc2.bias", (100,)),
                              ("fc3.weight", (10, 100)), ("fc3.bias", (10,))]
    assert model.sparse_names == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert all(p.dtype == np.float32 for p in model.params.values())
    widths = build_model("mlp", (20,), 3, rng=rng, hidden=(7, 6, 5))
    assert [s for _, s in _shapes(widths)][::2] == [(7, 20), (6, 7), (5, 6), (3, 5)]


def test_lenet5_shapes_match_the_golden_model(rng):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng)
    assert [model.params[n].shape for n in model.sparse_names] == [
        (6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)]
    assert model.sparse_names == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight",
                                  "fc3.weight"]


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_cnn_shapes(rng, input_shape):
    model = build_model("cnn", input_shape, 10, rng=rng)
    c = input_shape[0]
    assert _shapes(model) == [
        ("conv1.weight", (32, c, 3, 3)), ("conv1.bias", (32,)),
        ("conv2.weight", (32, 32, 3, 3)), ("conv2.bias", (32,)),
        ("conv3.weight", (64, 32, 3, 3)), ("conv3.bias", (64,)),
        ("conv4.weight", (64, 64, 3, 3)), ("conv4.bias", (64,)),
        ("fc1.weight", (128, 64)), ("fc1.bias", (128,)),
        ("fc2.weight", (10, 128)), ("fc2.bias", (10,))]
    logits, _ = model.forward(np.zeros((2, *input_shape), np.float32), train=False)
    assert logits.shape == (2, 10) and logits.dtype == np.float32


def _model_gradcheck(model, x, labels, rng, n_per_param=None):
    """Masks applied (W *= M), then every parameter's dense gradient checked."""
    masks = {n: rng.random(model.params[n].shape) < 0.6 for n in model.sparse_names}
    for name, m in masks.items():
        model.params[name] *= m
    for p in model.params.values():                  # non-trivial biases too
        if p.ndim == 1:
            p[:] = rng.standard_normal(p.shape) * 0.1

    def loss():
        return softmax_cross_entropy(model.forward(x, train=False)[0], labels,
                                     label_smoothing=0.1)[0]

    logits, cache = model.forward(x)
    grads = model.backward(softmax_cross_entropy(logits, labels, label_smoothing=0.1)[1], cache)
    assert list(grads) == list(model.params)
    for name, p in model.params.items():
        idx = None if n_per_param is None else rng.choice(p.size, min(p.size, n_per_param),
                                                          replace=False)
        check_gradient(loss, p, grads[name], name=name, indices=idx)
    # the gradient is dense: inactive positions get one too
    for name, m in masks.items():
        assert np.abs(grads[name][~m]).max() > 0, name


def test_mlp_gradient(rng):
    model = build_model("mlp", (2, 3, 3), 4, rng=rng, hidden=(6, 5), dtype=np.float64)
    _model_gradcheck(model, rng.standard_normal((5, 2, 3, 3)), rng.integers(0, 4, 5), rng)


def test_cnn_gradient(rng):
    model = build_model("cnn", (2, 8, 8), 3, rng=rng, channels=(3, 4), hidden=5,
                        dtype=np.float64)
    _model_gradcheck(model, rng.standard_normal((3, 2, 8, 8)), rng.integers(0, 3, 3), rng)


def test_lenet5_gradient_sampled(rng):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng, dtype=np.float64)
    _model_gradcheck(model, rng.standard_normal((2, 1, 28, 28)), np.array([3, 7]), rng,
                     n_per_param=20)


def test_train_false_gives_same_logits_and_no_cache(rng):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    a, cache = model.forward(x)
    b, none = model.forward(x, train=False)
    np.testing.assert_array_equal(a, b)
    assert isinstance(cache, list) and none is None


def test_state_dict_copy_and_load(rng):
    model = build_model("mlp", (4,), 3, rng=rng, hidden=(5,))
    state = model.state_dict()
    twin = model.copy()
    model.params["fc1.weight"] += 1.0
    assert not np.array_equal(model.params["fc1.weight"], state["fc1.weight"])
    np.testing.assert_array_equal(twin.params["fc1.weight"], state["fc1.weight"])
    model.load_state_dict(state)
    state["fc1.weight"][:] = 7.0                      # loaded arrays are copies
    np.testing.assert_array_equal(model.params["fc1.weight"], twin.params["fc1.weight"])
    with pytest.raises(ValueError, match=r"state has names \['fc1.weight'\], must be"):
        model.load_state_dict({"fc1.weight": state["fc1.weight"]})
    bad = {**twin.state_dict(), "fc1.bias": np.zeros(5)}
    with pytest.raises(TypeError, match=r"state\['fc1.bias'\].dtype == float64, must be "
                                        r"float32"):
        model.load_state_dict(bad)


def test_dense_kaiming_init(rng):
    model = build_model("mlp", (1, 28, 28), 10, rng=rng)
    w = model.params["fc1.weight"]
    assert w.std() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert not model.params["fc1.bias"].any()
    a = build_model("cnn", (1, 28, 28), 10, rng=np.random.default_rng(3))
    b = build_model("cnn", (1, 28, 28), 10, rng=np.random.default_rng(3))
    assert all(np.array_equal(a.params[n], b.params[n]) for n in a.params)


def test_forward_validation_messages(rng):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng)
    with pytest.raises(ValueError, match=r"x.shape == \(2, 1, 32, 32\), must be "
                                         r"\(batch, 1, 28, 28\) for model 'lenet5'"):
        model.forward(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(TypeError, match=r"x.dtype == float64, must be the model's dtype "
                                        r"float32"):
        model.forward(np.zeros((2, 1, 28, 28)))
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value.*first at flat "
                                         r"index 30"):
        model.forward(x)
    with pytest.raises(ValueError, match=r"name == 'vgg', must be one of 'mlp', 'lenet5', "
                                         r"'cnn'"):
        build_model("vgg", (1, 28, 28), 10, rng=rng)
    with pytest.raises(ValueError, match=r"input shape \(6, 4, 4\) does not fit Conv2d"):
        build_model("lenet5", (1, 8, 8), 10, rng=rng)


# --- sparse init (SPEC section 4); uses srigl_ref.dst ---------------------------------

@pytest.mark.parametrize("init", ["kaiming", "official"])
def test_sparse_init_constant_fan_in(rng, init):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng)
    shapes = [model.params[n].shape for n in model.sparse_names]
    sparsities = layer_sparsities(shapes, 0.1, "erk")
    biases = {n: p.copy() for n, p in model.params.items() if n.endswith("bias")}
    masks = sparse_init(model, sparsities, rng, init=init)
    assert list(masks) == model.sparse_names
    for name, s in zip(model.sparse_names, sparsities):
        w, m = model.params[name], masks[name]
        assert m.dtype == np.bool_ and m.shape == w.shape and w.dtype == np.float32
        k0 = constant_fan_in(w.shape, s) if s > 0 else math.prod(w.shape[1:])
        assert check_constant_fan_in(m) == k0
        assert not w[~m].any()
        if m.sum() > 5000:
            std = math.sqrt(2 / k0) if init == "kaiming" else 2 / k0
            assert w[m].std() == pytest.approx(std, rel=0.05), name
    for n, b in biases.items():
        np.testing.assert_array_equal(model.params[n], b)


def test_sparse_init_dense_layer_gets_all_true_mask_and_same_seed_same_result():
    def init(seed):
        model = build_model("mlp", (12,), 3, rng=np.random.default_rng(0), hidden=(8,))
        return model, sparse_init(model, [0.5, 0.0], np.random.default_rng(seed))

    (a, ma), (b, mb) = init(1), init(1)
    assert ma["fc2.weight"].all()
    assert all(np.array_equal(ma[n], mb[n]) and np.array_equal(a.params[n], b.params[n])
               for n in ma)
    assert not np.array_equal(init(2)[1]["fc1.weight"], ma["fc1.weight"])


def test_sparse_init_unstructured(rng):
    model = build_model("mlp", (30,), 4, rng=rng, hidden=(20,))
    masks = sparse_init(model, [0.75, 0.5], rng, structure="unstructured")
    assert masks["fc1.weight"].sum() == 600 - int(0.75 * 600)
    assert masks["fc2.weight"].sum() == 80 - int(0.5 * 80)
    assert not model.params["fc1.weight"][~masks["fc1.weight"]].any()


def test_sparse_init_validation_messages(rng):
    model = build_model("mlp", (4,), 3, rng=rng, hidden=(5,))
    with pytest.raises(ValueError, match=r"len\(sparsities\) == 1, must be 2"):
        sparse_init(model, [0.5], rng)
    with pytest.raises(ValueError, match=r"sparsities\['fc1.weight'\] == 1.0, must be in "
                                         r"\[0, 1\)"):
        sparse_init(model, [1.0, 0.0], rng)
    with pytest.raises(ValueError, match=r"init == 'xavier', must be one of"):
        sparse_init(model, [0.5, 0.5], rng, init="xavier")
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator"):
        sparse_init(model, [0.5, 0.5], 0)
