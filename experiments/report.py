"""The results report of the sweep (issue 7): ``docs/results.md`` from ``ROOT/**/summary.json``.

Every number in the report is computed here from the runs' own ``summary.json`` files (read
with ``checkpoint.read_summary``); nothing else is read. The report holds, per data set and
model: accuracy mean ± std over seeds per method and density, realised density, ITOP rate,
wall time, ablated neurons per layer; the ``gamma_sal`` ablation study; PNG plots when
matplotlib is importable; and "paper vs here", a verdict per claim by the rules of
``VERDICT_RULES``, with the command and package versions that produced it.

    python bench/report.py                                  # runs/sweep -> docs/results.md
    python bench/report.py --root /tmp/q --out /tmp/q/results.md
"""
from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.harness import environment  # noqa: E402
from experiments.sweep import GRIDS, LABELS, build_grid, label  # noqa: E402
from srigl_ref import checkpoint  # noqa: E402
from srigl_ref.nn.models import MODELS  # noqa: E402
from srigl_ref.train import TrainConfig  # noqa: E402

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
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
  least half do not hold; *inconclusive* otherwise (noise, or mixed)."""


# ---------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One finished run: its folder, configuration and summary."""
    path: Path
    config: TrainConfig
    summary: dict

    @property
    def label(self) -> str:
        return label(self.config)

    @property
    def ablated_fraction(self) -> float:
        """Ablated neurons / neurons over the layers ablation may touch (all but the
        classifier when ``exempt_last_layer``)."""
        layers = self.summary["layers"]
        if self.config.exempt_last_layer:
            layers = layers[:-1]
        return (sum(layer["n_ablated"] for layer in layers)
                / sum(layer["shape"][0] for layer in layers))


def load_runs(root) -> list[Run]:
    """Every ``summary.json`` below ``root``, validated, in path order.

    Parameters
    ----------
    root : path-like
        The sweep root.

    Returns
    -------
    list of Run

    Raises
    ------
    ValueError
        If ``root`` is not a folder, holds no ``summary.json``, or one is invalid (naming
        the file: a broken run is rerun by the sweep, never silently left out here).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root == {str(root)!r}: no such folder")
    runs = []
    for path in sorted(root.glob("**/summary.json")):
        summary = checkpoint.read_summary(path)
        try:
            config = TrainConfig.from_dict(summary["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: no valid 'config' ({e})") from None
        runs.append(Run(path.parent, config, summary))
    if not runs:
        raise ValueError(f"root == {str(root)!r}: no summary.json below it; run "
                         f"bench/sweep.py --out {root} first")
    return runs


def group_runs(runs) -> dict:
    """Runs by data set and model, then by method label and density.

    Parameters
    ----------
    runs : iterable of Run

    Returns
    -------
    dict
        ``{(dataset, model): {(label, density): [Run, ...]}}``, models in ``MODELS`` order.
    """
    groups = {}
    for run in sorted(runs, key=lambda r: (r.config.dataset, MODELS.index(r.config.model))):
        cells = groups.setdefault((run.config.dataset, run.config.model), {})
        cells.setdefault((run.label, run.config.density), []).append(run)
    return groups


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


def _acc(cells, lab, density):
    return [r.summary["test_accuracy"] for r in cells.get((lab, density), [])]


def _densities(cells, *labels) -> list[float]:
    """Densities (descending: sparsity rising) at which every label has runs."""
    sets = [{d for (lab, d) in cells if lab == want} for want in labels]
    return sorted(set.intersection(*sets), reverse=True) if sets else []


def _pairwise(claim, cells, pairs, compare) -> ClaimResult:
    rows, verdicts = [], []
    for a, b in pairs:
        for d in _densities(cells, a, b):
            c = compare(_acc(cells, a, d), _acc(cells, b, d))
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
        ``{(label, density): [Run, ...]}`` of one model (``group_runs``).
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
    ds = _densities(cells, "srigl", "srigl-noabl")
    if len(ds) < 2:
        return ClaimResult(2, INCONCLUSIVE, "needs SRigL with and without ablation at 2 or "
                           "more densities", [])
    gains = {d: beats(_acc(cells, "srigl", d), _acc(cells, "srigl-noabl", d)) for d in ds}
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
    ds = _densities(cells, "srigl")
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


def all_claims(cells, tolerance: float) -> list[ClaimResult]:
    """The claims' results on one model, in order 1, 2, 3a, 3b, 4.

    Parameters
    ----------
    cells : dict
        As ``claim_1``.
    tolerance : float
        Claim 1's, a fraction.

    Returns
    -------
    list of ClaimResult
    """
    c3a, c3b = claim_3(cells)
    return [claim_1(cells, tolerance), claim_2(cells), c3a, c3b, claim_4(cells)]


# ---------------------------------------------------------------------- plots
def make_plots(groups, out: Path) -> list[Path] | None:
    """PNG plots beside ``out``: accuracy vs sparsity per model, ablated share vs sparsity.

    Parameters
    ----------
    groups : dict
        As returned by ``group_runs``.
    out : Path
        The report's path; plot ``<stem>_<what>.png`` goes in its folder.

    Returns
    -------
    list of Path or None
        The files written; None when matplotlib cannot be imported.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    files = []
    for (dataset, model), cells in groups.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for lab in [lab for lab in LABELS if lab != "dense"]:
            ds = _densities(cells, lab)
            if ds:
                stats = [mean_std(_acc(cells, lab, d)) for d in ds]
                ax.errorbar(ds, [100 * m for m, _, _ in stats],
                            yerr=[100 * np.nan_to_num(s) for _, s, _ in stats],
                            marker="o", capsize=3, label=lab)
        if _densities(cells, "dense"):
            ax.axhline(100 * np.mean(_acc(cells, "dense", 1.0)), color="k", ls="--",
                       label="dense")
        ax.set(ylabel="test accuracy (%)",
               title=f"{model} on {dataset}: accuracy (mean ± std over seeds)")
        _sparsity_axis(ax, {d for (lab, d) in cells if lab != "dense"})
        ax.legend(fontsize=8)
        files.append(_save(fig, out.with_name(f"{out.stem}_accuracy_{dataset}_{model}.png")))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    all_ds = set()
    for (dataset, model), cells in groups.items():
        ds = _densities(cells, "srigl")
        if ds:
            shares = [[r.ablated_fraction for r in cells[("srigl", d)]] for d in ds]
            ax.plot(ds, [100 * np.mean(s) for s in shares], marker="o",
                    label=f"{model} ({dataset})")
            all_ds.update(ds)
    ax.set(ylabel="ablated neurons (%)",
           title="SRigL: share of neurons ablated (mean over seeds)")
    _sparsity_axis(ax, all_ds)
    ax.legend(fontsize=8)
    files.append(_save(fig, out.with_name(f"{out.stem}_ablated.png")))
    plt.close(fig)
    return files


