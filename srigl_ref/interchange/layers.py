"""The sparse layers of a checkpoint file, whatever its format and mask convention.

Formats: our ``model.npz`` (srigl_ref/checkpoint.py), any other ``.npz`` of named arrays
(e.g. the ``pt-compatible-npz`` export), ``torch.save`` zip files (``.pt``, ``.pth``,
``.tar``; read by :mod:`.torch_pickle`) and ``.safetensors``.

Mask conventions, looked for in this order in a state dict (names in order of the file):

``prune``
    ``<m>.<p>_orig`` + ``<m>.<p>_mask`` (``torch.nn.utils.prune``; the mask is a 0/1 float
    tensor), the layer ``<m>.<p>`` with weight ``orig * mask``.
``parametrize``
    ``<m>.parametrizations.<p>.original`` + ``<m>.parametrizations.<p>.<i>.mask`` (a masking
    module registered with ``torch.nn.utils.parametrize`` that keeps a ``mask`` buffer).
``scheduler``
    A list of masks in module order, as the authors' ``RigLScheduler.state_dict()`` keeps
    them under ``backward_masks`` (``None`` for dense layers): found anywhere in the saved
    object, paired in order with the state dict's remaining ``*.weight`` tensors of ndim
    >= 2 (the Conv2d/Linear weights ``get_W`` collects for MLPs and CNNs).
``nonzero``
    Any other ``*.weight`` (or ``weight``) tensor of ndim >= 2: the mask is ``weight != 0``
    (a grown weight can be exactly 0, so this can undercount; said in the report).
``srigl-ref``
    Our ``model.npz``: ``param/<name>`` with ``mask/<name>`` for every sparse-able weight.

The state dict is the saved object itself if it holds tensors, else its entry
``state_dict``, ``model_state_dict`` or ``model`` (the authors' checkpoints keep the model
under ``model`` and the scheduler under ``pruner``).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint
from .._validate import read_npz
from .safetensors import read_safetensors
from .torch_pickle import load_torch

STATE_KEYS = ("state_dict", "model_state_dict", "model")
_PARAMETRIZED = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.original$")


@dataclass(frozen=True)
class SparseLayer:
    """One weight with its mask.

    Attributes
    ----------
    name : str
        The weight's name, e.g. ``fc1.weight`` (``<m>.<p>`` for prune/parametrize keys).
    weight : ndarray of shape (out, ...), float
        The effective weight (``orig * mask`` for prune).
    mask : ndarray, bool, shape of ``weight``
    convention : str
        Where the mask came from: ``srigl-ref``, ``prune``, ``parametrize``, ``scheduler``
        (``scheduler (dense)`` for a ``None`` entry: all True) or ``nonzero``.
    """
    name: str
    weight: np.ndarray
    mask: np.ndarray
    convention: str


def load_layers(path) -> tuple[str, list[SparseLayer]]:
    """Read a checkpoint file and return its format and sparse layers (ndim >= 2).

    Parameters
    ----------
    path : str or Path
        ``model.npz``, another ``.npz``, a ``torch.save`` file or ``.safetensors``.

    Returns
    -------
    format : str
        ``"srigl-ref model.npz"``, ``"npz"``, ``"torch"`` or ``"safetensors"``.
    layers : list of SparseLayer
        In file order.

    Raises
    ------
    ValueError
        Unreadable file, unsafe pickle, no state dict, inconsistent masks (naming the file).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors, _ = read_safetensors(path)
        return "safetensors", state_dict_layers(tensors, path=path)
    if _is_npz(path):
        arrays = read_npz(path)
        if "meta" not in arrays:
            return "npz", state_dict_layers(arrays, path=path)
        ckpt = load_checkpoint(path)
        return "srigl-ref model.npz", [SparseLayer(n, ckpt.params[n], ckpt.masks[n], "srigl-ref")
                                       for n in ckpt.meta["sparse_names"]]
    obj = load_torch(path)
    state, masks = find_state(obj, path=path)
    return "torch", state_dict_layers(state, path=path, masks=masks)


