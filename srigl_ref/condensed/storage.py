"""Condensed models to and from files, and the masked model of a training checkpoint.

``condensed.npz`` (format version 1) holds plain arrays (loadable with
``allow_pickle=False``): per weighted op ``i``, ``i/values``, ``i/indices``,
``i/active_rows``, ``i/bias`` (condensed form) or ``i/weight``, ``i/bias``,
``i/active_rows`` (dense form), optionally ``i/bias_map``; ``out/index`` and ``out/const``
when the last layer lost rows; and ``meta``, a JSON string: format, name, input shape,
classes, conv strategy, the ops in order and the per-layer report. ``load_condensed``
validates all of it.

Writing a file atomically is the caller's job (``srigl_ref.checkpoint.atomic_write(path,
cmodel.write)``, as the CLI does): ``condensed/`` may not import ``checkpoint``
(``tests/test_layering.py``); a checkpoint comes in already loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._validate import check_choice, read_npz
from ..nn.models import Model, build_model
from .format import CondensedLinear
from .model import (CONV_STRATEGIES, DEFAULT_CONV, CondensedModel, LayerReport, _FlattenOp,
                    _GapOp, _LinearOp, _MaxPoolOp, _ReluOp, condense_model)

FORMAT = "srigl-ref condensed model"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- condensed.npz

def to_arrays(cmodel: CondensedModel) -> dict[str, np.ndarray]:
    """Plain arrays (``allow_pickle=False``-safe) and a JSON ``meta`` string entry."""
    arrays, ops = {}, []
    for i, op in enumerate(cmodel.ops):
        if isinstance(op, _LinearOp):
            d = {"kind": "conv" if op.conv else "linear", "name": op.name,
                 "relu": op.relu, "form": "dense" if op.dense else "condensed",
                 "out_features": op.out_features}
            if op.conv:
                d["kernel_size"], d["stride"], d["padding"] = op.conv
            if op.dense:
                arrays[f"{i}/weight"], arrays[f"{i}/bias"] = op.weight, op.bias
                arrays[f"{i}/active_rows"] = op.active_rows
            else:
                lay = op.layer
                d["shape"] = list(lay.shape)
                for key in ("values", "indices", "active_rows", "bias"):
                    arrays[f"{i}/{key}"] = getattr(lay, key)
            if op.bias_map is not None:
                arrays[f"{i}/bias_map"] = op.bias_map
        elif isinstance(op, _MaxPoolOp):
            d = {"kind": "maxpool", "kernel_size": op.kernel_size, "stride": op.stride}
        else:
            d = {"kind": op.name}
        ops.append(d)
    if cmodel.out_index is not None:
        arrays["out/index"], arrays["out/const"] = cmodel.out_index, cmodel.out_const
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": cmodel.name,
            "input_shape": list(cmodel.input_shape), "n_classes": cmodel.n_classes,
            "conv": cmodel.conv, "ops": ops, "report": [r.to_dict() for r in cmodel.report]}
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


def write_condensed(cmodel: CondensedModel, file) -> None:
    """Write ``to_arrays(cmodel)`` as an ``.npz`` to a binary file object (or path).

    For an atomic file: ``srigl_ref.checkpoint.atomic_write(path, cmodel.write)``.
    """
    np.savez(file, **to_arrays(cmodel))


def from_arrays(arrays, *, source: str = "arrays") -> CondensedModel:
    """Rebuild and validate a model from ``to_arrays`` output.

    Raises
    ------
    ValueError
        ``"{source}: ..."`` naming the missing / malformed entry.
    """
    try:
        return _from_arrays(dict(arrays))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        msg = f"missing entry or meta key {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{source}: {msg}") from None


def load_condensed(path) -> CondensedModel:
    """Read and validate ``condensed.npz``.

    Raises
    ------
    ValueError
        naming the file and the problem (missing file, not an npz, bad meta, missing or
        malformed arrays, shapes that do not chain).
    """
    path = Path(path)
    arrays = read_npz(path, what="condensed model file")
    return from_arrays(arrays, source=str(path))


def _array(arrays, key, dtype_kind, ndim):
    a = arrays[key]
    if not isinstance(a, np.ndarray) or a.dtype.kind not in dtype_kind or a.ndim != ndim:
        raise ValueError(f"entry {key!r} is {getattr(a, 'dtype', type(a).__name__)} with "
                         f"shape {getattr(a, 'shape', None)}, must be a {ndim}-d "
                         f"{'float' if dtype_kind == 'f' else 'integer'} array")
    return a


def _finite(key, a):
    if not np.isfinite(a).all():
        raise ValueError(f"entry {key!r} has non-finite values, must be finite")
    return a


def _from_arrays(arrays) -> CondensedModel:
    if "meta" not in arrays:
        raise ValueError("no 'meta' entry; not a srigl-ref condensed.npz")
    try:
        meta = json.loads(arrays["meta"].item())
    except (json.JSONDecodeError, ValueError, AttributeError) as e:
        raise ValueError(f"'meta' is not valid JSON ({e})") from None
    got = meta.get("format") if isinstance(meta, dict) else meta
    if got != FORMAT:
        raise ValueError(f"meta format is {got!r}, must be {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format_version == {meta.get('format_version')!r}, must be "
                         f"{FORMAT_VERSION}")
    ops = []
    for i, d in enumerate(meta["ops"]):
        kind = d["kind"]
        if kind in ("linear", "conv"):
            conv = ((int(d["kernel_size"]), int(d["stride"]), int(d["padding"]))
                    if kind == "conv" else None)
            bias_map = (_finite(f"{i}/bias_map", _array(arrays, f"{i}/bias_map", "f", 2)
                                .astype(np.float32)) if f"{i}/bias_map" in arrays else None)
            if d["form"] == "dense":
                weight = _finite(f"{i}/weight", _array(arrays, f"{i}/weight", "f",
                                                       4 if conv else 2).astype(np.float32))
                bias = _finite(f"{i}/bias", _array(arrays, f"{i}/bias", "f", 1)
                               .astype(np.float32))
                rows = _array(arrays, f"{i}/active_rows", "iu", 1).astype(np.int64)
                out = int(d["out_features"])
                if bias.shape != weight.shape[:1] or rows.shape != weight.shape[:1] or (
                        rows.size and (rows.min() < 0 or rows.max() >= out
                                       or (np.diff(rows) <= 0).any())):
                    raise ValueError(f"op {i} ({d['name']}): weight {weight.shape}, bias "
                                     f"{bias.shape}, active_rows {rows.shape} disagree or "
                                     f"active_rows not ascending in [0, {out})")
                op = _LinearOp(d["name"], relu=d["relu"], weight=np.ascontiguousarray(weight),
                               bias=bias, active_rows=rows, out_features=out, conv=conv,
                               bias_map=bias_map)
            elif d["form"] == "condensed":
                parts = {key: arrays[f"{i}/{key}"]
                         for key in ("values", "indices", "active_rows", "bias")}
                try:
                    layer = CondensedLinear(shape=tuple(d["shape"]), **parts)
                    layer.check()
                except (ValueError, TypeError) as e:
                    raise ValueError(f"op {i} ({d['name']}): {e}") from None
                if len(layer.shape) != (4 if conv else 2):
                    raise ValueError(f"op {i} ({d['name']}): shape {layer.shape} does not "
                                     f"fit a {kind} layer")
                op = _LinearOp(d["name"], relu=d["relu"], layer=layer, conv=conv,
                               bias_map=bias_map)
            else:
                raise ValueError(f"op {i}: form {d['form']!r}, must be 'dense' or 'condensed'")
        elif kind == "maxpool":
            op = _MaxPoolOp(d["kernel_size"], d["stride"])
        elif kind in ("relu", "gap", "flatten"):
            op = {"relu": _ReluOp, "gap": _GapOp, "flatten": _FlattenOp}[kind]()
        else:
            raise ValueError(f"op {i}: unknown kind {kind!r}")
        ops.append(op)
    out_index = out_const = None
    if "out/index" in arrays:
        out_index = _array(arrays, "out/index", "iu", 1).astype(np.int64)
        out_const = _finite("out/const", _array(arrays, "out/const", "f", 1)
                            .astype(np.float32))
    report = [LayerReport(**dict(r, shape=tuple(r["shape"]))) for r in meta["report"]]
    return CondensedModel(meta["name"], meta["input_shape"], meta["n_classes"], ops, report,
                          conv=check_choice("conv", meta["conv"], CONV_STRATEGIES),
                          out_index=out_index, out_const=out_const)


# ----------------------------------------------------------------------------- checkpoints

def model_from_checkpoint(ckpt, input_shape=None) -> Model:
    """The masked dense ``Model`` of a loaded checkpoint.

    The model is rebuilt from the architecture the trainer stored in the checkpoint's
    ``meta["architecture"]`` (model name, its keyword arguments, input shape, classes).
    Checkpoints written before it was stored lack it: their architecture is read off the
    weight shapes instead (mlp hidden widths, cnn channels and hidden width; the classes
    from the last bias), which needs ``input_shape``.

    Parameters
    ----------
    ckpt : srigl_ref.checkpoint.Checkpoint
        (or any object with ``params`` (dict of arrays, model order), ``config`` (dict
        with ``"model"``) and optionally ``meta``), e.g. ``load_checkpoint("DIR/model.npz")``.
    input_shape : tuple of int or None
        Per-example input shape of the run's dataset (``Dataset.input_shape``): checked
        against the stored one, required when none is stored.

    Returns
    -------
    Model
        Built by ``build_model`` and loaded with float32 copies of ``ckpt.params`` (the
        builder's initial draw is discarded, so the generator it gets does not matter).

    Raises
    ------
    ValueError
        No stored architecture and no ``input_shape``; an ``input_shape`` that differs from
        the stored one; parameters that do not fit the model (names or shapes).
    """
    params = ckpt.params
    names = list(params)
    arch = getattr(ckpt, "meta", {}).get("architecture")
    if arch is not None:
        stored = tuple(arch["input_shape"])
        if input_shape is not None and tuple(input_shape) != stored:
            raise ValueError(f"input_shape == {tuple(input_shape)}, but the checkpoint's "
                             f"model takes {stored}")
        name, n_classes, kwargs = arch["name"], arch["n_classes"], arch["kwargs"]
        input_shape = stored
    else:
        if input_shape is None:
            raise ValueError("the checkpoint stores no architecture (written before it was "
                             "stored): pass input_shape, the run's per-example input shape")
        if not names or params[names[-1]].ndim != 1:
            raise ValueError(f"checkpoint params {names} do not end in a bias")
        name, n_classes = ckpt.config["model"], params[names[-1]].shape[0]
        kwargs = _widths(name, params)
    model = build_model(name, input_shape, n_classes, rng=np.random.default_rng(0), **kwargs)
    model.load_state_dict({n: params[n].astype(np.float32) for n in names})
    return model


def _widths(name: str, params: dict) -> dict:
    """Builder keyword arguments read off the weight shapes (checkpoints without a stored
    architecture)."""
    weights = [p for n, p in params.items() if n.endswith(".weight")]
    convs = [p for n, p in params.items() if n.startswith("conv") and n.endswith(".weight")]
    if name == "mlp":
        return {"hidden": tuple(w.shape[0] for w in weights[:-1])}
    if name == "cnn" and convs and "fc1.weight" in params:
        return {"channels": tuple(w.shape[0] for w in convs[1::2]),
                "hidden": params["fc1.weight"].shape[0]}
    return {}


def from_checkpoint(ckpt, input_shape=None, *, conv: str = DEFAULT_CONV) -> CondensedModel:
    """``condense_model(model_from_checkpoint(ckpt, input_shape), ckpt.masks, conv=conv)``.

    ``ckpt`` is a loaded checkpoint (``srigl_ref.checkpoint.load_checkpoint``): reading
    files of the trainer stays outside ``condensed/``.
    """
    return condense_model(model_from_checkpoint(ckpt, input_shape), ckpt.masks, conv=conv)