def _sparsity_axis(ax, densities) -> None:
    """Densities on a log scale, sparsest right, ticks labelled as sparsity (%)."""
    if densities:
        ax.set_xscale("log")
        ax.set_xticks(sorted(densities), [f"{100 * (1 - d):g}" for d in sorted(densities)])
        ax.minorticks_off()
        ax.invert_xaxis()
    ax.set_xlabel("sparsity (%), log scale of density")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------- markdown
def md_table(header, rows) -> list[str]:
    """A markdown table's lines.

    Parameters
    ----------
    header : sequence of str
    rows : iterable of sequence
        Cells, formatted with ``str``.

    Returns
    -------
    list of str
    """
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _main_labels(cells) -> list[str]:
    return [lab for lab in LABELS if any(k[0] == lab for k in cells)]


def model_section(dataset, model, cells) -> list[str]:
    """Accuracy table, per-cell details and ablated neurons per layer of one model.

    Parameters
    ----------
    dataset, model : str
    cells : dict
        As ``claim_1``.

    Returns
    -------
    list of str
        Markdown lines.
    """
    first = next(iter(cells.values()))[0].config
    lines = [f"### {model} on {dataset}", "",
             f"{first.epochs} epochs, batch {first.batch_size}, "
             f"{'all' if first.n_train is None else first.n_train} training examples, "
             f"{first.distribution} layer densities. Test accuracy (%), mean ± std over "
             f"seeds (seeds per cell in the details table):", ""]
    labels = _main_labels(cells)
    densities = sorted({d for (lab, d) in cells if lab in labels and lab != "dense"},
                       reverse=True)
    rows = []
    for lab in labels:
        if lab == "dense":
            rows.append([lab] + [fmt_pm(_acc(cells, lab, 1.0))] * len(densities))
        else:
            rows.append([lab] + [fmt_pm(_acc(cells, lab, d)) if (lab, d) in cells else "-"
                                 for d in densities])
    lines += md_table(["method"] + [f"density {d:g}" for d in densities], rows)
    lines += ["", "Details (realised density over the sparse-able weights, ITOP rate = "
              "share of weights ever active, seconds = training time per run as recorded by the "
              "trainer, for a resumed run that of its last invocation only):",
              ""]
    rows = []
    for lab in labels:
        for d in ([1.0] if lab == "dense" else densities):
            rs = cells.get((lab, d), [])
            if rs:
                rows.append([lab, f"{d:g}", len(rs), fmt_pm(_acc(cells, lab, d)),
                             fmt_pm([r.summary["density"] for r in rs], 1.0, 4),
                             fmt_pm([r.summary["itop_rate"] for r in rs], 1.0, 3),
                             f"{np.mean([r.summary['seconds'] for r in rs]):.1f}"])
    lines += md_table(["method", "target density", "seeds", "accuracy (%)",
                       "realised density", "ITOP rate", "seconds"], rows)
    ds = _densities(cells, "srigl")
    if ds:
        names = [layer["name"] for layer in cells[("srigl", ds[0])][0].summary["layers"]]
        lines += ["", "Ablated neurons per layer (SRigL; mean over seeds / neurons in the "
                  "layer; the classifier is exempt):", ""]
        rows = []
        for d in ds:
            rs = cells[("srigl", d)]
            row = [f"{d:g}"]
            for i, name in enumerate(names):
                n = np.mean([r.summary["layers"][i]["n_ablated"] for r in rs])
                row.append(f"{n:.1f} / {rs[0].summary['layers'][i]['shape'][0]}")
            rows.append(row + [fmt_pm([r.ablated_fraction for r in rs], 100.0, 1)])
        lines += md_table(["density"] + names + ["ablated share (%)"], rows)
    return lines + [""]


