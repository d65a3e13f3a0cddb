"""The training loop (SPEC section 5): invariants at every step, the update schedule, dense
gradients only where needed, determinism, resume, and learning."""
import json
from pathlib import Path

import numpy as np
import pytest

import srigl_ref
from srigl_ref import checkpoint, cli
from srigl_ref.train import TrainConfig, Trainer, TrainingDiverged

FASHION = Path("/usr/share/datasets/fashion-mnist")

# 384 synthetic examples, batch 32: 12 steps an epoch; delta 5 gives several updates
TINY = dict(dataset="synthetic", n_train=384, batch_size=32, epochs=3, delta=5, lr=0.05)


class CheckedTrainer(Trainer):
    """Checks SPEC section 10 on every sparse layer after every optimizer step."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.update_steps_seen = []

    def train_step(self, x, y):
        result = super().train_step(x, y)
        self.check_invariants()
        return result

    def topology_update(self):
        self.update_steps_seen.append(self.state.step)
        return super().topology_update()

    def check_invariants(self):
        bufs = self.optimizer.momentum_buffers
        for name, s in zip(self.model.sparse_names, self.sparsities):
            w, m = self.model.params[name], self.state.masks.get(name)
            if m is None:
                assert self.config.method == "dense"
                continue
            assert m.dtype == np.bool_ and m.shape == w.shape
            assert not w[~m].any() and not bufs[name][~m].any()
            if s == 0:
                assert m.all()
                continue
            budget = srigl_ref.fan_in_budget(w.shape, s)
            if self.config.method == "srigl":
                rows = m.reshape(m.shape[0], -1).sum(1)
                k = srigl_ref.check_constant_fan_in(m)
                assert k == srigl_ref.constant_fan_in(w.shape, s, int((rows == 0).sum()))
                assert m.sum() <= budget
            else:
                assert m.sum() == w.size - int(s * w.size)
            assert (self.state.ever_active[name] | m).sum() == self.state.ever_active[name].sum()


@pytest.mark.parametrize("method", ["srigl", "rigl", "set", "static", "dense"])
def test_invariants_every_step_and_update_schedule(tmp_path, method):
    t = CheckedTrainer(TrainConfig(method=method, **TINY), tmp_path, progress=None)
    t.run()
    total = t.total_steps
    assert total == 36
    want = srigl_ref.update_steps(5, int(0.75 * total), total).tolist()
    assert want == [5, 10, 15, 20, 25]
    assert t.update_steps_seen == (want if method in ("srigl", "rigl", "set") else [])
    records = checkpoint.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "update"] == t.update_steps_seen
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]


@pytest.mark.parametrize("n_acc", [1, 3])
def test_dense_gradient_only_where_needed(tmp_path, n_acc):
    """Dense gradients are recorded for the n steps up to each update, and nowhere else."""
    t = Trainer(TrainConfig(grad_accumulation_n=n_acc, **TINY), tmp_path, progress=None)
    recorded = []
    record = t._record_dense_grad
    t._record_dense_grad = lambda grads: (recorded.append(t.state.step + 1), record(grads))
    t.run()
    want = [s - j for s in [5, 10, 15, 20, 25] for j in reversed(range(n_acc))]
    assert recorded == want
    assert t.dense_grad_records == len(want)


def test_update_uses_mean_accumulated_dense_gradient(tmp_path, monkeypatch):
    """The gradient handed to srigl_update is the mean of the recorded dense gradients."""
    t = Trainer(TrainConfig(grad_accumulation_n=2, **TINY), tmp_path, progress=None)
    seen, grads_at = {}, []
    record = t._record_dense_grad
    t._record_dense_grad = lambda g: (grads_at.append({n: g[n].copy() for n in g}), record(g))
    update = srigl_ref.dst.srigl_update

    def spy(weight, mask, grad, **kw):
        seen.setdefault(len(grads_at), []).append(grad)
        return update(weight, mask, grad, **kw)
    monkeypatch.setattr(srigl_ref.dst, "srigl_update", spy)
    t.run()
    first = seen[2][0]                         # fc1 at the first update (after 2 records)
    want = (grads_at[0]["fc1.weight"] + grads_at[1]["fc1.weight"]) / 2
    np.testing.assert_allclose(first, want, rtol=1e-6)


def strip_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_same_seed_same_run(tmp_path):
    runs = []
    for d in ("a", "b"):
        t = Trainer(TrainConfig(**TINY), tmp_path / d, progress=None)
        t.run()
        runs.append((strip_seconds(checkpoint.read_metrics(tmp_path / d / "metrics.jsonl")),
                     checkpoint.load_checkpoint(tmp_path / d / "model.npz")))
    (m1, c1), (m2, c2) = runs
    assert m1 == m2
    for name in c1.masks:
        assert c1.masks[name].tobytes() == c2.masks[name].tobytes()
        assert c1.params[name].tobytes() == c2.params[name].tobytes()


@pytest.mark.parametrize("method", ["srigl", "set"])
def test_resume_equals_uninterrupted(tmp_path, method):
    cfg = TrainConfig(method=method, grad_accumulation_n=3, **dict(TINY, epochs=4, delta=4))
    Trainer(cfg, tmp_path / "full", progress=None).run()
    Trainer(cfg, tmp_path / "part", progress=None).run(stop_after_epochs=2)
    Trainer(cfg, tmp_path / "part", progress=None).run(resume=True)
    full = checkpoint.load_checkpoint(tmp_path / "full" / "model.npz")
    part = checkpoint.load_checkpoint(tmp_path / "part" / "model.npz")
    assert full.meta == part.meta
    for group in ("params", "masks", "momentum", "ever_active"):
        a, b = getattr(full, group), getattr(part, group)
        assert list(a) == list(b)
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), (group, name)
    assert strip_seconds(checkpoint.read_metrics(tmp_path / "full" / "metrics.jsonl")) == \
        strip_seconds(checkpoint.read_metrics(tmp_path / "part" / "metrics.jsonl"))


def test_resume_refuses_other_config(tmp_path):
    Trainer(TrainConfig(**TINY), tmp_path, progress=None).run(stop_after_epochs=1)
    other = TrainConfig(**dict(TINY, lr=0.01))
    with pytest.raises(ValueError, match=r"config differs in \['lr'\]"):
        Trainer(other, tmp_path, progress=None).run(resume=True)


def test_synthetic_srigl_learns(tmp_path):
    """Synthetic classes are separable with a wide margin (data.synthetic): a 90 %-sparse
    LeNet-300-100 must get nearly all of them; 0.95 leaves room only for a few errors."""
    t = Trainer(TrainConfig(dataset="synthetic", epochs=2, delta=20), tmp_path, progress=None)
    summary = t.run()
    assert summary["test_accuracy"] >= 0.95
    assert abs(summary["density"] - 0.1) < 0.01
    assert any(r["kind"] == "update" for r in checkpoint.read_metrics(
        tmp_path / "metrics.jsonl"))


def test_ablation_happens_and_classifier_is_exempt(tmp_path):
    """At density 0.02 with gamma_sal 0.5 some hidden neurons are ablated; fc3 never."""
    cfg = TrainConfig(dataset="synthetic", n_train=1024, epochs=3, density=0.02,
                      distribution="uniform", gamma_sal=0.5, delta=10, batch_size=64)
    t = CheckedTrainer(cfg, tmp_path, progress=None)
    t.run()
    updates = [r for r in checkpoint.read_metrics(tmp_path / "metrics.jsonl")
               if r["kind"] == "update"]
    assert sum(layer["n_ablated"] for r in updates for layer in r["layers"]) > 0
    assert all(layer["threshold"] == -1 for r in updates for layer in r["layers"]
               if layer["name"] == "fc3.weight")


def test_cli_tiny_run_writes_valid_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "synthetic", "--n-train", "256",
                               "--epochs", "2", "--delta", "4", "--batch-size", "32",
                               "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "fc1.weight" in printed
    summary = checkpoint.read_summary(out / "summary.json")
    assert summary["method"] == "srigl" and summary["target_density"] == 0.1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert [layer["name"] for layer in summary["layers"]] == ["fc1.weight", "fc2.weight",
                                                              "fc3.weight"]
    kinds = [r["kind"] for r in checkpoint.read_metrics(out / "metrics.jsonl")]
    assert kinds.count("epoch") == 2 and "update" in kinds
    ckpt = checkpoint.load_checkpoint(out / "model.npz")
    assert ckpt.meta["epoch"] == 2 and ckpt.config["dataset"] == "synthetic"
    json.dumps(summary)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "epochs == -1, must be in [1, inf]"),
    (["--density", "0"], "density == 0.0, must be in (0, 1]"),
    (["--density", "1.5"], "density == 1.5, must be in (0, 1]"),
    (["--method", "magic"], "argument --method: invalid choice: 'magic'"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
])
def test_cli_bad_arguments_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        code = cli.main(["train", "--dataset", "synthetic", *args])
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_unwritable_out_and_missing_data(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["train", "--dataset", "synthetic",
                               "--out", str(blocker / "sub")]) == 2
    assert "srigl-ref: error:" in capsys.readouterr().err
    monkeypatch.setenv("SRIGL_REF_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SRIGL_REF_DATA_URL", "http://127.0.0.1:9/")   # nothing listens
    assert cli.main(["train", "--dataset", "mnist", "--out",
                               str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srigl-ref: error:") and "mnist" in err
    assert len(err.splitlines()) == 1


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist; .ci/run does)")
def test_fashion_mnist_few_hundred_steps(tmp_path):
    """SRigL at density 0.1 beats 80 % test accuracy after 400 steps on real data."""
    cfg = TrainConfig(n_train=25600, epochs=2, delta=50)
    summary = Trainer(cfg, tmp_path, progress=None).run()
    assert summary["steps"] == 400
    assert summary["test_accuracy"] > 0.80


@pytest.mark.parametrize("method", ["srigl", "rigl"])
def test_trace_replays_identically(tmp_path, method):
    """`train --trace` writes one case per update and layer; each replays to our result."""
    from srigl_ref.interchange import replay_dir
    t = Trainer(TrainConfig(method=method, **TINY), tmp_path / "run", progress=None,
                trace_dir=tmp_path / "trace")
    t.run()
    files = sorted((tmp_path / "trace").glob("step_*/*.npz"))
    assert len(files) == 5 * 2                  # 5 updates x (fc1, fc2; fc3 is dense)
    results = list(replay_dir(tmp_path / "trace"))
    assert len(results) == 10 and all(r.mismatch is None for r in results)


class PoisonedTrainer(Trainer):
    """Sets one weight to inf after ``poison_after`` epochs: the next loss is not finite."""
    poison_after = 1

    def run_epoch(self):
        super().run_epoch()
        if self.state.epoch == self.poison_after:
            self.model.params["fc1.weight"][0, self.state.masks["fc1.weight"][0]] = np.inf


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
    t = PoisonedTrainer(TrainConfig(**TINY), tmp_path, progress=None)
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the loss is nan at step "
                       r"13 \(epoch 2 of 3\); the learning rate is likely too high \(lr == "
                       r"[0-9.e-]+ at that step, --lr 0.05\)$") as e:
        t.run()
    assert (e.value.step, e.value.epoch) == (13, 2)
    assert "\n" not in str(e.value)
    ckpt = checkpoint.load_checkpoint(tmp_path / "model.npz")
    assert ckpt.meta["epoch"] == 1 and ckpt.meta["step"] == 12       # the last good epoch
    assert np.isfinite(ckpt.params["fc1.weight"]).all()
    summary = checkpoint.read_summary(tmp_path / "summary.json")
    assert summary["status"] == "diverged" and summary["message"] == str(e.value)
    assert summary["epochs"] == 1 and summary["steps"] == 12
    epochs = [r for r in checkpoint.read_metrics(tmp_path / "metrics.jsonl")
              if r["kind"] == "epoch"]
    assert summary["test_accuracy"] == epochs[-1]["test_accuracy"] and len(epochs) == 1


def poison_step(trainer, at_step):
    """Make the optimizer step ``at_step`` leave an inf weight: that step's loss is finite."""
    step = trainer.engine.step

    def poisoned(grads, masks, lr):
        step(grads, masks, lr)
        if trainer.state.step + 1 == at_step:
            trainer.model.params["fc1.weight"][0, trainer.state.masks["fc1.weight"][0]] = np.inf
    trainer.engine.step = poisoned


