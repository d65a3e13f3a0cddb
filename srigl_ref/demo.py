"""``srigl-ref demo``: one SRigL update of a small layer, stage by stage, drawn as text.

Every stage is a step function of ``srigl_ref.dst.reference`` (docs/algorithm.md §6, §7);
the final mask is checked against the fast ``srigl_ref.srigl_update``. The layer is random:
a constant fan-in mask, Gaussian weights and gradient, and a few weak neurons (weights and
gradient scaled by 1e-3) so that ablation has something to do.
"""
from __future__ import annotations

import numpy as np

from ._validate import check_int, check_real, check_sparsity
from .dst import reference, topology
from .dst.masks import random_fan_in_mask
from .dst.sparsity import constant_fan_in, fan_in_budget

MAX_OUT, MAX_IN = 64, 96
LEGEND = ("# active   . inactive   x dropped   + grown   o dropped and regrown   "
          "s salient   - ablated row")


def parse_shape(text: str) -> tuple[int, int]:
    """``"OUTxIN"`` -> ``(out, in)``, each in [1, MAX_OUT] and [1, MAX_IN] (to fit a screen)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shape == {text!r}, must be OUTxIN, e.g. 8x16")
    out, fan = (int(p) for p in parts)
    check_int("--shape OUT", out, low=1, high=MAX_OUT)
    check_int("--shape IN", fan, low=1, high=MAX_IN)
    return out, fan


def random_layer(shape, sparsity: float, rng: np.random.Generator, weak_fraction=0.25):
    """A constant fan-in layer: ``(weight, mask, grad)``, float32 ``[out, in]`` and bool.

    About ``weak_fraction`` of the neurons (at least one when ``out > 1``) get weights and
    gradient scaled by 1e-3, so they hold few salient positions.
    """
    out, fan = shape
    k = constant_fan_in(shape, sparsity)
    mask = random_fan_in_mask(shape, k, rng)                               # [out, in] bool
    weak = rng.random(out) < weak_fraction                                 # [out] bool
    if out > 1 and not weak.any():
        weak[rng.integers(out)] = True
    scale = np.where(weak, 1e-3, 1.0)[:, None]                             # [out, 1]
    weight = (rng.standard_normal(shape) * scale * mask).astype(np.float32)
    grad = (rng.standard_normal(shape) * scale).astype(np.float32)
    return weight, mask, grad


def _draw(cells: np.ndarray, notes) -> list[str]:
    """One text line per row: the row's cells, then its note."""
    width = len(str(cells.shape[0] - 1))
    return [f"  {i:>{width}} {''.join(row)}  {note}" for i, (row, note) in
            enumerate(zip(cells, notes))]


def _cells(mask: np.ndarray, mark: str = "#") -> np.ndarray:
    return np.where(mask, mark, ".")


