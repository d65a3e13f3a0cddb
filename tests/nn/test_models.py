"""Models: naming and shapes, whole-model gradient checks with masks applied, the model
interface (forward / backward / state_dict / copy), the dense initialisations (Kaiming
normal, PyTorch's default), the sparse init of docs/algorithm.md §4 on top of either,
BatchNorm state and the ResNets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from srigl_ref.dst.masks import check_constant_fan_in
from srigl_ref.dst.sparsity import constant_fan_in, layer_sparsities
from srigl_ref.nn.losses import softmax_cross_entropy
from srigl_ref.nn.models import MODEL_DEFAULTS, build_model, sparse_init
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
    # Kaiming weights: with this seed, torch_default's smaller weights put a max-pool/ReLU
    # kink within eps of one checked point (central differences converge there only below
    # eps = 1e-6); the backward does not depend on the init
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng, dtype=np.float64, init="kaiming")
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

@pytest.mark.parametrize("init", ["fan_in", "official"])
def test_sparse_init_constant_fan_in(rng, init):
    model = build_model("lenet5", (1, 28, 28), 10, rng=rng, init="kaiming")
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
            std = math.sqrt(2 / k0) if init == "fan_in" else 2 / k0
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


# --- dense initialisations --------------------------------------------------------------

def _torch_default_bound(fan_in: int) -> float:
    """PyTorch's ``kaiming_uniform_(w, a=sqrt(5))`` bound: ``gain * sqrt(3 / fan_in)`` with
    ``gain = sqrt(2 / (1 + a^2))``, written as in ``torch.nn.init``."""
    a = math.sqrt(5)
    gain = math.sqrt(2.0 / (1 + a ** 2))
    return gain * math.sqrt(3.0 / fan_in)


def test_torch_default_init_matches_pytorch_formula():
    """Bounds of every weight and bias, and the variance ``b^2 / 3`` of U(-b, b) over the
    large layers, with a fixed Generator."""
    model = build_model("lenet5", (1, 28, 28), 10, rng=np.random.default_rng(0),
                        init="torch_default")
    for name in model.sparse_names:
        w, bias = model.params[name], model.params[name.replace("weight", "bias")]
        fan_in = math.prod(w.shape[1:])                     # in_features or C_in * kh * kw
        b = _torch_default_bound(fan_in)
        assert b == pytest.approx(1 / math.sqrt(fan_in), rel=1e-12)
        assert np.abs(w).max() <= b and np.abs(bias).max() <= 1 / math.sqrt(fan_in), name
        assert np.abs(w).max() > 0.9 * b, name              # the whole interval is used
        if w.size >= 2400:                                  # conv2, fc1, fc2
            assert w.astype(np.float64).var() == pytest.approx(b ** 2 / 3, rel=0.06), name
            assert abs(w.mean()) < 0.05 * b, name
    big = build_model("mlp", (1, 28, 28), 10, rng=np.random.default_rng(1),
                      init="torch_default")
    w = big.params["fc1.weight"].astype(np.float64)         # 235 200 draws
    assert w.var() == pytest.approx(_torch_default_bound(784) ** 2 / 3, rel=0.01)
    bias = big.params["fc1.bias"].astype(np.float64)
    assert bias.var() == pytest.approx(1 / (3 * 784), rel=0.25) and bias.any()


def test_default_init_per_model():
    """``build_model`` uses ``MODEL_DEFAULTS``; an explicit ``init`` overrides it."""
    assert {name: d["init"] for name, d in MODEL_DEFAULTS.items()} == {
        "mlp": "kaiming", "lenet5": "torch_default", "cnn": "kaiming",
        "resnet20": "torch_default", "resnet18": "torch_default"}
    for name, shape in (("lenet5", (1, 28, 28)), ("cnn", (1, 28, 28)), ("mlp", (12,))):
        default = build_model(name, shape, 10, rng=np.random.default_rng(4))
        explicit = build_model(name, shape, 10, rng=np.random.default_rng(4),
                               init=MODEL_DEFAULTS[name]["init"])
        assert all(np.array_equal(default.params[n], explicit.params[n])
                   for n in default.params)
    kaiming = build_model("lenet5", (1, 28, 28), 10, rng=np.random.default_rng(4),
                          init="kaiming")
    assert not kaiming.params["fc1.bias"].any()
    assert build_model("lenet5", (1, 28, 28), 10, rng=np.random.default_rng(4)
                       ).params["fc1.bias"].any()
    with pytest.raises(ValueError, match=r"init == 'xavier', must be one of 'kaiming', "
                                         r"'torch_default'"):
        build_model("mlp", (4,), 3, rng=np.random.default_rng(0), init="xavier")


def test_sparse_init_on_top_of_torch_default(rng):
    """``fan_in``: U(-1/sqrt(k), 1/sqrt(k)) at the active fan-in k; ``mask``: the dense
    values kept on the mask; ``official``: N(0, (2/k)^2) whatever the dense init."""
    def build():
        return build_model("mlp", (1, 28, 28), 10, rng=np.random.default_rng(7),
                           init="torch_default")

    sparsities = [0.9, 0.5, 0.0]
    model = build()
    masks = sparse_init(model, sparsities, np.random.default_rng(8), "fan_in",
                        dense_init="torch_default")
    w, m = model.params["fc1.weight"], masks["fc1.weight"]
    k = check_constant_fan_in(m)
    assert k == constant_fan_in(w.shape, 0.9) and not w[~m].any()
    assert np.abs(w[m]).max() <= 1 / math.sqrt(k) and np.abs(w[m]).max() > 0.95 / math.sqrt(k)
    assert w[m].astype(np.float64).var() == pytest.approx(1 / (3 * k), rel=0.03)

    dense = build()
    kept = dense.copy()
    masks = sparse_init(kept, sparsities, np.random.default_rng(8), "mask",
                        dense_init="torch_default")
    for name in dense.sparse_names:
        np.testing.assert_array_equal(kept.params[name], dense.params[name] * masks[name])

    official = build()
    masks = sparse_init(official, sparsities, np.random.default_rng(8), "official",
                        dense_init="torch_default")
    w = official.params["fc1.weight"][masks["fc1.weight"]]
    assert w.std() == pytest.approx(2 / k, rel=0.03)


# --- BatchNorm state, ResNets -----------------------------------------------------------

def _resnet_param_count(c_in, widths, blocks, n_classes):
    """Parameters of the CIFAR ResNet written out: stem conv + BN, per block two 3x3 convs
    + two BNs (+ a 1x1 conv and a BN where the shape changes), linear."""
    n = 9 * c_in * widths[0] + 2 * widths[0]
    prev = widths[0]
    for c in widths:
        for i in range(blocks):
            n += 9 * prev * c + 9 * c * c + 4 * c
            if prev != c:
                n += prev * c + 2 * c
            prev = c
    return n + widths[-1] * n_classes + n_classes


def test_resnet20_and_resnet18_structure(rng):
    r20 = build_model("resnet20", (3, 32, 32), 10, rng=rng)
    assert sum(p.size for p in r20.params.values()) == _resnet_param_count(
        3, (16, 32, 64), 3, 10) == 272_474                  # ~0.27 M (He et al.: 0.27 M)
    # 20 weighted layers (stem, 18 3x3 convs in blocks, linear) + 2 1x1 projections
    assert len(r20.sparse_names) == 22 and r20.sparse_names[-1] == "linear.weight"
    assert sum(r20.params[n].shape[2:] == (3, 3) for n in r20.sparse_names[:-1]) == 19
    r18 = build_model("resnet18", (3, 32, 32), 10, rng=rng)
    assert sum(p.size for p in r18.params.values()) == _resnet_param_count(
        3, (64, 128, 256, 512), 2, 10) == 11_173_962       # the authors' CIFAR ResNet18
    assert r18.sparse_names[:3] == ["conv1.weight", "layer1.0.conv1.weight",
                                    "layer1.0.conv2.weight"]
    assert "layer2.0.shortcut.0.weight" in r18.sparse_names
    assert r18.sparse_names[-1] == "linear.weight"
    assert not any(".bn" in n or n.startswith("bn") or "shortcut.1" in n
                   for n in r18.sparse_names)               # BatchNorm is never sparse
    assert list(r18.buffers)[:2] == ["bn1.running_mean", "bn1.running_var"]
    assert r18.params["layer1.0.bn1.weight"].tolist() == [1.0] * 64
    assert not r18.params["layer1.0.bn1.bias"].any()
    assert r18.params["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert "conv1.bias" not in r18.params                   # bias-free convolutions
    one_channel = build_model("resnet20", (1, 28, 28), 10, rng=rng)
    assert one_channel.params["conv1.weight"].shape == (16, 1, 3, 3)
    logits, _ = one_channel.forward(rng.standard_normal((2, 1, 28, 28)).astype(np.float32))
    assert logits.shape == (2, 10) and logits.dtype == np.float32


def test_small_resnet_gradients(rng):
    """Whole-model float64 gradient check of a narrow ResNet in training mode, masks
    applied (identity and projection blocks, BatchNorm, pooling, linear)."""
    model = build_model("resnet20", (2, 6, 6), 3, rng=rng, channels=(3, 4), blocks=2,
                        dtype=np.float64)
    masks = {n: rng.random(model.params[n].shape) < 0.7 for n in model.sparse_names}
    for name, m in masks.items():
        model.params[name] *= m
    x = rng.standard_normal((4, 2, 6, 6))
    labels = rng.integers(0, 3, 4)

    def loss():
        return softmax_cross_entropy(model.forward(x)[0], labels)[0]

    logits, cache = model.forward(x)
    grads = model.backward(softmax_cross_entropy(logits, labels)[1], cache)
    assert list(grads) == list(model.params)
    # eps 1e-6: BatchNorm over a small batch is strongly curved (the central difference
    # with eps 1e-5 is off by 1e-5 relative and converges to the analytic value below)
    for name, p in model.params.items():
        idx = rng.choice(p.size, min(p.size, 12), replace=False)
        check_gradient(loss, p, grads[name], name=name, indices=idx, eps=1e-6, floor=1e-3)
    check_gradient(loss, x, _input_gradient(model, x, labels), name="x", eps=1e-6,
                   indices=rng.choice(x.size, 12, replace=False), floor=1e-3)


def _input_gradient(model, x, labels):
    """dL/dx through the model's layers (the model's backward stops at the first layer)."""
    logits, cache = model.forward(x)
    dy = softmax_cross_entropy(logits, labels)[1]
    for (_, layer), layer_cache in zip(reversed(model.layers), reversed(cache)):
        dy, _ = layer.backward(dy, layer_cache)
    return dy


def test_batchnorm_state_dict_train_and_eval(rng):
    model = build_model("resnet20", (1, 8, 8), 4, rng=rng, channels=(2, 3), blocks=1)
    names = list(model.state_dict())
    assert names[:4] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean"]
    assert set(names) == set(model.params) | set(model.buffers)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    before = model.state_dict()
    evaluated, none = model.forward(x, train=False)          # evaluation: nothing changes
    assert none is None
    assert all(np.array_equal(before[n], b) for n, b in model.buffers.items())
    model.forward(x)                                          # training: running stats move
    moved = [n for n, b in model.buffers.items() if not np.array_equal(before[n], b)]
    assert moved == list(model.buffers)
    twin = model.copy()
    model.forward(x)
    assert not np.array_equal(twin.buffers["bn1.running_mean"], model.buffers["bn1.running_mean"])
    model.load_state_dict(twin.state_dict())
    for n in model.buffers:
        np.testing.assert_array_equal(model.buffers[n], twin.buffers[n])
    np.testing.assert_array_equal(model.forward(x, train=False)[0], twin.forward(x, train=False)[0])
    assert not np.array_equal(evaluated, model.forward(x, train=False)[0])
    partial = {n: a for n, a in twin.state_dict().items() if n in model.params}
    with pytest.raises(ValueError, match=r"state has names \['conv1.weight', 'bn1.weight', "
                                         r"'bn1.bias', 'layer1.0.conv1.weight'"):
        model.load_state_dict(partial)


def test_state_names_follow_pytorch_order(rng):
    """Inside a block, sub-layer by sub-layer (PyTorch's ``state_dict`` order)."""
    model = build_model("resnet20", (1, 8, 8), 4, rng=rng, channels=(2, 3), blocks=1)
    block = [n for n in model.state_names if n.startswith("layer2.0.")]
    assert block == [f"layer2.0.{n}" for n in (
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
        "conv2.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
        "shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias",
        "shortcut.1.running_mean", "shortcut.1.running_var")]
    assert model.state_names[-2:] == ["linear.weight", "linear.bias"]