@pytest.mark.parametrize("at_step", [24, 20], ids=["last-step-of-epoch", "update-step"])
def test_non_finite_weight_after_a_finite_loss_stops_the_run(tmp_path, at_step):
    # 12 steps per epoch, updates every 5: step 24 ends epoch 2 (the evaluation would read
    # the inf), step 20 is followed by a topology update (which would read it)
    t = Trainer(TrainConfig(**TINY), tmp_path, progress=None)
    poison_step(t, at_step)
    with pytest.raises(TrainingDiverged, match=rf"^training diverged: fc1.weight is not finite "
                       rf"after step {at_step} \(epoch 2 of 3\); the learning rate is likely "
                       rf"too high \(lr == [0-9.e-]+ at that step, --lr 0.05\)$") as e:
        t.run()
    assert (e.value.step, e.value.epoch) == (at_step, 2)
    ckpt = checkpoint.load_checkpoint(tmp_path / "model.npz")
    assert ckpt.meta["epoch"] == 1 and np.isfinite(ckpt.params["fc1.weight"]).all()
    summary = checkpoint.read_summary(tmp_path / "summary.json")
    assert summary["status"] == "diverged" and summary["message"] == str(e.value)


def test_cli_diverging_lr_exits_1_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "synthetic", "--n-train", "128", "--epochs", "2",
                     "--batch-size", "32", "--lr", "10000", "--out", str(out)])
    assert code == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and captured.out == ""
    assert err[-1].startswith("srigl-ref: error: training diverged: the loss is nan at step ")
    assert "(epoch 1 of 2); the learning rate is likely too high" in err[-1]
    assert err[-1].endswith(f'no epoch completed, no model.npz; {out / "summary.json"} says '
                            f'"diverged"')
    summary = checkpoint.read_summary(out / "summary.json")
    assert summary["status"] == "diverged" and summary["test_accuracy"] is None
    assert summary["epochs"] == 0 and not (out / "model.npz").exists()


