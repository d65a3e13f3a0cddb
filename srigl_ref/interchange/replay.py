"""Replay a case file (or a directory of them) and compare with its stored outputs.

:func:`replay_file` runs our update on a case's inputs (docs/interchange.md) and, when asked,
compares the result with the stored outputs (``diagnose.compare``: what every implementation
has by default, everything with ``strict``) and diagnoses a difference in the algorithm's
causal order; :func:`replay_dir` does the same for every case below a folder (a training
trace, or ``tests/golden/srigl``), in update order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .._validate import check_choice
from ..dst import TopologyUpdate, rigl_update, set_update, srigl_update
from ..dst.topology import TIE_BREAKS
from .cases import Case, read_case, write_result
from .diagnose import Diagnosis, compare


@dataclass(frozen=True)
class Replay:
    """One replayed case: our update and, if compared, the diagnosis of a difference.

    Attributes
    ----------
    case : Case
    tie_break : str
        The tie-break our update ran with.
    update : TopologyUpdate
        Our result.
    compared : bool
        Whether the stored outputs were compared.
    mismatch : Diagnosis or None
        None when they agree (or were not compared).
    """
    case: Case
    tie_break: str
    update: TopologyUpdate
    compared: bool
    mismatch: Diagnosis | None

    @property
    def where(self) -> str:
        """``path`` plus the step and layer when the case records them."""
        extra = []
        if self.case.has("step"):
            extra.append(f"step {self.case.item('step')}")
        if "layer_index" in self.case.meta:
            name = self.case.meta.get("name")
            extra.append(f"layer {self.case.meta['layer_index']}"
                         + (f" ({name})" if name else ""))
        return self.case.path + (f" [{', '.join(extra)}]" if extra else "")

    @property
    def verdict(self) -> str:
        """``match``, ``MISMATCH`` or ``done`` (not compared)."""
        return "done" if not self.compared else "MISMATCH" if self.mismatch else "match"

    def summary(self) -> str:
        """What the update did, or the diagnosis (several lines) of a mismatch."""
        u = self.update
        what = f"{self.case.method} update ({self.tie_break})"
        if self.mismatch is not None:
            return f"{self.where}: {what} MISMATCH: {self.mismatch.describe()}"
        stats = f"{u.n_pruned} pruned, {u.n_grown} grown"
        if self.case.method == "srigl":
            stats += (f", ablated {u.ablated.tolist()}, k = {u.fan_in}, "
                      f"threshold {u.threshold}")
        return f"{self.where}: {what} {'matches' if self.compared else 'done'}: {stats}"


def run_case(case: Case, *, tie_break: str | None = None) -> TopologyUpdate:
    """Our update on ``case``'s inputs.

    Parameters
    ----------
    case : Case
    tie_break : {"stable", "torch_cpu"} or None
        None: the case's ``tie_break`` (golden files: "torch_cpu"). Ignored for SET.

    Returns
    -------
    TopologyUpdate

    Raises
    ------
    ValueError
        The update refused the inputs (message names the file).
    """
    tb = case.tie_break if tie_break is None else check_choice("tie_break", tie_break,
                                                                TIE_BREAKS)
    a, kw = case.arrays, case.update_kwargs(tb)
    try:
        if case.method == "srigl":
            return srigl_update(a["weight"], a["mask"], a["grad"], **kw)
        if case.method == "rigl":
            return rigl_update(a["weight"], a["mask"], a["grad"], **kw)
        rng = np.random.default_rng(case.item("seed", 0))
        return set_update(a["weight"], a["mask"], rng=rng, **kw)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{case.path}: the {case.method} update refused the inputs: "
                         f"{e}") from None


def replay_file(path, *, tie_break: str | None = None, expect: bool = True,
                out=None, strict: bool = False) -> Replay:
    """Read a case, run our update, compare (``expect``) and write the result (``out``).

    Parameters
    ----------
    path : str or Path
        A case file.
    tie_break : {"stable", "torch_cpu"} or None
        None: the case's own (golden: "torch_cpu").
    expect : bool
        Compare with the stored outputs (ValueError if the case has none).
    strict : bool
        Also compare the ablated order, ``threshold`` and ``kept`` (``diagnose.compare``).
    out : str or Path, optional
        Write the case's inputs with our outputs there (same schema).

    Returns
    -------
    Replay
    """
    case = read_case(path)
    tb = case.tie_break if tie_break is None else tie_break
    update = run_case(case, tie_break=tb)
    if out is not None:
        write_result(out, case, update, tie_break=tb)
    mismatch = compare(case, update, tie_break=tb, strict=strict) if expect else None
    return Replay(case, tb, update, expect, mismatch)


def case_files(directory) -> list[Path]:
    """The ``.npz`` files below ``directory`` in update order.

    If every file's ``meta`` has ``layer_index``: by (``step``, ``layer_index``, path);
    otherwise by path.
    """
    directory = Path(directory)
    files = sorted(directory.rglob("*.npz"))
    if not files:
        raise ValueError(f"{directory}: no .npz case files below this folder")
    keys = [_order_key(f) for f in files]
    if all(k is not None for k in keys):
        files = [f for _, f in sorted(zip(keys, files))]
    return files


def _order_key(path: Path):
    """``(step, layer_index, path)`` read lazily from the file; None if unavailable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].item())
            return int(z["step"]), int(meta["layer_index"]), str(path)
    except Exception:                 # unreadable here: read_case reports it in order
        return None


def replay_dir(directory, *, tie_break: str | None = None, expect: bool = True,
               out=None, strict: bool = False) -> Iterator[Replay]:
    """Replay every case below ``directory`` in update order (:func:`case_files`).

    Yields one :class:`Replay` per file (results are not accumulated, so traces of any
    length fit in memory). With ``out``, each result is written to ``out`` at the file's
    path relative to ``directory``.
    """
    directory = Path(directory)
    for f in case_files(directory):
        target = None if out is None else Path(out) / f.relative_to(directory)
        yield replay_file(f, tie_break=tie_break, expect=expect, out=target,
                          strict=strict)
