"""The paper's claims, decided on a sweep's runs: the statistics (mean, spread, standard
error of a difference) and the verdict rules of ``VERDICT_RULES``.

Everything here works on the cells of one model (``runs.group_runs``): only runs of status
``"ok"`` enter a statistic; a claim whose methods have failed runs says how many it left out,
and which. Rendering (tables, plots, markdown) is ``experiments/report.py``'s job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
#: A cell whose accuracy std over seeds exceeds this many points shows its per-seed values.
SPREAD_PP = 5.0
#: Half-width of the "SRigL matches RigL" band, accuracy points (``--tolerance``).
TOLERANCE_PP = 1.0
CLAIMS = {
    1: "SRigL matches RigL's accuracy across sparsities.",
    2: "Neuron ablation matters most at very high sparsity (paper: CIFAR-10 ResNet-18 at "
       "99 % sparsity, 91.47 % without ablation vs 92.79 % with; ViT at 90 %, 71.26 % vs "
       "76.00 %).",
    "3a": "Dynamic sparse training (SET, RigL, SRigL) beats static sparse training.",
    "3b": "RigL-style (gradient) regrowth (RigL, SRigL) beats SET's random regrowth.",
    4: "Ablation removes a growing share of neurons as sparsity rises.",
}
VERDICT_RULES = """\
Differences are of mean test accuracy over seeds, in percentage points (pp), with the
standard error `se = sqrt(sa^2/na + sb^2/nb)` (sample std, seeds unpaired); `2 se` is the
noise band. A comparison with fewer than 2 seeds on either side is inconclusive.

- **A beats B** (claims 2, 3a, 3b, 4): *holds* if `d - 2 se > 0`; *does not hold* if
  `d + 2 se <= 0`; *inconclusive* otherwise (the band contains 0).
- **A matches B** (claim 1, tolerance `t` = {tol:g} pp): *holds* if `|d| + 2 se <= t`;
  *does not hold* if `|d| - 2 se > t`; *inconclusive* otherwise.
- **Claim 2** (per model): the ablation gain `g = SRigL - SRigL without ablation` at the
  sparsest density beats 0, *and* beats the gain at the densest density (`se` of a gain
  difference: the root sum of squares); *does not hold* if either comparison does not
  hold; *inconclusive* otherwise.
- **Claim 4** (per model): the ablated share of neurons (hidden layers that may be ablated;
  SRigL) at the sparsest density beats the share at the densest, *and* the mean share does
  not fall anywhere as sparsity rises; *does not hold* if the first comparison does not
  hold; *inconclusive* otherwise.
- **Over densities** (claims 1, 3a, 3b: one cell per density and pair of methods): *holds*
  if no cell does not hold and at least half hold; *does not hold* if no cell holds and at
  least half do not hold; *inconclusive* otherwise (noise, or mixed).
- **Failed runs** (status `diverged` or `at_chance`: a summary without a status is
  `at_chance` when its accuracy is within 2 points of chance) enter no mean, std or
  verdict; a claim whose methods have failed runs names them in its evidence, and the
  report lists them. A cell whose std over seeds exceeds {spread:g} pp shows its per-seed
  values."""


# ---------------------------------------------------------------------- statistics
def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation and count.

    Parameters
    ----------
    values : sequence of float, non-empty

    Returns
    -------
    (float, float, int)
        The std is nan for fewer than 2 values.
    """
    v = np.asarray(values, dtype=np.float64)                 # [n]
    std = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return float(v.mean()), std, int(v.size)


def fmt_pm(values, scale: float = 100.0, digits: int = 2) -> str:
    """Mean ± std as text.

    Parameters
    ----------
    values : sequence of float, non-empty
    scale : float
        Multiplies the values (100: fractions as percent).
    digits : int
        Decimals.

    Returns
    -------
    str
        ``'89.12 ± 0.15'``, or ``'89.12 (n=1)'`` for one value.
    """
    mean, std, n = mean_std(values)
    if n < 2:
        return f"{mean * scale:.{digits}f} (n=1)"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


@dataclass(frozen=True)
class Comparison:
    """``diff`` = mean(a) - mean(b) and its standard error ``se`` (both in the unit of the
    values; ``se`` nan if either side has fewer than 2 values), and the verdict."""
    diff: float
    se: float
    verdict: str

    def fmt(self, scale: float = 100.0) -> str:
        if math.isnan(self.se):
            return f"{self.diff * scale:+.2f} (se n/a)"
        return f"{self.diff * scale:+.2f} ± {2 * self.se * scale:.2f}"


def _diff(a, b) -> tuple[float, float]:
    (ma, sa, na), (mb, sb, nb) = mean_std(a), mean_std(b)
    return ma - mb, math.sqrt(sa ** 2 / na + sb ** 2 / nb)


