"""Replay a case file (or a directory of them) and explain the first difference.

:func:`replay_file` runs our update on a case's inputs (docs/interchange.md) and, when asked,
compares the result with the stored outputs; :func:`replay_dir` does the same for every
case below a folder (a training trace, or ``tests/golden/srigl``), in update order.

The first difference is reported with its position and the *stage* of the update that
decided it, checked in the order the algorithm decides things:

1. ``ablation``: the ablated neurons (order included), the salient threshold or ``k_out``
   differ (SRigL); the position is the first differing entry of the ablated list.
2. ``keep`` / ``cap``: the stored keep set ``kept`` (our files only) differs; ``cap`` if
   our keep ranking put more than ``k`` positions into that row (the cap chose), else
   ``keep``.
3. the new mask differs at flat index ``p`` (row ``r``): the stage is the one of *our*
   update that decided ``p``:
   - ``ablation`` if row ``r`` is ablated in our result;
   - ``cap`` if our keep ranking (top ``n_keep`` ``|W|``, ablated rows last, before the
     cap) selected ``p`` and the cap removed it, or kept it in a row where the cap bound;
   - ``keep`` if ``p`` is in our keep set (otherwise);
   - ``grow`` if we grew ``p``;
   - if ``p`` is inactive in ours but active in theirs: ``grow`` when ``p`` was inactive
     before (they grew it), or was active before and its ``|G|`` ties or beats a position
     we grew in that row (SRigL) / layer (RigL); else ``keep`` (we dropped it, they kept it).
4. ``weight``: the masks agree but ``weight_out`` differs bitwise (``-0.0`` vs ``+0.0``,
   grown-from-inactive not 0, ...).
5. ``momentum``: ``momentum_out`` differs bitwise.

SET grows at random: with a ``seed`` key the update draws from ``default_rng(seed)`` and is
compared exactly; without one only its deterministic part is checked (our keep set lies in
the stored mask, the stored mask grew exactly ``n_prune`` positions outside it, and
``weight_out``/``momentum_out`` follow from the stored mask).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .._validate import check_choice
from ..dst import TopologyUpdate, rigl_update, set_update, srigl_update
from ..dst.ranking import top_magnitude_mask
from ..dst.topology import TIE_BREAKS
from ..dst.torch_ties import torch_topk
from .cases import Case, read_case, write_result

STAGES = ("ablation", "keep", "cap", "grow", "weight", "momentum")


@dataclass(frozen=True)
class Mismatch:
    """The first difference between a case's stored outputs and our result.

    Attributes
    ----------
    key : str
        The output that differs: ``ablated``, ``threshold``, ``k_out``, ``kept``,
        ``mask_out``, ``weight_out`` or ``momentum_out``.
    stage : str
        One of ``STAGES``: the step of the update that decided it (module docstring).
    expected, got : object
        The file's stored value and ours (srigl-ref's) at that position.
    reason : str
        Why that stage, in words.
    index : int or None
        Flat index in the layer (C order), or in the ``ablated`` list for ``ablated``.
    row : int or None
        The neuron.
    column : int or None
        Flat index within the neuron (over ``(C_in, kh, kw)`` for conv layers).
    position : tuple of int or None
        The full index into the weight, e.g. ``(row, c_in, kh, kw)``.
    """
    key: str
    stage: str
    expected: object
    got: object
    reason: str
    index: int | None = None
    row: int | None = None
    column: int | None = None
    position: tuple | None = None

    def describe(self) -> str:
        """One line: where, expected vs got, and which stage decided it."""
        if self.key == "ablated":
            where = f"ablated[{self.index}]"
        elif self.index is not None:
            where = (f"{self.key} at row {self.row}, column {self.column} (flat index "
                     f"{self.index}" + (f", position {list(self.position)})"
                                        if len(self.position) > 2 else ")"))
        else:
            where = self.key
        return (f"{where}: expected {self.expected} (file), got {self.got} (srigl-ref); "
                f"stage {self.stage} ({self.reason})")


@dataclass(frozen=True)
class Replay:
    """One replayed case: our update and, if compared, the first mismatch (or None)."""
    case: Case
    tie_break: str
    update: TopologyUpdate
    compared: bool
    mismatch: Mismatch | None

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

    def summary(self) -> str:
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
                out=None) -> Replay:
    """Read a case, run our update, compare (``expect``) and write the result (``out``).

    Parameters
    ----------
    path : str or Path
        A case file.
    tie_break : {"stable", "torch_cpu"} or None
        None: the case's own (golden: "torch_cpu").
    expect : bool
        Compare with the stored outputs (ValueError if the case has none).
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
    mismatch = compare(case, update, tie_break=tb) if expect else None
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
               out=None) -> Iterator[Replay]:
    """Replay every case below ``directory`` in update order (:func:`case_files`).

    Yields one :class:`Replay` per file (results are not accumulated, so traces of any
    length fit in memory). With ``out``, each result is written to ``out`` at the file's
    path relative to ``directory``.
    """
    directory = Path(directory)
    for f in case_files(directory):
        target = None if out is None else Path(out) / f.relative_to(directory)
        yield replay_file(f, tie_break=tie_break, expect=expect, out=target)


