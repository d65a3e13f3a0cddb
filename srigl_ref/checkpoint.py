"""Run files: ``model.npz``, ``summary.json`` and ``metrics.jsonl``, written atomically and
read back with validation.

``model.npz`` (format version 1) holds plain arrays only (loadable with
``allow_pickle=False``):

- ``param/<name>``: every entry of ``Model.state_dict()`` (float; the parameters, and the
  buffers of models that have any), PyTorch names (``fc1.weight``, ...);
- ``mask/<name>``: the bool mask of every sparse weight;
- ``momentum/<name>``: the SGD momentum buffer of every parameter;
- ``ever_active/<name>``: bool, positions active at any time so far (for the ITOP rate);
- ``dense_grad/<name>``: dense gradients accumulated towards the next update (usually none);
- ``initial_mask/<name>``: the bool mask of every sparse weight at initialisation (for
  ``srigl-ref plot``; absent in files written before it was recorded);
- ``meta``: a 0-d string holding JSON: ``format_version``, ``config`` (the full run
  configuration), ``step``, ``epoch`` (epochs completed), ``rng_state`` (the bit
  generator's state), ``sparse_names``, ``sparsities`` and ``architecture``: the arguments
  that rebuild the model (``{"name", "input_shape", "n_classes", "kwargs"}``, the call
  ``build_model(name, input_shape, n_classes, **kwargs)``; absent in files written before
  it was stored).

``summary.json`` holds the keys of ``SUMMARY_KEYS`` and ``status``: ``"ok"``,
``"at_chance"`` (final test accuracy within 2 points of chance) or ``"diverged"`` (the loss
became non-finite; ``test_accuracy`` is the last completed epoch's, or null if none
completed), with a one-line ``message`` unless ``"ok"``. Summaries written before the
status existed have none.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._validate import read_npz

FORMAT_VERSION = 1
_GROUPS = ("param", "mask", "momentum", "ever_active", "dense_grad", "initial_mask")
SUMMARY_KEYS = ("test_accuracy", "density", "target_density", "method", "seconds",
                "itop_rate", "layers")
SUMMARY_STATUSES = ("ok", "at_chance", "diverged")
LAYER_KEYS = ("name", "shape", "sparsity", "fan_in", "n_active_neurons", "n_ablated")


def atomic_write(path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it.

    A reader never sees a half-written file; on error the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_file(path, name: str) -> Path:
    """``path`` itself when it is a file, else ``path / name`` (a run folder).

    Raises
    ------
    ValueError
        When neither exists, naming both.
    """
    path = Path(path)
    target = path / name if path.is_dir() else path
    if not target.is_file():
        where = f"{path} has no {name}" if path.is_dir() else f"{path} does not exist"
        raise ValueError(f"{where} (expected a run folder holding {name}, or the file)")
    return target


@dataclass
class Checkpoint:
    """The content of ``model.npz`` (see the module docstring)."""
    params: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    momentum: dict[str, np.ndarray]
    ever_active: dict[str, np.ndarray]
    meta: dict
    dense_grad: dict[str, np.ndarray] = field(default_factory=dict)
    initial_masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return self.meta["config"]


def save_checkpoint(path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` (``model.npz``) atomically."""
    arrays = {}
    for group in _GROUPS:
        for name, a in getattr(ckpt, _attr(group)).items():
            arrays[f"{group}/{name}"] = a
    meta = dict(ckpt.meta, format_version=FORMAT_VERSION)
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _attr(group: str) -> str:
    return {"param": "params", "mask": "masks", "initial_mask": "initial_masks"}.get(group, group)


