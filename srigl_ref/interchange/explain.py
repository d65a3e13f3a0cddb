"""Name the cause of a difference: the deviations of the reference that reproduce a case.

A case whose stored outputs differ from srigl-ref's is re-run through the readable
reference (``srigl_ref.dst.reference``) with one *named deviation* at a time: each is a
keyword of ``reference.srigl_update`` / ``rigl_update`` whose default is the authors'
algorithm and whose other value is what another implementation does (docstrings there).
The deviations whose outputs equal the file's (``diagnose.differing_outputs``, the default
comparison) are reported. If no single one does, pairs are tried, then all deviations of a
known library at once (sparsimony's SRigL, jaxpruner's RigL), labelled as combinations.
The reference breaks ties canonically only (``docs/algorithm.md §1``), so srigl-ref's
fast update in the authors' PyTorch CPU tie order (``tie_break="torch_cpu"``) is tried
first: a file it reproduces differs only in how ties were broken.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..dst import TopologyUpdate, reference, rigl_update, srigl_update
from .cases import Case
from .diagnose import differing_outputs

LIBRARY_GAMMA_SAL = 0.3         # sparsimony's default; it never passes gamma_sal on
# whole libraries as combinations of deviations (reference.srigl_update / rigl_update docs)
LIBRARIES = {
    "srigl": {"sparsimony": dict(n_keep_offset=-1, salient_grad_count="n_keep",
                                 ablation_test="real", keep_alive=False,
                                 regrow_emptied_rows=False, redistribute_fan_in=False,
                                 reinit_grown=False, mask_momentum=False,
                                 gamma_sal=LIBRARY_GAMMA_SAL)},
    "rigl": {"jaxpruner": dict(keep_count="jaxpruner", inactive_below_active_zeros=True,
                               mask_momentum=False)},
}


@dataclass(frozen=True)
class Explanation:
    """The deviations that reproduce a case's stored outputs.

    Attributes
    ----------
    reproduced : tuple of str
        Single deviations whose outputs equal the file's (labels as ``"keep_alive=False"``).
    combinations : tuple of str
        Pairs (``"a + b"``), tried only when no single deviation reproduces the file, then
        (if no pair does) every deviation of a known library at once (``LIBRARIES``).
    baseline : bool
        Whether the reference *without* deviation (canonical ties) already reproduces it.
    closest : tuple of (str, int)
        Up to three deviations with the fewest differing mask positions, when nothing
        reproduces the file.
    text : str
        One line for people.
    """
    reproduced: tuple
    combinations: tuple
    baseline: bool
    closest: tuple
    text: str


def deviations(case: Case) -> tuple:
    """The ``(label, kwargs)`` deviations tried for ``case``: ``reference.DEVIATIONS`` of its
    method, and for SRigL ``gamma_sal`` at the library default 0.3 when the case's differs.

    Labels read like the call: ``"n_keep_offset=-1"``, ``"ablation_test='real'"``,
    ``"drop_fraction_dtype=float32"``.
    """
    found = [(f"{name}={_show(value)}", {name: value})
             for name, values in reference.DEVIATIONS.get(case.method, {}).items()
             for value in sorted(values, key=_smallest_first)]
    if case.method == "srigl" and case.item("gamma_sal") != LIBRARY_GAMMA_SAL:
        found.append((f"gamma_sal={LIBRARY_GAMMA_SAL}", {"gamma_sal": LIBRARY_GAMMA_SAL}))
    return tuple(found)


def _smallest_first(value):
    """Counts by size (``n_keep_offset``: -1, 1, -2, 2); other values keep their order."""
    return abs(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _show(value) -> str:
    if isinstance(value, type):                         # a dtype such as numpy.float32
        return np.dtype(value).name
    return f"{value:+d}" if isinstance(value, int) and not isinstance(value, bool) \
        else repr(value)


def explain(case: Case, *, pairs: bool = True) -> Explanation:
    """Try every named deviation (then pairs) on ``case`` and report those that reproduce it.

    Parameters
    ----------
    case : Case
        With stored outputs (``mask_out``, ``weight_out``, ...).
    pairs : bool
        Try pairs of deviations when no single one reproduces the file.

    Returns
    -------
    Explanation
    """
    if case.method == "set":
        return Explanation((), (), False, (), "explain: SET grows at random; no named "
                                              "deviations to try")
    baseline = _reproduces(case, {})
    if baseline == 0:
        return Explanation((), (), True, (), "explain: no deviation needed: the reference "
                           "with canonical ties (tie_break='stable') reproduces the file")
    if _torch_ties_reproduce(case):
        return Explanation(("tie_break='torch_cpu'",), (), False, (), "explain: reproduced "
                           "exactly by tie_break='torch_cpu' (srigl-ref's update in the "
                           "authors' PyTorch CPU tie order): only how ties were broken "
                           "differs")
    tried = deviations(case)
    misses = {label: _reproduces(case, kw) for label, kw in tried}
    single = tuple(label for label, miss in misses.items() if miss == 0)
    combos = ()
    if not single and pairs:
        combos = tuple(f"{a} + {b}" for (a, ka), (b, kb) in itertools.combinations(tried, 2)
                       if _compatible(ka, kb) and _reproduces(case, {**ka, **kb}) == 0)
    if not single and not combos:
        combos = tuple(f"all of {name} ({' + '.join(f'{k}={_show(v)}' for k, v in kw.items())})"
                       for name, kw in LIBRARIES.get(case.method, {}).items()
                       if _reproduces(case, kw) == 0)
    closest = ()
    if not single and not combos:
        ranked = sorted((miss, label) for label, miss in misses.items()
                        if miss is not None and (baseline is None or miss < baseline))
        closest = tuple((label, miss) for miss, label in ranked[:3])
    return Explanation(single, combos, False, closest,
                       _text(single, combos, closest, baseline))


def _torch_ties_reproduce(case: Case) -> bool:
    """Whether srigl-ref's fast update with ``tie_break="torch_cpu"`` gives the file."""
    a = case.arrays
    update = srigl_update if case.method == "srigl" else rigl_update
    try:
        ours = update(a["weight"], a["mask"], a["grad"], **case.update_kwargs("torch_cpu"))
    except ValueError:
        return False
    return not differing_outputs(case, ours)


