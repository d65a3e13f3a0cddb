"""Export a trained ``model.npz`` for PyTorch users: safetensors or a prune-named npz.

Both formats hold the same tensors, named as ``torch.nn.utils.prune`` names them, so that
a PyTorch model whose sparse layers were prepared with ``prune.identity(module, "weight")``
loads them with ``load_state_dict`` (docs/interchange.md has the snippet):

- every sparse-able weight ``<m>.weight`` (``model.npz`` ``mask/`` entries) becomes
  ``<m>.weight_orig`` (float32, zero outside the mask) and ``<m>.weight_mask`` (float32
  0/1, the dtype ``prune`` uses);
- every other parameter (biases, dense weights) keeps its name.

The safetensors file also carries ``__metadata__``: ``format: pt``, ``srigl_ref.sparse_names``
and ``srigl_ref.config`` (JSON strings). The npz holds the tensors only, so that
``{k: torch.from_numpy(v) for k, v in np.load(f).items()}`` is a complete state dict.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._validate import check_choice
from ..checkpoint import Checkpoint, atomic_write, load_checkpoint, run_file
from .safetensors import write_safetensors

FORMATS = ("safetensors", "pt-compatible-npz")
DEFAULT_NAMES = {"safetensors": "model.safetensors", "pt-compatible-npz": "model_pt.npz"}


def pt_state_dict(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    """The checkpoint's parameters under ``torch.nn.utils.prune`` names (module docstring).

    Parameters
    ----------
    ckpt : Checkpoint

    Returns
    -------
    dict of str to ndarray
        In parameter order; new arrays (the checkpoint is not modified).
    """
    state = {}
    for name, p in ckpt.params.items():
        if name in ckpt.masks:
            mask = ckpt.masks[name]
            state[f"{name}_orig"] = (p * mask).astype(p.dtype)
            state[f"{name}_mask"] = mask.astype(p.dtype)
        else:
            state[name] = p.copy()
    return state


def export_model(source, out=None, *, format: str) -> Path:
    """Write a trained model for PyTorch.

    Parameters
    ----------
    source : str or Path
        A run folder holding ``model.npz``, or the ``model.npz`` itself.
    out : str or Path, optional
        Output file (default: ``model.safetensors`` / ``model_pt.npz`` beside
        ``model.npz``).
    format : {"safetensors", "pt-compatible-npz"}

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        Unknown format; no or invalid ``model.npz`` (naming the file).
    """
    check_choice("format", format, FORMATS)
    model = run_file(source, "model.npz")
    ckpt = load_checkpoint(model)
    out = Path(out) if out is not None else model.parent / DEFAULT_NAMES[format]
    state = pt_state_dict(ckpt)
    if format == "safetensors":
        write_safetensors(out, state, {
            "format": "pt", "srigl_ref.sparse_names": json.dumps(ckpt.meta["sparse_names"]),
            "srigl_ref.config": json.dumps(ckpt.config)})
    else:
        atomic_write(out, lambda f: np.savez(f, **state))
    return out