def ablation_section(groups) -> list[str]:
    """The ``gamma_sal`` study: SRigL accuracy and ablated share per gamma and density
    (densities at which more than one ``gamma_sal`` ran).

    Parameters
    ----------
    groups : dict
        As returned by ``group_runs``.

    Returns
    -------
    list of str
        Markdown lines.
    """
    lines = []
    for (dataset, model), cells in groups.items():
        by_gamma = {}
        for runs in cells.values():
            for r in runs:
                if r.config.method == "srigl" and r.config.ablation:
                    by_gamma.setdefault(r.config.gamma_sal, {}).setdefault(
                        r.config.density, []).append(r)
        densities = sorted({d for g in by_gamma.values() for d in g
                            if sum(d in g2 for g2 in by_gamma.values()) > 1}, reverse=True)
        if not densities:
            continue
        rows = []
        for gamma in sorted(by_gamma):
            row = [f"{gamma:g}"]
            for d in densities:
                rs = by_gamma[gamma].get(d, [])
                row.append(f"{fmt_pm([r.summary['test_accuracy'] for r in rs])} "
                           f"({100 * np.mean([r.ablated_fraction for r in rs]):.1f} %)"
                           if rs else "-")
            rows.append(row)
        lines += [f"### {model} on {dataset}", "",
                  "SRigL test accuracy (%), mean ± std over seeds, and in brackets the "
                  "mean share of neurons ablated:", ""]
        lines += md_table(["gamma_sal"] + [f"density {d:g}" for d in densities], rows)
        lines.append("")
    return lines or ["No runs of the ablation study (`bench/sweep.py --grid ablation`).", ""]


def sweep_command(runs, root) -> str:
    """The ``bench/sweep.py`` command whose grid the runs are, or the smallest grid they
    are a part of (then marked incomplete).

    Parameters
    ----------
    runs : sequence of Run
    root : path-like
        The sweep root, as given to the report.

    Returns
    -------
    str
        Markdown.
    """
    found = {r.config for r in runs}
    best = None
    for quick in (False, True):
        for grid in GRIDS:
            want = set(build_grid(grid, quick=quick))
            if found <= want and (best is None or len(want) < len(best[2])):
                best = (grid, quick, want)
    if best is None:
        return (f"{len(found)} runs that are not all of one grid of `bench/sweep.py` (the "
                f"`srigl-ref train` configuration of each is in its summary.json)")
    grid, quick, want = best
    command = (f"`python bench/sweep.py --grid {grid}{' --quick' if quick else ''} "
               f"--out {shlex.quote(str(root))}`")
    if found == want:
        return f"{command} (all {len(want)} runs)"
    return f"{command}, **incomplete: {len(found)} of its {len(want)} runs**"