def load_checkpoint(path) -> Checkpoint:
    """Read and validate ``model.npz``.

    Raises
    ------
    ValueError
        Naming the file and what is wrong: not an npz, no/unsupported ``meta``, masks that
        are not bool or do not match their weight's shape, missing arrays.
    """
    path = Path(path)
    arrays = read_npz(path, what="checkpoint file")
    if "meta" not in arrays:
        raise ValueError(f"{path}: no 'meta' entry; not a srigl-ref model.npz")
    try:
        meta = json.loads(arrays.pop("meta").item())
    except (json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"{path}: 'meta' is not valid JSON ({e})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version == {version!r}, must be {FORMAT_VERSION}")
    groups = {g: {} for g in _GROUPS}
    for key, a in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups or not name:
            raise ValueError(f"{path}: unexpected entry {key!r}")
        groups[group][name] = a
    ckpt = Checkpoint(groups["param"], groups["mask"], groups["momentum"],
                      groups["ever_active"], meta, groups["dense_grad"], groups["initial_mask"])
    _check_consistent(path, ckpt)
    return ckpt


def _check_consistent(path, ckpt: Checkpoint) -> None:
    for key in ("config", "step", "epoch", "sparse_names"):
        if key not in ckpt.meta:
            raise ValueError(f"{path}: meta has no {key!r}")
    for name in ckpt.meta["sparse_names"]:
        if name not in ckpt.params:
            raise ValueError(f"{path}: sparse weight {name!r} has no param/{name}")
        for group, d in (("mask", ckpt.masks), ("ever_active", ckpt.ever_active),
                         ("initial_mask", ckpt.initial_masks)):
            if name not in d:
                if group == "initial_mask":
                    continue
                raise ValueError(f"{path}: sparse weight {name!r} has no {group}/{name}")
            if d[name].dtype != np.bool_ or d[name].shape != ckpt.params[name].shape:
                raise ValueError(f"{path}: {group}/{name} has dtype {d[name].dtype} and shape "
                                 f"{d[name].shape}, must be bool of shape "
                                 f"{ckpt.params[name].shape}")
        if (ckpt.params[name][~ckpt.masks[name]] != 0).any():
            raise ValueError(f"{path}: param/{name} is nonzero outside mask/{name}")
    for name, p in ckpt.params.items():
        if p.dtype.kind != "f":
            raise ValueError(f"{path}: param/{name} has dtype {p.dtype}, must be float")
        m = ckpt.momentum.get(name)
        if m is not None and m.shape != p.shape:
            raise ValueError(f"{path}: momentum/{name} has shape {m.shape}, must be {p.shape}")


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def read_summary(path) -> dict:
    """Read and validate ``summary.json`` (the keys of docs/api.md and ``status``; see the module
    docstring).

    Raises
    ------
    ValueError
        Naming the file: missing file or keys, invalid JSON, an unknown ``status``, a
        ``test_accuracy`` outside [0, 1] (null is allowed only for a diverged run).
    """
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such summary file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    status = summary.get("status", "ok")
    if status not in SUMMARY_STATUSES:
        raise ValueError(f"{path}: status == {status!r}, must be one of "
                         f"{', '.join(map(repr, SUMMARY_STATUSES))}")
    acc = summary["test_accuracy"]
    if not (acc is None and status == "diverged") and (
            not isinstance(acc, (int, float)) or isinstance(acc, bool)
            or not 0.0 <= acc <= 1.0):
        raise ValueError(f"{path}: test_accuracy == {summary['test_accuracy']}, must be in "
                         f"[0, 1]" + ("" if status == "diverged"
                                      else " (null only when status is 'diverged')"))
    for i, layer in enumerate(summary["layers"]):
        lost = [k for k in LAYER_KEYS if k not in layer]
        if lost:
            raise ValueError(f"{path}: layers[{i}] misses key(s) {lost}")
    return summary


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, flushed line by line.

    ``truncate_after_step`` (used on resume) drops lines written after the checkpoint.
    """

    def __init__(self, path, *, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate(resume_step)

    def _truncate(self, step: int) -> None:
        keep = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("step", 0) <= step:
                    keep.append(line)
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path) -> list[dict]:
    """All records of ``metrics.jsonl``; ``ValueError`` naming the line if one is broken."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
    return records