def positive(diff: float, se: float) -> str:
    """Verdict of "the difference is above 0" (the "A beats B" rule of ``VERDICT_RULES``).

    Parameters
    ----------
    diff : float
    se : float
        Standard error of ``diff`` (nan: too few seeds).

    Returns
    -------
    str
        ``HOLDS``, ``FAILS`` or ``INCONCLUSIVE``.
    """
    if math.isnan(se):
        return INCONCLUSIVE
    if diff - 2 * se > 0:
        return HOLDS
    if diff + 2 * se <= 0:
        return FAILS
    return INCONCLUSIVE


def beats(a, b) -> Comparison:
    """Does ``a`` beat ``b``? The "A beats B" rule of ``VERDICT_RULES``.

    Parameters
    ----------
    a, b : sequence of float, non-empty
        The values of two cells (one per seed).

    Returns
    -------
    Comparison
    """
    d, se = _diff(a, b)
    return Comparison(d, se, positive(d, se))


def matches(a, b, tolerance: float) -> Comparison:
    """Is ``a`` within ``tolerance`` of ``b``? The "A matches B" rule of ``VERDICT_RULES``.

    Parameters
    ----------
    a, b : sequence of float, non-empty
        The values of two cells (one per seed).
    tolerance : float > 0
        In the unit of the values.

    Returns
    -------
    Comparison
    """
    d, se = _diff(a, b)
    if math.isnan(se):
        verdict = INCONCLUSIVE
    elif abs(d) + 2 * se <= tolerance:
        verdict = HOLDS
    elif abs(d) - 2 * se > tolerance:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return Comparison(d, se, verdict)


def overall(verdicts) -> str:
    """One verdict from per-cell verdicts (the "over densities" rule of ``VERDICT_RULES``).

    Parameters
    ----------
    verdicts : iterable of str

    Returns
    -------
    str
        ``INCONCLUSIVE`` for no verdicts.
    """
    verdicts = list(verdicts)
    n_holds, n_fails = verdicts.count(HOLDS), verdicts.count(FAILS)
    if not verdicts:
        return INCONCLUSIVE
    if n_fails == 0 and 2 * n_holds >= len(verdicts):
        return HOLDS
    if n_holds == 0 and 2 * n_fails >= len(verdicts):
        return FAILS
    return INCONCLUSIVE


def large_spread(values) -> bool:
    """Is the sample std of ``values`` (fractions) above ``SPREAD_PP`` points?

    Parameters
    ----------
    values : sequence of float, non-empty

    Returns
    -------
    bool
        False for fewer than 2 values.
    """
    _, std, n = mean_std(values)
    return n > 1 and 100 * std > SPREAD_PP


def _tally(verdicts) -> str:
    return (f"{verdicts.count(HOLDS)} of {len(verdicts)} cells hold, "
            f"{verdicts.count(FAILS)} do not, {verdicts.count(INCONCLUSIVE)} inconclusive")


# ---------------------------------------------------------------------- claims
@dataclass(frozen=True)
class ClaimResult:
    """A claim's verdict on one model, a one-line summary of the evidence and its table."""
    claim: object
    verdict: str
    evidence: str
    table: list


#: The method labels each claim compares (their failed runs are the claim's exclusions).
CLAIM_LABELS = {1: ("srigl", "rigl"), 2: ("srigl", "srigl-noabl"),
                "3a": ("static", "set", "rigl", "srigl"), "3b": ("set", "rigl", "srigl"),
                4: ("srigl",)}


def accuracies(cells, lab: str, density: float) -> list[float]:
    """Test accuracies of a cell's runs (empty when the cell has none)."""
    return [r.accuracy for r in cells.get((lab, density), [])]


def common_densities(cells, *labels) -> list[float]:
    """Densities (descending: sparsity rising) at which every label has runs."""
    sets = [{d for (lab, d) in cells if lab == want} for want in labels]
    return sorted(set.intersection(*sets), reverse=True) if sets else []


def _pairwise(claim, cells, pairs, compare) -> ClaimResult:
    rows, verdicts = [], []
    for a, b in pairs:
        for d in common_densities(cells, a, b):
            c = compare(accuracies(cells, a, d), accuracies(cells, b, d))
            rows.append([f"{a} - {b}", f"{d:g}", c.fmt(), c.verdict])
            verdicts.append(c.verdict)
    if not verdicts:
        return ClaimResult(claim, INCONCLUSIVE, "no runs to compare", [])
    return ClaimResult(claim, overall(verdicts), _tally(verdicts), rows)


def claim_1(cells, tolerance: float) -> ClaimResult:
    """Claim 1: SRigL matches RigL at every density.

    Parameters
    ----------
    cells : dict
        ``{(label, density): [Run, ...]}``: the "ok" runs of one model (``ModelRuns.cells``).
    tolerance : float
        A fraction of accuracy (0.01 = 1 pp).

    Returns
    -------
    ClaimResult
    """
    return _pairwise(1, cells, [("srigl", "rigl")],
                     lambda a, b: matches(a, b, tolerance))