# ------------------------------------------------------------------ comparison
def compare(case: Case, update: TopologyUpdate, *, tie_break: str) -> Mismatch | None:
    """The first difference between ``case``'s stored outputs and ``update`` (module doc).

    Parameters
    ----------
    case : Case
        Must hold ``mask_out`` and ``weight_out`` (and ``ablated``, ``k_out``,
        ``threshold`` for SRigL).
    update : TopologyUpdate
        Our result on the case's inputs.
    tie_break : str
        The mode ``update`` ran with (to recompute our keep ranking for attribution).

    Returns
    -------
    Mismatch or None
    """
    exp = case.expected
    if "mask_out" not in exp:
        raise ValueError(f"{case.path}: no stored outputs to compare with (missing key "
                         f"'mask_out'); replay without --expect")
    if case.method == "srigl":
        found = _compare_ablation(exp, update)
        if found:
            return found
    ranked = _ranked_keep(case, update, tie_break) if case.method == "srigl" else None
    if "kept" in exp:
        p = _first_diff(exp["kept"], update.kept)
        if p is not None:
            stage, reason = _keep_or_cap(update, ranked, p)
            return _at(case, "kept", p, exp["kept"], update.kept, stage, reason)
    if case.method == "set" and not case.has("seed"):
        return _compare_set(case, update)
    p = _first_diff(exp["mask_out"], update.mask)
    if p is not None:
        stage, reason = _mask_stage(case, update, ranked, p)
        return _at(case, "mask_out", p, exp["mask_out"], update.mask, stage, reason)
    return _compare_values(case, exp["weight_out"], update.weight, update.momentum)


def _compare_ablation(exp: dict, update: TopologyUpdate) -> Mismatch | None:
    want, got = exp["ablated"].tolist(), update.ablated.tolist()
    if want != got:
        i = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want),
                                                                               len(got)))
        e = want[i] if i < len(want) else "(end of list)"
        g = got[i] if i < len(got) else "(end of list)"
        return Mismatch("ablated", "ablation", e, g, f"ablated neurons differ: expected "
                        f"{len(want)} {want[:8]}{'...' if len(want) > 8 else ''}, got "
                        f"{len(got)} {got[:8]}{'...' if len(got) > 8 else ''} (salient "
                        f"count order)", index=i,
                        row=next(x for x in (e, g) if isinstance(x, int)))
    for key, ours, why in (("threshold", update.threshold, "the salient threshold after "
                            "lowering"),
                           ("k_out", update.fan_in, "k = B // (out - n_ablated)")):
        if int(exp[key]) != ours:
            return Mismatch(key, "ablation", int(exp[key]), ours, why)
    return None


def _ranked_keep(case: Case, update: TopologyUpdate, tie_break: str) -> np.ndarray:
    """Our SRigL keep ranking before the cap: top ``n_keep`` ``|W|``, ablated rows last.

    Returns bool [out, F] (docs/algorithm.md §6.2, §6.5, §13.4 item 2).
    """
    a = case.arrays
    out = a["weight"].shape[0]
    w2 = np.ascontiguousarray(a["weight"].reshape(out, -1))        # [out, F]
    if tie_break == "torch_cpu":
        sd = np.abs(w2)
        for i in np.sort(update.ablated):
            sd[i] = sd.min() - 1
        ranked = np.zeros(w2.size, np.bool_)
        ranked[torch_topk(sd.ravel(), update.n_keep, sorted=False)] = True
        return ranked.reshape(w2.shape)
    rows = np.zeros(out, np.bool_)
    rows[update.ablated] = True
    return top_magnitude_mask(w2, update.n_keep, row_skip=rows)