def _compatible(a: dict, b: dict) -> bool:
    return not set(a) & set(b)


def _reproduces(case: Case, kwargs: dict) -> int | None:
    """0 if the reference with ``kwargs`` reproduces the file; else the number of differing
    mask positions (plus 1, so a mask-equal miss is not 0); None if the reference refused."""
    a = case.arrays
    kw = case.update_kwargs("stable")
    kw.update(kwargs)
    try:
        if case.method == "srigl":
            update = reference.srigl_update(a["weight"], a["mask"], a["grad"], **kw)
        else:
            update = reference.rigl_update(a["weight"], a["mask"], a["grad"], **kw)
    except ValueError:
        if case.method != "srigl" or case.expected["mask_out"].any():
            return None
        update = _emptied(case, kw)   # e.g. keep_alive=False ablates every neuron
    if not differing_outputs(case, update):
        return 0
    return 1 + int(np.count_nonzero(case.expected["mask_out"] != update.mask))


def _emptied(case: Case, kw: dict) -> TopologyUpdate:
    """The layer with every neuron ablated, where the reference refuses to go (no neuron
    left to hold the budget) and the file went: an empty mask, ``W * 0`` (signs kept)."""
    a, exp = case.arrays, case.expected
    empty = np.zeros(a["mask"].shape, np.bool_)
    momentum = kw["momentum"]
    if momentum is not None and kw.get("mask_momentum", True):
        momentum = momentum * empty
    k = int(exp["k_out"]) if "k_out" in exp else -1          # undefined: not compared
    n_ones = int(np.count_nonzero(a["mask"]))
    return TopologyUpdate(mask=empty, weight=a["weight"] * empty, momentum=momentum,
                          kept=empty, ablated=np.arange(empty.shape[0], dtype=np.int64),
                          fan_in=k, threshold=-1, n_pruned=n_ones, n_grown=0, n_keep=0,
                          n_prune=n_ones)


def _text(single, combos, closest, baseline) -> str:
    if single:
        return ("explain: reproduced exactly by the deviation" + ("s" if len(single) > 1
                                                                    else "")
                + " " + ", ".join(single) + " (each alone; srigl_ref.dst.reference)")
    if combos:
        return ("explain: no single deviation reproduces the file; these combinations do: "
                + ", ".join(combos))
    near = ", ".join(f"{label} ({miss - 1} mask positions off)" for label, miss in closest)
    if baseline is None:
        base = ""
    elif baseline == 1:
        base = "; the reference's mask equals the file's (values differ)"
    else:
        base = f"; the reference without deviation is {baseline - 1} mask positions off"
    return ("explain: no named deviation (alone, in pairs or as a whole library) reproduces "
            "the file" + base + (f"; closer: {near}" if near else ", and none comes closer"))