def _is_npz(path: Path) -> bool:
    """A zip of ``.npy`` entries (a torch.save zip holds ``<prefix>/data.pkl`` instead)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def find_state(obj, *, path) -> tuple[dict, list | None]:
    """The state dict in a loaded ``torch.save`` object, and a scheduler mask list if any.

    Returns
    -------
    state : dict of str to ndarray
        The tensors of the first of ``obj``, ``obj[k] for k in STATE_KEYS`` that holds any.
    masks : list of (ndarray or None), or None
        The first ``backward_masks`` list found anywhere in ``obj`` (depth first).
    """
    candidates = [obj] + [obj[k] for k in STATE_KEYS if isinstance(obj, dict) and k in obj]
    for c in candidates:
        if isinstance(c, dict) and any(isinstance(v, np.ndarray) for v in c.values()):
            state = {k: v for k, v in c.items() if isinstance(v, np.ndarray)}
            break
    else:
        raise ValueError(f"{path}: no state dict: expected a dict of tensors at the top level "
                         f"or under one of {', '.join(repr(k) for k in STATE_KEYS)}")
    return state, _find_masks(obj)


def _find_masks(obj, depth=0):
    if depth > 8:
        return None
    if isinstance(obj, dict):
        masks = obj.get("backward_masks")
        if isinstance(masks, (list, tuple)) and all(m is None or isinstance(m, np.ndarray)
                                                    for m in masks):
            return list(masks)
        for v in obj.values():
            found = _find_masks(v, depth + 1)
            if found is not None:
                return found
    return None


def state_dict_layers(state: dict, *, path, masks: list | None = None) -> list[SparseLayer]:
    """Sparse layers of a flat state dict (module docstring: conventions and their order).

    Parameters
    ----------
    state : dict of str to ndarray
    path : str or Path
        Named in error messages.
    masks : list of (ndarray or None), optional
        Scheduler masks in module order.

    Returns
    -------
    list of SparseLayer
        Weights of ndim >= 2, in the order of ``state``.
    """
    layers, used = [], set()
    for key, a in state.items():
        if key.endswith("_orig") and key[:-5] + "_mask" in state:
            name = key[:-5]
            used |= {key, name + "_mask"}
            if a.ndim >= 2:
                mask = _bool_mask(path, name + "_mask", state[name + "_mask"], a.shape)
                layers.append((key, SparseLayer(name, a * mask, mask, "prune")))
            continue
        match = _PARAMETRIZED.match(key)
        if match:
            module, param = match.groups()
            prefix = f"{module}.parametrizations.{param}." if module else \
                f"parametrizations.{param}."
            mask_keys = [k for k in state if re.fullmatch(re.escape(prefix) + r"\d+\.mask", k)]
            used.add(key)
            if a.ndim >= 2:
                name = f"{module}.{param}" if module else param
                if mask_keys:
                    used.add(mask_keys[0])
                    mask = _bool_mask(path, mask_keys[0], state[mask_keys[0]], a.shape)
                    layers.append((key, SparseLayer(name, a * mask, mask, "parametrize")))
                else:
                    layers.append((key, SparseLayer(name, a, a != 0, "nonzero")))
    plain = [k for k, a in state.items() if k not in used and a.ndim >= 2
             and (k == "weight" or k.endswith(".weight"))]
    if masks is not None:
        layers += _pair_scheduler_masks(path, state, plain, masks)
    else:
        layers += [(k, SparseLayer(k, state[k], state[k] != 0, "nonzero")) for k in plain]
    order = {k: i for i, k in enumerate(state)}
    return [layer for _, layer in sorted(layers, key=lambda kl: order[kl[0]])]


def _pair_scheduler_masks(path, state, plain, masks):
    if len(masks) != len(plain):
        raise ValueError(f"{path}: the scheduler's backward_masks has {len(masks)} entries, "
                         f"but the state dict has {len(plain)} weights of ndim >= 2 "
                         f"({', '.join(plain[:6])}{'...' if len(plain) > 6 else ''}); "
                         f"cannot pair them in module order")
    out = []
    for i, (key, m) in enumerate(zip(plain, masks)):
        w = state[key]
        if m is None:
            out.append((key, SparseLayer(key, w, np.ones(w.shape, np.bool_),
                                         "scheduler (dense)")))
        else:
            mask = _bool_mask(path, f"backward_masks[{i}]", m, w.shape)
            out.append((key, SparseLayer(key, w * mask, mask, "scheduler")))
    return out


def _bool_mask(path, key: str, m: np.ndarray, shape) -> np.ndarray:
    """A mask stored as bool or as 0/1 numbers, checked against its weight's shape."""
    if m.shape != tuple(shape):
        raise ValueError(f"{path}: mask {key!r} has shape {m.shape}, must be {tuple(shape)} "
                         f"(its weight's)")
    if m.dtype == np.bool_:
        return m
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"{path}: mask {key!r} has values other than 0 and 1 (dtype "
                         f"{m.dtype}), must be a 0/1 or bool mask")
    return m != 0