def _keep_or_cap(update, ranked, p) -> tuple[str, str]:
    if ranked is not None:
        r = p // ranked.shape[1]
        n_ranked = int(ranked[r].sum())
        if n_ranked > update.fan_in:
            how = ("ranked into the keep set, then removed by the cap" if ranked.flat[p]
                   and not update.kept.flat[p] else "the cap chose which ranked positions "
                   "stay")
            return "cap", f"{how}: row {r} has {n_ranked} ranked positions > k = " \
                          f"{update.fan_in}"
    return "keep", "our keep set (the n_keep largest |W|) decided this position"


def _mask_stage(case, update, ranked, p) -> tuple[str, str]:
    a = case.arrays
    out = a["weight"].shape[0]
    r = p // (a["weight"].size // out)
    if case.method == "srigl" and r in update.ablated:
        return "ablation", f"row {r} is ablated (empty) in our result"
    if update.kept.flat[p] or (ranked is not None and ranked.flat[p]):
        return _keep_or_cap(update, ranked, p)
    scope = "row" if case.method == "srigl" else "layer"
    if update.mask.flat[p]:
        return "grow", f"we grew it (largest |G| outside the keep set in its {scope})"
    if not a["mask"].flat[p]:
        return "grow", "inactive before and not grown by us: they grew it"
    grown = (update.mask & ~update.kept).reshape(out, -1)
    if case.method == "srigl":
        grown = grown & (np.arange(out) == r)[:, None]
    if grown.any() and "grad" in a:
        sg = np.abs(a["grad"].reshape(out, -1))
        if sg.flat[p] >= sg[grown].min():
            return "grow", f"dropped from our keep set; its |G| ties or beats a position we " \
                           f"grew in its {scope}"
    return "keep", "active before, dropped from our keep set (|W| below the keep " \
                   "threshold) and not regrown; they kept it"


def _compare_set(case: Case, update: TopologyUpdate) -> Mismatch | None:
    """SET without a seed: only the deterministic part (module docstring)."""
    a, exp = case.arrays, case.expected
    mask_out, kept = exp["mask_out"], update.kept
    p = _first_diff(kept & ~mask_out, np.zeros_like(kept))
    if p is not None:
        return _at(case, "mask_out", p, mask_out, update.mask, "keep",
                   "in our keep set but inactive in the stored mask")
    grown = mask_out & ~kept
    if int(grown.sum()) != update.n_prune:
        return Mismatch("mask_out", "grow", f"{int(grown.sum())} grown",
                        f"{update.n_prune} grown",
                        "SET grows n_prune positions outside the keep set (random positions: "
                        "without a 'seed' key only their number is checked)")
    weight = a["weight"] * mask_out
    weight[grown & ~a["mask"]] = 0.0
    momentum = None if "momentum" not in a else a["momentum"] * mask_out
    return _compare_values(case, exp["weight_out"], weight, momentum)


def _compare_values(case, weight_exp, weight, momentum) -> Mismatch | None:
    p = _first_diff(_bits(weight_exp), _bits(weight))
    if p is not None:
        return _at(case, "weight_out", p, weight_exp, weight, "weight",
                   "masks agree; W * M_new with grown-from-inactive weights at +0.0 "
                   "(bitwise, so -0.0 != +0.0)")
    exp = case.expected
    if "momentum_out" in exp and momentum is not None:
        p = _first_diff(_bits(exp["momentum_out"]), _bits(momentum))
        if p is not None:
            return _at(case, "momentum_out", p, exp["momentum_out"], momentum, "momentum",
                       "momentum * M_new (bitwise)")
    return None


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"u{a.itemsize}")


def _first_diff(a: np.ndarray, b: np.ndarray) -> int | None:
    d = np.flatnonzero(a.ravel() != b.ravel())
    return int(d[0]) if d.size else None


def _at(case, key, p, exp, got, stage, reason) -> Mismatch:
    shape = case.arrays["weight"].shape
    position = tuple(int(i) for i in np.unravel_index(p, shape))
    return Mismatch(key, stage, _value(key, exp.flat[p]), _value(key, got.flat[p]), reason,
                    index=p,
                    row=position[0], column=p % (case.arrays["weight"].size // shape[0]),
                    position=position)


def _value(key: str, v) -> str:
    if key == "kept":
        return "kept" if v else "not kept"
    if isinstance(v, (bool, np.bool_)):
        return "active" if v else "inactive"
    return repr(float(v))