def claim_3(cells) -> tuple[ClaimResult, ClaimResult]:
    """Claims 3a (DST beats static) and 3b (RigL-style regrowth beats SET's).

    Parameters
    ----------
    cells : dict
        As ``claim_1``.

    Returns
    -------
    (ClaimResult, ClaimResult)
    """
    return (_pairwise("3a", cells, [(m, "static") for m in ("set", "rigl", "srigl")], beats),
            _pairwise("3b", cells, [(m, "set") for m in ("rigl", "srigl")], beats))


def claim_2(cells) -> ClaimResult:
    """Claim 2: the ablation gain at the sparsest density is positive and above the
    densest's.

    Parameters
    ----------
    cells : dict
        As ``claim_1``.

    Returns
    -------
    ClaimResult
    """
    ds = common_densities(cells, "srigl", "srigl-noabl")
    if len(ds) < 2:
        return ClaimResult(2, INCONCLUSIVE, "needs SRigL with and without ablation at 2 or "
                           "more densities", [])
    gains = {d: beats(accuracies(cells, "srigl", d), accuracies(cells, "srigl-noabl", d))
             for d in ds}
    rows = [["gain srigl - srigl-noabl", f"{d:g}", g.fmt(), g.verdict]
            for d, g in gains.items()]
    sparse, dense = gains[ds[-1]], gains[ds[0]]
    trend_d, trend_se = sparse.diff - dense.diff, math.hypot(sparse.se, dense.se)
    trend = Comparison(trend_d, trend_se, positive(trend_d, trend_se))
    rows.append([f"gain at {ds[-1]:g} - gain at {ds[0]:g}", "", trend.fmt(), trend.verdict])
    verdicts = [sparse.verdict, trend.verdict]
    verdict = (FAILS if FAILS in verdicts else HOLDS if verdicts == [HOLDS, HOLDS]
               else INCONCLUSIVE)
    evidence = (f"gain {sparse.fmt()} pp at density {ds[-1]:g} vs {dense.fmt()} pp at "
                f"{ds[0]:g}")
    return ClaimResult(2, verdict, evidence, rows)


def claim_4(cells) -> ClaimResult:
    """Claim 4: the ablated share of neurons grows with sparsity (SRigL runs).

    Parameters
    ----------
    cells : dict
        As ``claim_1``.

    Returns
    -------
    ClaimResult
    """
    ds = common_densities(cells, "srigl")
    if len(ds) < 2:
        return ClaimResult(4, INCONCLUSIVE, "needs SRigL at 2 or more densities", [])
    shares = {d: [r.ablated_fraction for r in cells[("srigl", d)]] for d in ds}
    rows = [["ablated share (srigl)", f"{d:g}", fmt_pm(v), ""] for d, v in shares.items()]
    c = beats(shares[ds[-1]], shares[ds[0]])
    means = [np.mean(shares[d]) for d in ds]
    monotone = all(b >= a for a, b in zip(means, means[1:]))
    rows.append([f"share at {ds[-1]:g} - share at {ds[0]:g}", "", c.fmt(), c.verdict])
    if c.verdict == FAILS:
        verdict = FAILS
    else:
        verdict = HOLDS if c.verdict == HOLDS and monotone else INCONCLUSIVE
    evidence = (f"{np.mean(shares[ds[-1]]) * 100:.1f} % of neurons ablated at density "
                f"{ds[-1]:g} vs {np.mean(shares[ds[0]]) * 100:.1f} % at {ds[0]:g}"
                + ("" if monotone else "; the share falls somewhere in between"))
    return ClaimResult(4, verdict, evidence, rows)


def excluded_note(failed) -> str:
    """``'excluded 2 failed runs: lenet5 rigl d0.01 s0 (at_chance, 10.00 %), ...'``.

    Parameters
    ----------
    failed : sequence of Run, non-empty

    Returns
    -------
    str
    """
    return (f"excluded {len(failed)} failed run{'s' if len(failed) > 1 else ''}: "
            + ", ".join(r.describe() for r in failed))


def all_claims(group, tolerance: float) -> list[ClaimResult]:
    """The claims' results on one model, in order 1, 2, 3a, 3b, 4; a claim whose methods
    have failed runs says so in its evidence (``excluded_note``).

    Parameters
    ----------
    group : ModelRuns
        The runs of one model (``runs.group_runs``).
    tolerance : float
        Claim 1's, a fraction.

    Returns
    -------
    list of ClaimResult
    """
    cells = group.cells
    c3a, c3b = claim_3(cells)
    results = []
    for c in [claim_1(cells, tolerance), claim_2(cells), c3a, c3b, claim_4(cells)]:
        failed = group.failed_among(CLAIM_LABELS[c.claim])
        if failed:
            c = ClaimResult(c.claim, c.verdict, f"{c.evidence}; {excluded_note(failed)}",
                            c.table)
        results.append(c)
    return results