def explain_update(weight, mask, grad, *, sparsity: float, drop_fraction: float,
                   gamma_sal: float) -> str:
    """The text of one SRigL update of ``weight [out, in]``, stage by stage."""
    out, fan = weight.shape
    budget = fan_in_budget(weight.shape, sparsity)
    k_before = budget // out
    ws, gs = np.abs(weight), np.abs(grad)                                  # [out, in]
    lines = [f"SRigL update of a {out}x{fan} layer: sparsity {sparsity}, drop fraction "
             f"{drop_fraction}, gamma_sal {gamma_sal}",
             f"budget B = int(N * (1 - S)) = {budget}; fan-in k = B // out = {k_before}",
             f"legend: {LEGEND}", "", "mask before the update (row: active count)"]
    lines += _draw(_cells(mask), [f"{n}" for n in mask.sum(axis=1)])

    counts = reference.prune_keep_counts(mask, weight, drop_fraction)
    n_drop = int(counts.n_ones * drop_fraction)                         # before the guard
    guard = ("no guard" if counts.n_keep == counts.n_ones - n_drop else
             f"only {counts.n_keep} weights are nonzero: the nnz guard lowers n_keep to "
             f"{counts.n_keep}, so n_prune = {counts.n_prune}")
    lines += ["", "step 1-2  counts (docs/algorithm.md §6.2)",
              f"  n_ones = {counts.n_ones}, int(n_ones * df) = {n_drop}, n_keep = "
              f"{counts.n_ones - n_drop} ({guard})"]

    salient = (reference.top_n(ws, counts.n_keep)
               | reference.top_n(gs, counts.n_prune))                      # [out, in] bool
    per_row = salient.sum(axis=1)                                          # [out] int64
    min_neurons = min(budget // fan, out - 1)
    if gamma_sal > 0:
        threshold0 = reference.salient_threshold(gamma_sal, budget, counts.n_ones, (out, fan))
        ablated, threshold = reference.ablate_neurons(per_row, threshold0, min_neurons)
    else:                                                  # gamma_sal == 0: ablation is off
        threshold0 = threshold = 0
        ablated = np.zeros(0, np.int64)
    is_ablated = np.zeros(out, np.bool_)
    is_ablated[ablated] = True
    lines += ["", "step 3  salient positions: top-n_keep |W| or top-n_prune |G| (§7)"]
    lines += _draw(_cells(salient, "s"),
                   [f"{c} salient" + ("  < threshold: ablated" if a else "")
                    for c, a in zip(per_row, is_ablated)])
    rule = ("gamma_sal (an absolute count)" if gamma_sal >= 1 else "0 (gamma_sal == 0: no "
            "ablation)" if gamma_sal == 0 else "max(1, int(gamma_sal * (B // out)))")
    lines += [f"  threshold = {rule} = {threshold0}; keep-alive: "
              f"the best {min_neurons + 1} neuron(s) (B // F + 1) survive -> threshold "
              f"{threshold}", f"  ablated neurons (rank order): {ablated.tolist()}"]

    k = reference.fan_in_after_ablation(budget, weight.shape, ablated.size, sparsity)
    lines += ["", f"step 4  fan-in after ablation: k = B // (out - |A|) = {budget} // "
              f"{out - ablated.size} = {k} (before: {k_before})"]

    keep = reference.keep_set(ws, counts.n_keep, ablated)                  # [out, in] bool
    kept = reference.cap_rows(keep, k)                                     # [out, in] bool
    cells = np.where(kept, "#", np.where(mask, "x", "."))
    cells[is_ablated] = "-"
    notes = []
    for i in range(out):
        n, c = int(keep[i].sum()), int(kept[i].sum())
        notes.append("ablated" if is_ablated[i] else
                     f"{c} kept" + (f" (cap: {n} -> {k})" if n > c else ""))
    lines += ["", f"step 5  keep set: the {counts.n_keep} largest |W| outside ablated rows, "
              f"at most k = {k} per row (§6.5)"]
    lines += _draw(cells, notes)

    grown = reference.regrow_rows(kept, gs, ablated, k)                    # [out, in] bool
    new = reference.apply_new_mask(weight, mask, kept, grown, 0.0, None)
    cells = np.where(kept, "#", np.where(grown & mask, "o", np.where(
        grown, "+", np.where(mask, "x", "."))))
    cells[is_ablated] = "-"
    revived = new.mask.any(axis=1) & ~mask.any(axis=1)
    notes = ["ablated" if is_ablated[i] else
             f"+{int(grown[i].sum())} grown by |G|" + (" (revived)" if revived[i] else "")
             for i in range(out)]
    lines += ["", "step 6-8  per-row regrowth to exactly k by the largest |G| outside the "
              "keep set, then M_new = K | grow (§6.6-6.8)"]
    lines += _draw(cells, notes)

    fast = topology.srigl_update(weight, mask, grad, sparsity=sparsity,
                                 drop_fraction=drop_fraction, gamma_sal=gamma_sal)
    agree = np.array_equal(fast.mask, new.mask) and np.array_equal(fast.ablated, ablated)
    lines += ["", f"result: {new.n_pruned} pruned, {new.n_grown} grown, {ablated.size} "
              f"ablated, {int(revived.sum())} revived; k {k_before} -> {k}; active "
              f"{int(new.mask.sum())} <= B = {budget}",
              f"the fast kernels (srigl_ref.srigl_update) give the same mask and ablated "
              f"set: {'yes' if agree else 'NO'}"]
    return "\n".join(lines)


def demo(shape="8x16", sparsity=0.75, drop_fraction=0.3, gamma_sal=0.3, seed=0) -> str:
    """The text of ``srigl-ref demo`` for a random layer (see ``random_layer``).

    Raises
    ------
    ValueError
        A bad shape, sparsity outside [0, 1), drop fraction outside [0, 1], a negative
        gamma_sal, or a layer whose budget leaves a neuron nothing (``k == 0``).
    """
    shape = parse_shape(shape)
    check_sparsity("--sparsity", sparsity)
    check_real("--drop-fraction", drop_fraction, low=0.0, high=1.0)
    check_real("--gamma-sal", gamma_sal, low=0.0)
    check_int("--seed", seed, low=0)
    weight, mask, grad = random_layer(shape, sparsity, np.random.default_rng(seed))
    return explain_update(weight, mask, grad, sparsity=sparsity, drop_fraction=drop_fraction,
                          gamma_sal=gamma_sal)