class FixedAccuracyTrainer(Trainer):
    """Reports a given test accuracy (to pin the chance-level rule, not learning)."""
    accuracy = 0.1

    def evaluate(self, x, y, batch_size=1000):
        return 2.3, self.accuracy


@pytest.mark.parametrize("accuracy, status", [(0.1, "at_chance"), (0.08, "at_chance"),
                                              (0.12, "at_chance"), (0.0799, "ok"),
                                              (0.1201, "ok"), (0.9, "ok")])
def test_status_at_chance_within_two_points(tmp_path, accuracy, status):
    t = FixedAccuracyTrainer(TrainConfig(**dict(TINY, epochs=1)), tmp_path, progress=None)
    t.accuracy = accuracy
    summary = t.run()
    assert t.data.n_classes == 10
    assert summary["status"] == status
    assert checkpoint.read_summary(tmp_path / "summary.json")["status"] == status
    if status == "at_chance":
        assert summary["message"] == (f"test accuracy {accuracy:.4f} is within 2 points of "
                                      f"chance (1/10): the run did not learn")
    else:
        assert "message" not in summary


def test_final_table_says_at_chance(tmp_path, capsys):
    t = FixedAccuracyTrainer(TrainConfig(**dict(TINY, epochs=1)), tmp_path, progress=None)
    cli._print_summary(t.run(), tmp_path)
    printed = capsys.readouterr().out
    assert "  status          AT_CHANCE: test accuracy 0.1000 is within 2 points of chance " \
           "(1/10): the run did not learn\n" in printed


