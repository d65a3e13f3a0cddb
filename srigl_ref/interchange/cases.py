"""One topology update of one layer as a file: the golden-vector schema (docs/interchange.md).

A *case* is an ``.npz`` of plain arrays (no pickle) holding the inputs of one SRigL, RigL or
SET update and, optionally, its outputs; ``tests/golden/srigl`` and ``tests/golden/rigl``
(from the authors' PyTorch code) are cases, training traces (``srigl-ref train --trace``)
are directories of cases written by :func:`write_case`, and ``srigl-ref replay`` reads them
with :func:`read_case`. Golden files have no ``method`` key: a file with ``gamma_sal`` is
SRigL, otherwise RigL. Our files add ``method``, ``tie_break`` and ``kept``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validate import (as_float_array, as_mask, check_choice, check_int, check_real,
                         check_sparsity, read_npz)
from ..checkpoint import atomic_write
from ..dst import TopologyUpdate, rigl_update, srigl_update
from ..dst.topology import ABLATION_BASES, TIE_BREAKS

METHODS = ("srigl", "rigl", "set")
DEFAULT_TIE_BREAK = "torch_cpu"       # files without tie_break come from the authors' code

# 0-d entries and their dtype ("str": a 0-d unicode string)
SCALARS = {
    "sparsity": "float64", "drop_fraction": "float64", "alpha": "float64",
    "gamma_sal": "float64", "step": "int64", "t_end": "int64", "seed": "int64",
    "ties": "bool", "dynamic_ablation": "bool", "use_sparse_const_fan_in_for_ablation": "bool",
    "ablation_exempt": "bool", "k_out": "int64", "threshold": "int64",
    "method": "str", "tie_break": "str", "meta": "str",
}
REQUIRED = {
    "srigl": ("weight", "mask", "grad", "drop_fraction", "sparsity", "gamma_sal",
              "dynamic_ablation", "use_sparse_const_fan_in_for_ablation", "ablation_exempt"),
    "rigl": ("weight", "mask", "grad", "drop_fraction"),
    "set": ("weight", "mask", "drop_fraction"),
}
OUTPUTS = ("mask_out", "weight_out", "momentum_out", "kept", "ablated", "k_out", "threshold")


@dataclass(frozen=True)
class Case:
    """A validated case file.

    Attributes
    ----------
    path : str
        Where it was read from (named in every message).
    method : {"srigl", "rigl", "set"}
        The ``method`` key, or inferred (``gamma_sal`` present: srigl, else rigl).
    arrays : dict of str to ndarray
        Every key of the file except ``meta``, as stored (see docs/interchange.md).
    meta : dict
        The ``meta`` JSON object (empty if absent).
    """
    path: str
    method: str
    arrays: dict
    meta: dict

    def has(self, key: str) -> bool:
        return key in self.arrays

    def item(self, key: str, default=None):
        """A 0-d entry as a Python scalar (``default`` if absent)."""
        return self.arrays[key].item() if key in self.arrays else default

    @property
    def tie_break(self) -> str:
        """The tie-break that produced the stored outputs (golden files: torch_cpu)."""
        return self.item("tie_break", DEFAULT_TIE_BREAK)

    @property
    def expected(self) -> dict:
        """The stored outputs (``mask_out``, ``weight_out``, ...), possibly empty."""
        return {k: self.arrays[k] for k in OUTPUTS if k in self.arrays}

    def update_kwargs(self, tie_break: str) -> dict:
        """Keyword arguments of ``srigl_update`` / ``rigl_update`` / ``set_update`` (minus
        ``weight``, ``mask``, ``grad`` and, for SET, ``rng``), as golden/README.md maps them.
        """
        a = self.arrays
        kw = dict(drop_fraction=self.item("drop_fraction"), grown_init=0.0,
                  momentum=a.get("momentum"))
        if self.method == "srigl":
            kw.update(sparsity=self.item("sparsity"), gamma_sal=self.item("gamma_sal"),
                      ablation=bool(a["dynamic_ablation"]) and not bool(a["ablation_exempt"]),
                      ablation_base=("sparse" if a["use_sparse_const_fan_in_for_ablation"]
                                     else "dense"))
        if self.method != "set":
            kw["tie_break"] = tie_break
        return kw


def read_case(path) -> Case:
    """Read and validate one case file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Case

    Raises
    ------
    ValueError
        One line naming the file and the key: missing or unreadable file, missing keys,
        wrong dtypes or shapes, bad ``meta`` JSON, unknown ``method`` or ``tie_break``.
    """
    path = Path(path)
    arrays = read_npz(path, what="case file")
    if "weight" not in arrays:
        raise ValueError(f"{path}: missing key 'weight' (required in every case)")
    for key, a in arrays.items():
        _check_key(path, key, a, arrays)
    meta = {}
    if "meta" in arrays:
        try:
            meta = json.loads(arrays.pop("meta").item())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: key 'meta' is not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: key 'meta' holds a JSON {type(meta).__name__}, must "
                             f"be an object")
    method = (arrays["method"].item() if "method" in arrays
              else "srigl" if "gamma_sal" in arrays else "rigl")
    if method not in METHODS:
        raise ValueError(f"{path}: key 'method' == {method!r}, must be one of "
                         f"{', '.join(METHODS)}")
    how = "" if "method" in arrays else (", inferred: no 'method' key, " +
                                         ("'gamma_sal' present" if method == "srigl"
                                          else "no 'gamma_sal'"))
    for key in REQUIRED[method]:
        if key not in arrays:
            raise ValueError(f"{path}: missing key {key!r} (required for a {method} "
                             f"case{how})")
    if "tie_break" in arrays and arrays["tie_break"].item() not in TIE_BREAKS:
        raise ValueError(f"{path}: key 'tie_break' == {arrays['tie_break'].item()!r}, must be "
                         f"one of {', '.join(TIE_BREAKS)}")
    if "momentum_out" in arrays and "momentum" not in arrays:
        raise ValueError(f"{path}: key 'momentum_out' is present but 'momentum' is missing")
    if "mask_out" in arrays and "weight_out" not in arrays:
        raise ValueError(f"{path}: missing key 'weight_out' (mask_out is present, so the "
                         f"outputs of a {method} case are expected)")
    return Case(str(path), method, arrays, meta)


def _check_key(path, key, a, arrays) -> None:
    """dtype and shape of one stored array; ValueError naming the file and key."""
    def bad(want):
        raise ValueError(f"{path}: key {key!r} has dtype {a.dtype} and shape {a.shape}, must "
                         f"be {want}")
    if key == "weight":
        if a.dtype not in (np.float32, np.float64) or a.ndim < 2 or a.size == 0:
            bad("float32 or float64 with ndim >= 2 ([out, in] or [out, C_in, kh, kw])")
        return
    shape, wdt = arrays["weight"].shape, arrays["weight"].dtype
    if key in ("mask", "mask_out", "kept"):
        if a.dtype != np.bool_ or a.shape != shape:
            bad(f"bool of shape {shape} (the weight's)")
    elif key in ("grad", "momentum", "weight_out", "momentum_out"):
        if a.dtype != wdt or a.shape != shape:
            bad(f"{wdt} of shape {shape} (the weight's)")
    elif key == "ablated":
        if a.dtype != np.int64 or a.ndim != 1:
            bad("int64 of shape (n_ablated,)")
    elif key in SCALARS:
        kind = SCALARS[key]
        ok = a.dtype.kind == "U" if kind == "str" else a.dtype == np.dtype(kind)
        if not ok or a.ndim != 0:
            bad(f"{'a unicode string' if kind == 'str' else kind} of shape () (0-d)")
    # other keys are carried along unchecked (forward compatibility)


def _output_arrays(method: str, update: TopologyUpdate) -> dict:
    out = {"mask_out": update.mask, "weight_out": update.weight, "kept": update.kept}
    if update.momentum is not None:
        out["momentum_out"] = update.momentum
    if method == "srigl":
        out.update(ablated=np.asarray(update.ablated, np.int64),
                   k_out=np.int64(update.fan_in), threshold=np.int64(update.threshold))
    return out


def _save(path: Path, arrays: dict, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(arrays, meta=np.array(json.dumps(meta, sort_keys=True)))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def trace_path(directory, step: int, layer_name: str) -> Path:
    """``directory/step_{step:07d}/{layer_name}.npz``: where a trace keeps one update."""
    return Path(directory) / f"step_{int(step):07d}" / f"{layer_name}.npz"


def write_case(path, *, method, weight, mask, grad, momentum, sparsity, drop_fraction, step,
               t_end, alpha, gamma_sal, ablation, ablation_base, tie_break, result,
               meta) -> None:
    """Write one layer's topology update (inputs and ``result``) as a case file.

    Called by the trainer for every topology update and sparse layer of a trace, with
    ``path = trace_path(DIR, step, layer_name)``. Writes atomically, creating folders.

    Parameters
    ----------
    path : str or Path
    method : {"srigl", "rigl", "set"}
    weight : ndarray of shape (out, in) or (out, C_in, kh, kw), float32 or float64
        The weights the update saw (post-step, zero outside ``mask``).
    mask : ndarray, bool, shape of ``weight``
        The mask before the update.
    grad : ndarray, dtype and shape of ``weight``, or None
        The dense gradient used for scoring (None only for SET).
    momentum : ndarray, dtype and shape of ``weight``, or None
        The SGD momentum buffer before the update.
    sparsity : float in [0, 1)
        The layer's sparsity ``S``.
    drop_fraction : float in [0, 1]
        As passed to the update.
    step, t_end : int >= 0
        Optimizer step of the update and the end of updates (docs/algorithm.md §5).
    alpha : float in [0, 1]
    gamma_sal : float >= 0
        Stored for SRigL only (as ``gamma_sal``).
    ablation : bool
        Whether ablation ran for this layer (``dynamic_ablation and not exempt``); stored
        as ``dynamic_ablation`` with ``ablation_exempt = False`` (SRigL only).
    ablation_base : {"sparse", "dense"}
        Stored as ``use_sparse_const_fan_in_for_ablation`` (SRigL only).
    tie_break : {"stable", "torch_cpu"}
        The mode the update ran with (SET: stored, unused).
    result : TopologyUpdate
        What the update returned; its fields become the outputs.
    meta : dict
        JSON-serialisable; should hold ``layer_index`` (position of the layer in the
        model's sparse layers: a trace replays in (step, layer_index) order) and ``name``.

    Notes
    -----
    ``ties`` is computed here: for SRigL/RigL the update is run again with the other
    tie-break; True if the outcome (mask, ablated neurons) differs, i.e. a tie decided
    part of it. False for SET. Inputs are not modified.
    """
    check_choice("method", method, METHODS)
    w = as_float_array("weight", weight, ndim=None)
    m = as_mask("mask", mask, shape=w.shape)
    g = None if grad is None else as_float_array("grad", grad, shape=w.shape)
    mom = None if momentum is None else as_float_array("momentum", momentum, shape=w.shape)
    if g is None and method != "set":
        raise TypeError(f"grad must be a numpy.ndarray for method {method!r}, got NoneType")
    for name, a in (("grad", g), ("momentum", mom)):
        if a is not None and a.dtype != w.dtype:
            raise TypeError(f"{name}.dtype == {a.dtype}, must equal weight.dtype ({w.dtype})")
    if not isinstance(result, TopologyUpdate):
        raise TypeError(f"result must be a TopologyUpdate, got {type(result).__name__}")
    if result.mask.shape != w.shape:
        raise ValueError(f"result.mask.shape == {result.mask.shape}, must be {w.shape}")
    if not isinstance(ablation, (bool, np.bool_)):
        raise TypeError(f"ablation == {ablation!r}, must be a bool")
    check_choice("ablation_base", ablation_base, ABLATION_BASES)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        json.dumps(meta)
    except TypeError as e:
        raise TypeError(f"meta must be JSON-serialisable ({e})") from None
    arrays = {
        "method": np.array(method), "tie_break": np.array(tie_break),
        "weight": w, "mask": m,
        "sparsity": np.float64(check_sparsity("sparsity", sparsity)),
        "drop_fraction": np.float64(check_real("drop_fraction", drop_fraction, low=0.0,
                                               high=1.0)),
        "step": np.int64(check_int("step", step, low=0)),
        "t_end": np.int64(check_int("t_end", t_end, low=0)),
        "alpha": np.float64(check_real("alpha", alpha, low=0.0, high=1.0)),
    }
    if g is not None:
        arrays["grad"] = g
    if mom is not None:
        arrays["momentum"] = mom
    if method == "srigl":
        arrays.update(gamma_sal=np.float64(check_real("gamma_sal", gamma_sal, low=0.0)),
                      dynamic_ablation=np.bool_(ablation),
                      use_sparse_const_fan_in_for_ablation=np.bool_(ablation_base == "sparse"),
                      ablation_exempt=np.bool_(False))
    case = Case(str(path), method, arrays, dict(meta))
    arrays["ties"] = np.bool_(_tie_decided(case, result, tie_break))
    arrays.update(_output_arrays(method, result))
    _save(Path(path), arrays, dict(meta))


def _tie_decided(case: Case, result: TopologyUpdate, tie_break: str) -> bool:
    """Whether the other tie-break gives another outcome (mask or ablated neurons)."""
    if case.method == "set":
        return False
    other = TIE_BREAKS[1 - TIE_BREAKS.index(tie_break)]
    a = case.arrays
    update = srigl_update if case.method == "srigl" else rigl_update
    try:
        alt = update(a["weight"], a["mask"], a["grad"], **case.update_kwargs(other))
    except ValueError:                # e.g. another ablated set whose budget cannot fit
        return True
    return not (np.array_equal(alt.mask, result.mask)
                and np.array_equal(alt.ablated, result.ablated))


def write_result(path, case: Case, update: TopologyUpdate, *, tie_break: str) -> None:
    """Write ``case``'s inputs with ``update`` as its outputs (the same schema).

    Parameters
    ----------
    path : str or Path
    case : Case
        Inputs (and extra keys) are copied; stored outputs are replaced.
    update : TopologyUpdate
        Our result for ``case``.
    tie_break : str
        Stored as ``tie_break`` (with ``method``).
    """
    arrays = {k: v for k, v in case.arrays.items() if k not in OUTPUTS}
    arrays.update(method=np.array(case.method), tie_break=np.array(tie_break))
    arrays.update(_output_arrays(case.method, update))
    _save(Path(path), arrays, case.meta)
