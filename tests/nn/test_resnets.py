"""The ResNets in training: BatchNorm's evaluation mode after SGD, the trainer on synthetic
data and on CIFAR-10-format files written here, bit-identical resume with running
statistics, and what ``inspect`` / ``condense`` make of a ResNet run."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from srigl_ref import checkpoint, cli, data
from srigl_ref.nn.losses import softmax_cross_entropy
from srigl_ref.nn.models import build_model
from srigl_ref.nn.optim import SGD
from srigl_ref.train import TrainConfig, Trainer
from tests.data.test_data import cifar_records


def test_narrow_resnet_learns_and_evaluates_with_running_statistics(rng):
    """SGD on synthetic clusters; evaluation mode (running statistics, no batch statistics)
    must classify the held-out examples, so the running statistics track the batches."""
    ds = data.synthetic(rng=rng, n_train=512, n_test=256, input_shape=(1, 12, 12), n_classes=4)
    model = build_model("resnet20", (1, 12, 12), 4, rng=rng, channels=(4, 8), blocks=1)
    optimizer = SGD(model.params, 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    start = model.state_dict()
    for epoch in range(6):
        order = rng.permutation(512)
        for lo in range(0, 512, 32):
            idx = order[lo:lo + 32]
            logits, cache = model.forward(ds.x_train[idx])
            _, dlogits = softmax_cross_entropy(logits, ds.y_train[idx])
            optimizer.step(model.backward(dlogits, cache), {})
    assert all(not np.array_equal(start[n], b) for n, b in model.buffers.items())
    logits, _ = model.forward(ds.x_test, train=False)
    assert (logits.argmax(axis=1) == ds.y_test).mean() >= 0.9


def test_cli_trains_resnet20_on_synthetic(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--model", "resnet20", "--dataset", "synthetic", "--epochs", "1",
                     "--n-train", "64", "--batch-size", "32", "--delta", "1",
                     "--out", str(out)])
    assert code == 0
    summary = checkpoint.read_summary(out / "summary.json")
    assert summary["config"]["init"] == "torch_default"             # the model's default
    assert summary["steps"] == 2 and np.isfinite(summary["test_loss"])
    assert [layer["name"] for layer in summary["layers"]][-1] == "linear.weight"
    assert not any("bn" in layer["name"] for layer in summary["layers"])
    ckpt = checkpoint.load_checkpoint(out / "model.npz")
    assert "layer1.0.bn1.running_var" in ckpt.params                 # buffers are saved
    assert "srigl on synthetic (resnet20)" in capsys.readouterr().out


def _cifar_dir(root, rng, n_train_per_batch=8, n_test=12):
    """CIFAR-10 binary files (``cifar-10-batches-bin``) with random images and labels."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records(rng, n_train_per_batch)[2])
    (folder / "test_batch.bin").write_bytes(cifar_records(rng, n_test)[2])
    return root


@pytest.mark.parametrize("model", ["resnet20", "resnet18"])
def test_resnets_train_on_cifar10_format_files(tmp_path, rng, model):
    """One SRigL step on 3x32x32 inputs read from files in the CIFAR-10 binary format."""
    root = _cifar_dir(tmp_path / "cifar", rng)
    cfg = TrainConfig(dataset="cifar10", data_dir=str(root), model=model, method="srigl",
                      density=0.05, epochs=1, batch_size=16, n_train=16, delta=1)
    t = Trainer(cfg, tmp_path / "run", progress=None)
    assert t.data.input_shape == (3, 32, 32)
    summary = t.run()
    assert summary["steps"] == 1 and np.isfinite(summary["test_loss"])
    assert t.model.params["conv1.weight"].shape[1] == 3
    masks = t._all_masks()
    assert set(masks) == set(t.model.sparse_names)
    for name, m in masks.items():
        assert not t.model.params[name][~m].any(), name