def test_normal_run_status_ok(tmp_path, capsys):
    summary = Trainer(TrainConfig(**dict(TINY, epochs=1)), tmp_path, progress=None).run()
    assert summary["status"] == "ok" and abs(summary["test_accuracy"] - 0.1) > 0.02
    cli._print_summary(summary, tmp_path)
    assert "  status  " not in capsys.readouterr().out


@pytest.mark.parametrize("edit, match", [
    (dict(status="exploded"), r"status == 'exploded', must be one of 'ok', 'at_chance', "
                              r"'diverged'"),
    (dict(test_accuracy=None), r"test_accuracy == None, must be in \[0, 1\] \(null only "
                               r"when status is 'diverged'\)"),
])
def test_read_summary_checks_status(tmp_path, edit, match):
    Trainer(TrainConfig(**dict(TINY, epochs=1)), tmp_path, progress=None).run()
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), **edit)))
    with pytest.raises(ValueError, match=match):
        checkpoint.read_summary(path)


def test_non_finite_data_rejected_once_where_it_enters(tmp_path, monkeypatch):
    real = srigl_ref.data.load_dataset

    def poisoned(*a, **kw):
        ds = real(*a, **kw)
        x = ds.x_test.copy()
        x[3, 0, 0, 0] = np.nan
        return srigl_ref.data.Dataset(ds.name, ds.x_train, ds.y_train, x, ds.y_test,
                                      ds.n_classes)
    monkeypatch.setattr(srigl_ref.data, "load_dataset", poisoned)
    with pytest.raises(ValueError, match=r"dataset 'synthetic': x_test holds 1 NaN or "
                                         r"infinite value\(s\), must be finite"):
        Trainer(TrainConfig(**TINY), tmp_path, progress=None)


