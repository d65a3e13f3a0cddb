"""Where a case's stored outputs and srigl-ref's update differ, in the algorithm's causal order.

:func:`compare` first decides *whether* the outputs differ, comparing only what every
implementation has: the new mask, the weights, the momentum (when the file has
``momentum_out``), ``k`` (when it has ``k_out``) and the *set* of ablated neurons (when it
has ``ablated``), all bitwise. ``strict=True`` adds what only the authors' code and ours
record: the ablated order, the salient ``threshold`` and the keep set ``kept``.

When they differ it diagnoses *why*, in the order the update decides things
(``docs/algorithm.md §6``, §7), each stage named so that scripts can read it:

``count``
    ``n_keep`` / ``n_prune`` (``docs/algorithm.md §6.2``). The file's count is its ``kept``
    set if stored, else *inferred*: the keep counts near ours for which "keep the ``n``
    largest ``|W|`` (rows empty in the file last), cap at the file's ``k``, regrow by
    ``|G|``" explains the stored mask; ours is tried first.
``ablation``
    the ablated neurons differ (as sets; order and threshold only with ``strict``).
``fan_in``
    ``k`` differs (the file's ``k_out``, else the largest row count of its mask).
``keep`` / ``cap`` / ``grow``
    positions where the masks differ, each attributed to the stage of *our* update that
    decided it (theirs is seen only through its outputs, where "kept" and "dropped and
    regrown" look alike): ``keep`` (in or out of our keep set), ``cap`` (our per-neuron
    cap decided), ``grow`` (regrowth by ``|G|``; also a row emptied by pruning that the file
    left empty), ``ablation`` (a row ablated on one side only).
``weight`` / ``momentum``
    bitwise differences of ``weight_out`` / ``momentum_out`` where the masks agree.

The result names the first stage that differs with its counts, summarises every stage
that differs (positions and rows), and gives the first concrete position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dst import TopologyUpdate
from ..dst.ranking import top_magnitude_mask
from ..dst.torch_ties import torch_topk
from .cases import Case

STAGES = ("count", "ablation", "fan_in", "keep", "cap", "grow", "weight", "momentum")
_COUNT_WINDOW = 8           # inferred keep counts are searched within ours +- this


@dataclass(frozen=True)
class Mismatch:
    """One concrete difference: a position (or neuron, or scalar) and the stage behind it.

    Attributes
    ----------
    key : str
        The output that differs: ``mask_out``, ``weight_out``, ``momentum_out``,
        ``ablated``, ``threshold``, ``k_out`` or ``kept``.
    stage : str
        One of ``STAGES``.
    expected, got : object
        The file's value and ours (srigl-ref's) there.
    reason : str
        Why that stage, in words.
    index : int or None
        Flat index in the layer (C order), or in the ``ablated`` list (strict order).
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
        if self.key == "ablated" and self.index is not None:
            where = f"ablated[{self.index}]"
        elif self.key == "ablated":
            where = f"neuron {self.row}"
        elif self.position is not None:
            where = (f"{self.key} at row {self.row}, column {self.column} (flat index "
                     f"{self.index}" + (f", position {list(self.position)})"
                                        if len(self.position) > 2 else ")"))
        else:
            where = self.key
        return (f"{where}: expected {self.expected} (file), got {self.got} (srigl-ref); "
                f"stage {self.stage} ({self.reason})")


@dataclass(frozen=True)
class StageDifference:
    """How much one stage differs: positions (or neurons) and the rows they are in."""
    stage: str
    n: int
    rows: tuple
    unit: str = "position"
    note: str = ""

    def describe(self) -> str:
        rows = _rows_text(self.rows)
        what = _count(self.n, self.unit) if self.n else ""
        parts = [p for p in (what, f"in {rows}" if rows and self.unit != "neuron" else "",
                             self.note) if p]
        return f"{self.stage}: {', '.join(parts)}"


