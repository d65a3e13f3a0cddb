"""What the trainer hands to each topology update, and what it records about it.

Every update is checked, not just the first: the dense gradient passed is the mean of
exactly that update's ``grad_accumulation_n`` records, and each per-layer count written to
``metrics.jsonl`` is recomputed from the masks before and after the update.
"""
import numpy as np
import pytest

import srigl_ref
from srigl_ref import checkpoint
from srigl_ref.train import TrainConfig, Trainer

# 384 synthetic examples, batch 32: 12 steps an epoch; delta 5 gives updates at 5, ..., 25
TINY = dict(dataset="synthetic", n_train=384, batch_size=32, epochs=3, delta=5, lr=0.05)
UPDATE_STEPS = [5, 10, 15, 20, 25]


def spy_srigl_update(monkeypatch):
    """Replace ``srigl_ref.dst.srigl_update`` by a wrapper; returns its list of calls.

    Each call is a dict: ``mask`` (before), ``grad`` (as passed), ``result``.
    """
    calls = []
    update = srigl_ref.dst.srigl_update

    def spy(weight, mask, grad, **kw):
        result = update(weight, mask, grad, **kw)
        calls.append({"mask": mask.copy(), "grad": grad.copy(), "result": result})
        return result
    monkeypatch.setattr(srigl_ref.dst, "srigl_update", spy)
    return calls


@pytest.mark.parametrize("n_acc", [1, 3])
def test_every_update_gets_the_mean_of_its_own_records(tmp_path, monkeypatch, n_acc):
    """Update j gets the mean of the n dense gradients recorded since update j - 1, and the
    accumulator is empty after every update (stale records would leak into the next one)."""
    t = Trainer(TrainConfig(grad_accumulation_n=n_acc, **TINY), tmp_path, progress=None)
    shapes = {t.model.params[n].shape: n for n in t.model.sparse_names}
    assert len(shapes) == len(t.model.sparse_names)          # a call's shape names its layer
    records = []                                   # per recorded step: {name: dense grad}
    record = t._record_dense_grad
    t._record_dense_grad = lambda g: (records.append({n: g[n].copy() for n in shapes.values()
                                                      if n in g}), record(g))
    calls = spy_srigl_update(monkeypatch)
    leftovers = []                                 # accumulator state after each update
    topology_update = t.topology_update

    def update_then_look():
        out = topology_update()
        leftovers.append((t.state.n_dense_grad, sorted(t.state.dense_grad)))
        return out
    t.topology_update = update_then_look
    t.run()

    assert len(records) == n_acc * len(UPDATE_STEPS)
    assert leftovers == [(0, [])] * len(UPDATE_STEPS)
    n_layers = len(calls) // len(UPDATE_STEPS)
    assert n_layers >= 2 and len(calls) == n_layers * len(UPDATE_STEPS)
    for j in range(len(UPDATE_STEPS)):
        own = records[j * n_acc:(j + 1) * n_acc]
        for call in calls[j * n_layers:(j + 1) * n_layers]:
            name = shapes[call["grad"].shape]
            want = sum(r[name] for r in own) / n_acc
            np.testing.assert_allclose(call["grad"], want, rtol=1e-6, atol=1e-12,
                                       err_msg=f"update {j}, {name}")


def rows_active(mask):
    """bool [out]: rows with any active position."""
    return mask.reshape(mask.shape[0], -1).any(axis=1)


def recount(old, u):
    """The per-layer counts of one update, from the masks before and after it."""
    new = u.mask
    fan_ins = np.unique(new.reshape(new.shape[0], -1).sum(1)[rows_active(new)])
    assert fan_ins.size == 1                                      # constant fan-in
    return {"n_pruned": int((old & ~new).sum()),
            "n_grown": int((new & ~old & ~u.kept).sum()),
            "n_ablated": int((~rows_active(new)).sum()),
            "n_revived": int((rows_active(new) & ~rows_active(old)).sum()),
            "fan_in": int(fan_ins[0])}


def test_update_metrics_recount_from_the_masks(tmp_path, monkeypatch):
    """A run with ablation (density 0.02, gamma_sal 0.5) and a revived neuron: each
    update's recorded pruned, grown, ablated, revived and k per layer equal the recount."""
    calls = spy_srigl_update(monkeypatch)
    t = Trainer(TrainConfig(density=0.02, gamma_sal=0.5, **TINY), tmp_path, progress=None)
    t.run()
    updates = [r for r in checkpoint.read_metrics(tmp_path / "metrics.jsonl")
               if r["kind"] == "update"]
    assert [r["step"] for r in updates] == UPDATE_STEPS
    recorded = [layer for r in updates for layer in r["layers"]]
    assert len(recorded) == len(calls)
    masks = {}                                # the layer's mask as the last update left it
    for layer, call in zip(recorded, calls):
        name, u = layer["name"], call["result"]
        if name in masks:
            np.testing.assert_array_equal(call["mask"], masks[name])
        masks[name] = u.mask
        want = recount(call["mask"], u)
        assert {key: layer[key] for key in want} == want, name
        assert layer["threshold"] == u.threshold
    final = checkpoint.load_checkpoint(tmp_path / "model.npz").masks
    for name, mask in masks.items():
        np.testing.assert_array_equal(final[name], mask)
    totals = {key: sum(layer[key] for layer in recorded) for key in ("n_ablated", "n_revived")}
    assert totals["n_ablated"] > 0 and totals["n_revived"] > 0     # the run exercises both
