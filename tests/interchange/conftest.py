"""Shared builders: synthetic layers, a small trained-like model.npz."""
import numpy as np
import pytest

import srigl_ref
from srigl_ref import checkpoint

FIXTURES = __import__("pathlib").Path(__file__).resolve().parent / "fixtures"


def make_layer(rng, shape, sparsity, *, dead_rows=(), dtype=np.float32):
    """Post-step ``(weight, mask, grad, momentum)`` of a constant fan-in layer.

    ``dead_rows`` get tiny weights and gradients, so that ablation has work to do.
    """
    k = srigl_ref.constant_fan_in(shape, sparsity)
    mask = srigl_ref.random_fan_in_mask(shape, k, rng)
    scale = np.ones((shape[0],) + (1,) * (len(shape) - 1))
    scale[list(dead_rows)] = 1e-3
    weight = (rng.standard_normal(shape) * scale * mask).astype(dtype)
    grad = (rng.standard_normal(shape) * scale).astype(dtype)
    momentum = (rng.standard_normal(shape) * mask).astype(dtype)
    return weight, mask, grad, momentum


@pytest.fixture
def model_npz(tmp_path, rng):
    """A ``model.npz`` as the trainer writes it: two sparse Linear layers, one ablated row."""
    shapes = {"fc1.weight": (6, 10), "fc2.weight": (3, 6)}
    params, masks = {}, {}
    for name, shape in shapes.items():
        mask = srigl_ref.random_fan_in_mask(shape, 4, rng)
        params[name] = (rng.standard_normal(shape) * mask).astype(np.float32)
        params[name.replace("weight", "bias")] = rng.standard_normal(shape[0]).astype(
            np.float32)
        masks[name] = mask
    masks["fc1.weight"][4] = False
    params["fc1.weight"][4] = 0.0
    meta = {"config": {"model": "mlp"}, "step": 10, "epoch": 1,
            "sparse_names": list(shapes), "sparsities": [0.6, 0.33]}
    ckpt = checkpoint.Checkpoint(params, masks, {n: np.zeros_like(p) for n, p in params.items()},
                                 {n: m.copy() for n, m in masks.items()}, meta)
    path = tmp_path / "run" / "model.npz"
    path.parent.mkdir()
    checkpoint.save_checkpoint(path, ckpt)
    return path