@dataclass(frozen=True)
class Diagnosis:
    """Why a case's stored outputs and our update differ.

    Attributes
    ----------
    stage : str
        The first stage (causal order, ``STAGES``) that differs.
    headline : str
        That stage with its counts, e.g. ``"n_keep: file 2449, srigl-ref 2450"``.
    differences : tuple of StageDifference
        Every stage that differs, in causal order.
    first : Mismatch or None
        The first concrete position (of the first stage that has one).
    outputs : tuple of str
        The compared outputs that differ (``mask_out``, ``weight_out``, ...).
    """
    stage: str
    headline: str
    differences: tuple
    first: Mismatch | None
    outputs: tuple

    def describe(self) -> str:
        """Three lines: the first stage with its counts, all differences, the first position."""
        lines = [f"stage {self.stage}: {self.headline}",
                 "  differs: " + "; ".join(d.describe() for d in self.differences)]
        if self.first is not None:
            lines.append(f"  first: {self.first.describe()}")
        return "\n".join(lines)


def compare(case: Case, update: TopologyUpdate, *, tie_break: str,
            strict: bool = False) -> Diagnosis | None:
    """Compare ``case``'s stored outputs with ``update``; diagnose a difference (module doc).

    Parameters
    ----------
    case : Case
        Must hold ``mask_out`` and ``weight_out``.
    update : TopologyUpdate
        srigl-ref's result on the case's inputs.
    tie_break : {"stable", "torch_cpu"}
        The mode ``update`` ran with (our keep ranking is recomputed in it).
    strict : bool
        Also compare the ablated order, ``threshold`` and ``kept`` (when stored).

    Returns
    -------
    Diagnosis or None
        None when everything compared agrees.

    Raises
    ------
    ValueError
        The case has no stored outputs.
    """
    if "mask_out" not in case.expected:
        raise ValueError(f"{case.path}: no stored outputs to compare with (missing key "
                         f"'mask_out'); replay without --expect")
    if case.method == "set" and not case.has("seed"):
        return _compare_set(case, update)
    outputs = differing_outputs(case, update, strict=strict)
    if not outputs:
        return None
    return _Diagnoser(case, update, tie_break, strict).run(outputs)


def differing_outputs(case: Case, update: TopologyUpdate, *, strict: bool = False) -> tuple:
    """The stored outputs that differ from ``update`` (the verdict, without diagnosis).

    Returns
    -------
    tuple of str
        Among ``mask_out``, ``weight_out``, ``momentum_out``, ``k_out``, ``ablated`` and,
        with ``strict``, ``ablated order``, ``threshold`` and ``kept``; empty when they agree.
    """
    exp = case.expected
    found = []
    if not np.array_equal(exp["mask_out"], update.mask):
        found.append("mask_out")
    if not np.array_equal(_bits(exp["weight_out"]), _bits(update.weight)):
        found.append("weight_out")
    if "momentum_out" in exp and update.momentum is not None and not np.array_equal(
            _bits(exp["momentum_out"]), _bits(update.momentum)):
        found.append("momentum_out")
    if case.method == "srigl":
        if "k_out" in exp and int(exp["k_out"]) != update.fan_in:
            found.append("k_out")
        if "ablated" in exp:
            if set(exp["ablated"].tolist()) != set(update.ablated.tolist()):
                found.append("ablated")
            elif strict and exp["ablated"].tolist() != update.ablated.tolist():
                found.append("ablated order")
        if strict and "threshold" in exp and int(exp["threshold"]) != update.threshold:
            found.append("threshold")
    if strict and "kept" in exp and not np.array_equal(exp["kept"], update.kept):
        found.append("kept")
    return tuple(found)