def _git() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + (" with uncommitted changes" if dirty else "")


def _versions() -> str:
    env = environment()
    try:
        import matplotlib
        mpl = matplotlib.__version__
    except ImportError:
        mpl = "not installed"
    import srigl_ref
    return (f"srigl-ref {srigl_ref.__version__} (git {_git()}), Python {env['python']}, "
            f"NumPy {env['numpy']}, SciPy {env['scipy']}, Numba {env['numba']}, "
            f"matplotlib {mpl}; {env['cpu']} ({env['cpu_count']} cores)")


def render(runs, root, out: Path, command: str, tolerance: float, plots) -> str:
    """The whole report as markdown.

    Parameters
    ----------
    runs : list of Run
    root : path
        The sweep root (as named in the command).
    out : Path
        The report's path (plot links are relative to its folder).
    command : str
        The command line that produced the report.
    tolerance : float
        Claim 1's tolerance, a fraction (0.01 = 1 pp).
    plots : list of Path or None
        The plot files, or None when they were skipped.
    """
    groups = group_runs(runs)
    lines = ["# Results: the paper's claims at laptop scale", "",
             "Generated by `bench/report.py` from the runs' own `summary.json` files; do not "
             "edit by hand.", "",
             f"- Report command: `{command}`",
             f"- Runs: {len(runs)} from {sweep_command(runs, root)}",
             f"- Total training time: {sum(r.summary['seconds'] for r in runs) / 3600:.2f} h "
             f"(sum over runs of the trainer's own seconds)",
             f"- Versions: {_versions()}", "",
             "## Paper vs here", ""]
    results = {key: all_claims(cells, tolerance) for key, cells in groups.items()}
    rows = []
    for (dataset, model), claims in results.items():
        rows += [[str(c.claim), f"{model} ({dataset})", f"**{c.verdict}**", c.evidence]
                 for c in claims]
    lines += [f"- ({k}) {v}" for k, v in CLAIMS.items()] + [""]
    lines += md_table(["claim", "model", "verdict", "evidence"], rows)
    lines += ["", "How a verdict is decided:", "", VERDICT_RULES.format(tol=tolerance * 100),
              ""]
    for (dataset, model), claims in results.items():
        lines += [f"### Evidence: {model} on {dataset}", ""]
        table = [[str(c.claim)] + row for c in claims for row in c.table]
        lines += md_table(["claim", "comparison", "density", "difference ± 2 se (pp)",
                           "verdict"], table) if table else ["No comparisons possible."]
        lines.append("")
    lines += ["## Accuracy, density, ITOP rate, time and ablated neurons", ""]
    for (dataset, model), cells in groups.items():
        lines += model_section(dataset, model, cells)
    lines += ["## Ablation study: gamma_sal", ""] + ablation_section(groups)
    lines += ["## Plots", ""]
    if plots is None:
        lines.append("Plots skipped: matplotlib is not installed (install it, e.g. "
                     "`pip install matplotlib`, and rerun the report command).")
    else:
        lines += [f"![{p.stem}]({p.relative_to(out.parent).as_posix()})" for p in plots]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad arguments or runs)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(prog="bench/report.py", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="runs/sweep", help="sweep root (default %(default)s)")
    ap.add_argument("--out", default="docs/results.md",
                    help="report file; plots go beside it (default %(default)s)")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE_PP,
                    help="claim 1: SRigL matches RigL within this many accuracy points "
                    "(default %(default)s)")
    args = ap.parse_args(argv)
    try:
        if not args.tolerance > 0:
            raise ValueError(f"tolerance == {args.tolerance}, must be > 0")
        runs = load_runs(args.root)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        plots = make_plots(group_runs(runs), out)
        text = render(runs, args.root, out, shlex.join(["python", "bench/report.py", *argv]),
                      args.tolerance / 100, plots)
        checkpoint.atomic_write(out, lambda f: f.write(text.encode()))
    except (ValueError, OSError) as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 2
    print(f"report.py: wrote {out}" + ("" if plots is None else
                                       f" and {len(plots)} plot(s) beside it"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