@pytest.fixture
def register_method():
    """``register_method(name, update, **kw)``: a method for one test, removed afterwards."""
    added = []

    def add(name, update, **kw):
        srigl_ref.train.register(name, **kw)(update)
        added.append(name)
    yield add
    for name in added:
        srigl_ref.train.REGISTRY.pop(name)


def test_a_method_is_one_registered_function(tmp_path, register_method):
    """A method registered from outside trains through the same loop as the built-ins:
    RigL re-registered under another name gives RigL's masks and metrics."""
    calls = []

    def rigl_again(layer, config):
        calls.append((layer.name, layer.grad.shape, layer.ablation))
        return srigl_ref.dst.rigl_update(layer.weight, layer.mask, layer.grad,
                                         drop_fraction=layer.drop_fraction,
                                         momentum=layer.momentum)
    register_method("rigl_again", rigl_again, needs_grad=True)
    t = CheckedTrainer(TrainConfig(method="rigl_again", **TINY), tmp_path / "again",
                       progress=None)
    t.run()
    assert t.update_steps_seen == [5, 10, 15, 20, 25]
    assert calls == [(n, shape, True) for _ in range(5)            # fc3 is dense under ERK
                     for n, shape in (("fc1.weight", (300, 784)), ("fc2.weight", (100, 300)))]
    Trainer(TrainConfig(method="rigl", **TINY), tmp_path / "rigl", progress=None).run()
    again = checkpoint.load_checkpoint(tmp_path / "again" / "model.npz")
    rigl = checkpoint.load_checkpoint(tmp_path / "rigl" / "model.npz")
    for name in rigl.masks:
        assert again.masks[name].tobytes() == rigl.masks[name].tobytes(), name
    assert strip_seconds(checkpoint.read_metrics(tmp_path / "again" / "metrics.jsonl")) == \
        strip_seconds(checkpoint.read_metrics(tmp_path / "rigl" / "metrics.jsonl"))


def test_observers_see_every_update(tmp_path):
    """An observer gets each update's inputs and results; the metrics record is built from
    the same event."""
    from srigl_ref.train.observers import update_record
    events = []
    t = Trainer(TrainConfig(**TINY), tmp_path, progress=None)
    t.observers.append(events.append)
    t.run()
    assert [e.step for e in events] == [5, 10, 15, 20, 25]
    updates = [r for r in checkpoint.read_metrics(tmp_path / "metrics.jsonl")
               if r["kind"] == "update"]
    assert [update_record(e) for e in events] == updates
    for before, after in zip(events, events[1:]):
        for (_, u), (layer, _) in zip(before.layers, after.layers):
            assert np.array_equal(layer.mask, u.mask)     # each update starts from the last
    for layer, u in events[-1].layers:
        assert np.array_equal(t.state.masks[layer.name], u.mask)


@pytest.mark.parametrize("old, dense, sparse", [("kaiming", "kaiming", "fan_in"),
                                                ("official", "kaiming", "official")])
def test_config_written_before_the_init_split_still_loads(old, dense, sparse):
    from dataclasses import asdict
    d = asdict(TrainConfig(model="lenet5", lr=0.1, warmup_epochs=0))
    d.pop("sparse_init")
    d["init"] = old
    cfg = TrainConfig.from_dict(d)
    assert (cfg.init, cfg.sparse_init, cfg.lr, cfg.warmup_epochs) == (dense, sparse, 0.1, 0)