class _Diagnoser:
    """The stages of one comparison; every array is viewed as ``[out, F]``."""

    def __init__(self, case: Case, update: TopologyUpdate, tie_break: str, strict: bool):
        a, exp = case.arrays, case.expected
        self.case, self.update, self.tie_break, self.strict = case, update, tie_break, strict
        self.shape = a["weight"].shape
        out = self.shape[0]
        self.srigl = case.method == "srigl"

        def view(x):
            return None if x is None else np.asarray(x).reshape(out, -1)
        self.weight, self.mask = view(a["weight"]), view(a["mask"])          # [out, F]
        self.grad_score = None if "grad" not in a else np.abs(view(a["grad"]))
        self.file_mask, self.our_mask = view(exp["mask_out"]), view(update.mask)
        self.our_kept = view(update.kept)
        self.file_kept = view(exp.get("kept"))
        self.file_ablated = (None if not self.srigl or "ablated" not in exp
                             else set(exp["ablated"].tolist()))
        self.our_ablated = set(update.ablated.tolist())
        self.n_ones = int(np.count_nonzero(self.mask))
        self.n_keep = update.n_keep
        file_rows = self.file_mask.sum(axis=1)                                 # [out] int
        self.file_empty = file_rows == 0                                       # [out] bool
        self.k_file, self.k_inferred = None, False
        if self.srigl and "k_out" in exp:
            self.k_file = int(exp["k_out"])
        elif self.srigl and file_rows.any():
            self.k_file, self.k_inferred = int(file_rows.max()), True
        self.ranked = _ranked_keep(case, update, tie_break) if self.srigl else None
        # per-row summaries, so that attributing each differing position is O(1)
        self.our_kept_rows = self.our_kept.any(axis=1)                         # [out] bool
        self.ranked_rows = None if self.ranked is None else self.ranked.sum(axis=1)
        grown = self.our_mask & ~self.our_kept                                 # [out, F]
        self.grown_min = None
        if self.grad_score is not None:
            low = np.where(grown, self.grad_score, np.inf)
            self.grown_min = low.min(axis=1) if self.srigl else np.full(out, low.min())

    # -------------------------------------------------------------- the diagnosis
    def run(self, outputs: tuple) -> Diagnosis:
        found = {}                    # stage -> (StageDifference, headline, first Mismatch)
        self._count(found)
        self._ablation(found)
        self._fan_in(found)
        self._positions(found)
        self._values(found, "weight_out", "weight", self.case.expected["weight_out"],
                      self.update.weight)
        if "momentum_out" in outputs:
            self._values(found, "momentum_out", "momentum",
                         self.case.expected["momentum_out"], self.update.momentum)
        order = [s for s in STAGES if s in found]
        if not order:                 # only possible for outputs we cannot place
            raise AssertionError(f"differing outputs {outputs} without a stage")
        first_stage = order[0]
        first = next((found[s][2] for s in order if found[s][2] is not None), None)
        return Diagnosis(first_stage, found[first_stage][1],
                         tuple(found[s][0] for s in order), first, outputs)

    def _count(self, found) -> None:
        n_file = self._infer_n_keep()
        if n_file is None or n_file == self.n_keep:
            return
        how = "from its kept set" if self.file_kept is not None else "inferred from mask_out"
        headline = (f"n_keep: file {n_file}, srigl-ref {self.n_keep} (n_prune: file "
                    f"{self.n_ones - n_file}, srigl-ref {self.n_ones - self.n_keep}; file "
                    f"count {how})")
        lo, hi = sorted((n_file, self.n_keep))
        boundary = self._stable_order(self._our_excluded())[lo:hi]             # [hi-lo]
        differs = boundary[self.file_mask.ravel()[boundary]
                           != self.our_mask.ravel()[boundary]]
        p = int((differs if differs.size else boundary)[0])
        who = "srigl-ref keeps" if self.n_keep > n_file else "the file keeps"
        reason = (f"ranked {lo + 1}{f'-{hi}' if hi > lo + 1 else ''} by |W| (canonical "
                  f"ties): {who} it, the other drops it")
        rows = tuple(sorted({int(q) // self.weight.shape[1] for q in boundary}))
        found["count"] = (StageDifference("count", hi - lo, rows, "weight",
                                          note=f"n_keep {n_file} vs {self.n_keep}"),
                          headline, self._at("mask_out", p, self.file_mask, self.our_mask,
                                             "count", reason))

    def _ablation(self, found) -> None:
        if not self.srigl:
            return
        exp = self.case.expected
        first = None
        if self.file_ablated is not None and self.file_ablated != self.our_ablated:
            only_file = sorted(self.file_ablated - self.our_ablated)
            only_ours = sorted(self.our_ablated - self.file_ablated)
            headline = (f"ablated neurons: file {sorted(self.file_ablated)}, srigl-ref "
                        f"{sorted(self.our_ablated)} (only in file {only_file}, only in "
                        f"srigl-ref {only_ours})")
            r = min(only_file + only_ours)
            first = Mismatch("ablated", "ablation", _alive(r in self.file_ablated),
                             _alive(r in self.our_ablated),
                             "the ablated sets differ (salient counts vs threshold)", row=r)
            rows = tuple(only_file + only_ours)
        elif self.strict and "ablated" in exp and exp["ablated"].tolist() != \
                self.update.ablated.tolist():
            want, got = exp["ablated"].tolist(), self.update.ablated.tolist()
            i = next(i for i, (x, y) in enumerate(zip(want, got)) if x != y)
            headline = f"ablated order: file {want}, srigl-ref {got} (same set)"
            first = Mismatch("ablated", "ablation", want[i], got[i], "ablated order (salient "
                             "count descending, ties by index)", index=i, row=want[i])
            rows = ()
        elif self.strict and "threshold" in exp and int(exp["threshold"]) != \
                self.update.threshold:
            headline = (f"threshold: file {int(exp['threshold'])}, srigl-ref "
                        f"{self.update.threshold} (salient threshold after lowering)")
            first = Mismatch("threshold", "ablation", int(exp["threshold"]),
                             self.update.threshold, "the salient threshold after lowering")
            rows = ()
        else:
            return
        found["ablation"] = (StageDifference("ablation", len(rows), rows, "neuron",
                                             note=headline), headline, first)

    def _fan_in(self, found) -> None:
        if self.k_file is None or self.k_file == self.update.fan_in:
            return
        how = " (largest row count of mask_out)" if self.k_inferred else ""
        headline = f"k: file {self.k_file}{how}, srigl-ref {self.update.fan_in}"
        first = Mismatch("k_out", "fan_in", self.k_file, self.update.fan_in,
                         "k = B // (out - n_ablated)")
        found["fan_in"] = (StageDifference("fan_in", 0, (), note=headline), headline, first)

    def _positions(self, found) -> None:
        """Mask (and, strict, keep-set) differences, each attributed to one stage."""
        per_stage = {}                                         # stage -> [(p, reason)]
        if self.strict and self.file_kept is not None:
            for p in np.flatnonzero(self.file_kept.ravel() != self.our_kept.ravel()):
                stage, reason = self._keep_or_cap(int(p))
                per_stage.setdefault(stage, []).append((int(p), reason, "kept"))
        for p in np.flatnonzero(self.file_mask.ravel() != self.our_mask.ravel()):
            stage, reason = self._mask_stage(int(p))
            per_stage.setdefault(stage, []).append((int(p), reason, "mask_out"))
        fan = self.weight.shape[1]
        for stage in ("ablation", "keep", "cap", "grow"):
            if stage not in per_stage:
                continue
            hits = per_stage[stage]
            rows = tuple(sorted({p // fan for p, _, _ in hits}))
            p, reason, key = hits[0]
            file_a, our_a = ((self.file_kept, self.our_kept) if key == "kept"
                             else (self.file_mask, self.our_mask))
            first = self._at(key, p, file_a, our_a, stage, reason)
            summary = StageDifference(stage, len(hits), rows)
            if stage in found:                                 # ablation: sets and rows
                old, headline, old_first = found[stage]
                note = f"{old.note}; {_count(len(hits), 'position')}"
                found[stage] = (StageDifference(stage, old.n, old.rows, "neuron", note=note),
                                headline, old_first or first)
            else:
                headline = (f"{_count(summary.n, 'position')} of mask_out "
                            f"{'differs' if summary.n == 1 else 'differ'} in {_rows_text(rows)}")
                found[stage] = (summary, headline, first)

    def _values(self, found, key, stage, expected, ours) -> None:
        agree = (self.file_mask == self.our_mask).ravel()
        differ = np.flatnonzero((_bits(expected).ravel() != _bits(ours).ravel()) & agree)
        if not differ.size:
            return
        fan = self.weight.shape[1]
        rows = tuple(sorted({int(p) // fan for p in differ}))
        why = ("W * M_new, grown-from-inactive weights at +0.0 (bitwise: -0.0 != +0.0)"
               if stage == "weight" else "momentum * M_new (bitwise)")
        headline = (f"{key}: {_count(differ.size, 'position')} "
                    f"{'differs' if differ.size == 1 else 'differ'} bitwise where the masks "
                    f"agree, in {_rows_text(rows)}")
        found[stage] = (StageDifference(stage, int(differ.size), rows), headline,
                        self._at(key, int(differ[0]), expected, ours, stage, why))

    # -------------------------------------------------------------- counts
    def _infer_n_keep(self) -> int | None:
        """The file's keep count: the one nearest ours that explains its outputs, or None.

        None also when our own outputs are not explained by our count under canonical
        ties (the inference would not be trustworthy).
        """
        if self.grad_score is None:
            return None
        ours = self._stable_order(self._our_excluded())
        if not self._explains(self.n_keep, ours, self.our_mask, self.update.fan_in,
                              self.our_kept):
            return None
        theirs = self._stable_order(self._file_excluded())
        candidates = [self.n_keep + s * d for d in range(_COUNT_WINDOW + 1) for s in (-1, 1)]
        for n in dict.fromkeys(candidates):
            if 0 <= n <= self.n_ones and self._explains(n, theirs, self.file_mask,
                                                         self.k_file, self.file_kept):
                return n
        return None

    def _explains(self, n, order, mask_out, k, kept) -> bool:
        """Whether "keep the first ``n`` of ``order``, cap at ``k``, regrow by |G|" gives
        ``mask_out`` (or, if given, exactly ``kept``)."""
        keep = np.zeros(mask_out.size, np.bool_)
        keep[order[:n]] = True
        keep = keep.reshape(mask_out.shape)                                   # [out, F]
        if self.srigl and k is not None:
            keep &= np.cumsum(keep, axis=1) <= k              # the cap: lowest columns stay
        if kept is not None:
            return bool(np.array_equal(keep, kept))
        if (keep & ~mask_out).any():
            return False
        grown, rest = mask_out & ~keep, ~mask_out
        axis = 1 if self.srigl else None
        low = np.where(grown, self.grad_score, np.inf).min(axis=axis)
        high = np.where(rest, self.grad_score, -np.inf).max(axis=axis)
        return bool(np.all(low >= high))

    def _our_excluded(self) -> np.ndarray:
        rows = np.zeros(self.weight.shape[0], np.bool_)
        rows[list(self.our_ablated)] = True
        return rows

    def _file_excluded(self) -> np.ndarray:
        rows = self.file_empty.copy()
        if self.file_ablated:
            rows[list(self.file_ablated)] = True
        return rows if self.srigl else np.zeros_like(rows)

    def _stable_order(self, excluded_rows) -> np.ndarray:
        """Positions by |W| descending, ties by flat index, excluded rows last. [N] int64"""
        score = np.where(excluded_rows[:, None], -1.0, np.abs(self.weight.astype(np.float64)))
        return np.argsort(-score.ravel(), kind="stable")

    # -------------------------------------------------------------- positions
    def _keep_or_cap(self, p) -> tuple[str, str]:
        if self.ranked is not None:
            r = p // self.ranked.shape[1]
            n_ranked = int(self.ranked_rows[r])
            if n_ranked > self.update.fan_in:
                how = ("ranked into the keep set, then removed by the cap"
                       if self.ranked.flat[p] and not self.our_kept.flat[p]
                       else "the cap chose which ranked positions stay")
                return "cap", (f"{how}: row {r} has {n_ranked} ranked positions > k = "
                               f"{self.update.fan_in}")
        return "keep", "our keep set (the n_keep largest |W|) decided this position"

    def _mask_stage(self, p) -> tuple[str, str]:
        fan = self.weight.shape[1]
        r = p // fan
        if self.srigl:
            listed = self.file_ablated is not None
            file_gone = r in self.file_ablated if listed else bool(self.file_empty[r])
            if r in self.our_ablated and not file_gone:
                return "ablation", f"row {r} is ablated by srigl-ref, not by the file"
            if file_gone and r not in self.our_ablated and (listed or self.our_kept_rows[r]):
                return "ablation", f"row {r} is ablated{'' if listed else ' (empty)'} in " \
                                   f"the file, not by srigl-ref"
            if self.file_empty[r] and not self.our_kept_rows[r] and r not in self.our_ablated:
                return "grow", (f"row {r} was emptied by pruning (nothing kept) and not "
                                f"ablated: srigl-ref regrows it to k = {self.update.fan_in}, "
                                f"the file left it empty")
        if self.our_kept.flat[p] or (self.ranked is not None and self.ranked.flat[p]):
            return self._keep_or_cap(p)
        scope = "row" if self.srigl else "layer"
        if self.our_mask.flat[p]:
            return "grow", f"we grew it (largest |G| outside the keep set in its {scope})"
        if not self.mask.flat[p]:
            return "grow", "inactive before and not grown by us: they grew it"
        if self.grown_min is not None and self.grad_score.flat[p] >= self.grown_min[r]:
            return "grow", (f"dropped from our keep set; its |G| ties or beats a position "
                            f"we grew in its {scope}")
        return "keep", ("active before, dropped from our keep set (|W| below the keep "
                        "threshold) and not regrown; they kept it")

    def _at(self, key, p, expected, ours, stage, reason) -> Mismatch:
        return _at(self.shape, key, p, expected, ours, stage, reason)


def _ranked_keep(case: Case, update: TopologyUpdate, tie_break: str) -> np.ndarray:
    """Our SRigL keep ranking before the cap: top ``n_keep`` ``|W|``, ablated rows last.

    Returns bool [out, F] (docs/algorithm.md §6.2, §6.5, §13.4 item 2).
    """
    a = case.arrays
    out = a["weight"].shape[0]
    w2 = np.ascontiguousarray(a["weight"].reshape(out, -1))               # [out, F]
    n_keep = update.n_keep
    if tie_break == "torch_cpu":
        sd = np.abs(w2)
        for i in np.sort(update.ablated):
            sd[i] = sd.min() - 1
        ranked = np.zeros(w2.size, np.bool_)
        ranked[torch_topk(sd.ravel(), n_keep, sorted=False)] = True
        return ranked.reshape(w2.shape)
    rows = np.zeros(out, np.bool_)
    rows[update.ablated] = True
    return top_magnitude_mask(w2, n_keep, row_skip=rows)


def _compare_set(case: Case, update: TopologyUpdate) -> Diagnosis | None:
    """SET without a seed: only the deterministic part (docs/interchange.md section 2)."""
    a, exp = case.arrays, case.expected
    shape = a["weight"].shape
    mask_out, kept = exp["mask_out"], update.kept
    lost = np.flatnonzero((kept & ~mask_out).ravel())
    if lost.size:
        first = _at(shape, "mask_out", int(lost[0]), mask_out, update.mask, "keep",
                    "in our keep set but inactive in the stored mask")
        return _single(first, f"{lost.size} position(s) of our keep set are inactive in "
                              f"the file", ("mask_out",))
    grown = mask_out & ~kept
    n_prune = update.n_prune
    if int(grown.sum()) != n_prune:
        first = Mismatch("mask_out", "grow", f"{int(grown.sum())} grown", f"{n_prune} grown",
                         "SET grows n_prune positions outside the keep set (random positions: "
                         "without a 'seed' key only their number is checked)")
        return _single(first, f"grown: file {int(grown.sum())}, srigl-ref {n_prune}",
                       ("mask_out",))
    weight = a["weight"] * mask_out
    weight[grown & ~a["mask"]] = 0.0
    for key, stage, ours, why in (
            ("weight_out", "weight", weight, "W * M_new with grown-from-inactive weights at "
             "+0.0 (bitwise, so -0.0 != +0.0)"),
            ("momentum_out", "momentum", None if "momentum" not in a else
             a["momentum"] * mask_out, "momentum * M_new (bitwise)")):
        if key not in exp or ours is None:
            continue
        differ = np.flatnonzero(_bits(exp[key]).ravel() != _bits(ours).ravel())
        if differ.size:
            first = _at(shape, key, int(differ[0]), exp[key], ours, stage, why)
            return _single(first, f"{key}: {differ.size} position(s) differ bitwise",
                           (key,))
    return None


def _single(first: Mismatch, headline: str, outputs: tuple) -> Diagnosis:
    rows = () if first.row is None else (first.row,)
    return Diagnosis(first.stage, headline, (StageDifference(first.stage, 0, rows,
                                                             note=headline),), first, outputs)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(f"u{a.itemsize}")


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'s' if n != 1 else ''}"


def _alive(ablated: bool) -> str:
    return "ablated" if ablated else "alive"


def _rows_text(rows) -> str:
    if not rows:
        return ""
    shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
    return f"row{'s' if len(rows) != 1 else ''} [{shown}]" if len(rows) > 1 else \
        f"row {rows[0]}"


def _at(shape, key, p, expected, ours, stage, reason) -> Mismatch:
    position = tuple(int(i) for i in np.unravel_index(p, shape))
    fan = int(np.prod(shape[1:]))
    return Mismatch(key, stage, _value(key, np.asarray(expected).flat[p]),
                    _value(key, np.asarray(ours).flat[p]), reason, index=p, row=position[0],
                    column=p % fan, position=position)


def _value(key: str, v) -> str:
    if key == "kept":
        return "kept" if v else "not kept"
    if isinstance(v, (bool, np.bool_)):
        return "active" if v else "inactive"
    return repr(float(v))