def test_resume_with_batchnorm_is_bit_identical(tmp_path, rng):
    """Stopped after one epoch and resumed == uninterrupted: weights, masks, momentum and
    the BatchNorm running statistics, bit for bit."""
    root = _cifar_dir(tmp_path / "cifar", rng)
    cfg = TrainConfig(dataset="cifar10", data_dir=str(root), model="resnet20", method="srigl",
                      density=0.1, epochs=2, batch_size=8, n_train=16, delta=1,
                      grad_accumulation_n=1)
    Trainer(cfg, tmp_path / "full", progress=None).run()
    Trainer(cfg, tmp_path / "part", progress=None).run(stop_after_epochs=1)
    middle = checkpoint.load_checkpoint(tmp_path / "part" / "model.npz")
    Trainer(cfg, tmp_path / "part", progress=None).run(resume=True)
    full = checkpoint.load_checkpoint(tmp_path / "full" / "model.npz")
    part = checkpoint.load_checkpoint(tmp_path / "part" / "model.npz")
    assert full.meta == part.meta
    running = [n for n in full.params if "running_" in n]
    assert len(running) == 2 * 21                                    # 21 BatchNorm layers
    # the running statistics moved during the second epoch: a resume that re-initialised
    # them (or never saved them) could not match
    assert all(middle.params[n].tobytes() != full.params[n].tobytes() for n in running)
    for group in ("params", "masks", "momentum", "ever_active"):
        a, b = getattr(full, group), getattr(part, group)
        assert list(a) == list(b)
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), (group, name)


def test_inspect_and_condense_of_a_resnet_run(tmp_path, rng, capsys):
    """``inspect`` lists the conv and linear layers (BatchNorm holds no sparse weight);
    ``condense`` refuses with one line, exit code 2."""
    root = _cifar_dir(tmp_path / "cifar", rng)
    cfg = TrainConfig(dataset="cifar10", data_dir=str(root), model="resnet20", method="srigl",
                      density=0.1, epochs=1, batch_size=16, n_train=16, delta=1)
    Trainer(cfg, tmp_path / "run", progress=None).run()
    assert cli.main(["inspect", str(tmp_path / "run" / "model.npz")]) == 0
    table = capsys.readouterr().out
    assert "22 layer(s)" in table and "layer3.0.shortcut.0.weight" in table
    assert "bn1" not in table
    assert cli.main(["condense", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "srigl-ref: error: layer 'conv1' is a BiasFreeConv2d; condense_model handles" in err


def test_model_defaults_resolve_into_the_run_config():
    """``init``/``warmup_epochs`` None take the model's ``MODEL_DEFAULTS`` (recorded in the
    config, so a resumed run compares equal); explicit values are kept; the default MLP
    run is unchanged (Kaiming normal, sparse re-draw at the active fan-in, no warm-up)."""
    mlp = TrainConfig()
    assert (mlp.init, mlp.sparse_init, mlp.warmup_epochs) == ("kaiming", "fan_in", 0)
    lenet = TrainConfig(model="lenet5", epochs=5)
    assert (lenet.init, lenet.warmup_epochs) == ("torch_default", 1)
    assert TrainConfig.from_dict(asdict(lenet)) == lenet
    assert TrainConfig(model="lenet5", epochs=1).warmup_epochs == 0   # capped: epochs - 1
    explicit = TrainConfig(model="lenet5", init="kaiming", warmup_epochs=0)
    assert (explicit.init, explicit.warmup_epochs) == ("kaiming", 0)
    assert TrainConfig(model="resnet18").init == "torch_default"
    assert (mlp.lr, lenet.lr, TrainConfig(model="cnn").lr) == (0.1, 0.1, 0.05)
    assert TrainConfig(model="cnn", lr=0.05).lr == 0.05
    with pytest.raises(ValueError, match=r"sparse_init == 'kaiming', must be one of 'fan_in', "
                                         r"'official', 'mask'"):
        TrainConfig(sparse_init="kaiming")
    with pytest.raises(ValueError, match=r"engine == 'condensed' handles models without "
                                         r"BatchNorm .*, got model == 'resnet20'"):
        TrainConfig(model="resnet20", engine="condensed")
