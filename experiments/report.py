"""The results report of the sweep: ``docs/results.md`` from ``ROOT/**/summary.json``.

Every number in the report is computed from the runs' own ``summary.json`` files
(``experiments/runs.py`` reads them, ``experiments/claims.py`` decides the claims); this
module renders them: per data set and model, accuracy mean ± std over seeds per method and
density, realised density, ITOP rate, wall time, ablated neurons per layer; the failed runs
(diverged, at chance: excluded from every mean and verdict, and listed) and per-seed values of
cells with a large spread; where neuron ablation fires and what it changes; the
``gamma_sal`` ablation study; PNG plots when matplotlib is importable; and "paper vs here",
a verdict per claim, with the command and package versions that produced it.

    python experiments/report.py                            # runs/sweep -> docs/results.md
    python experiments/report.py --root /tmp/q --out /tmp/q/results.md
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.harness import environment  # noqa: E402
from experiments.claims import (CLAIMS, SPREAD_PP, TOLERANCE_PP, VERDICT_RULES,  # noqa: E402
                                accuracies, all_claims, beats, common_densities, fmt_pm,
                                large_spread, mean_std)
from experiments.runs import OK, group_runs, load_runs  # noqa: E402
from experiments.sweep import (ABLATION_MODEL, DEFAULT_MODELS, GRIDS, LABELS,  # noqa: E402
                               SEEDS, build_grid, sweep_options)
from srigl_ref import checkpoint  # noqa: E402


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
    for (dataset, model), group in groups.items():
        cells = group.cells
        fig, ax = plt.subplots(figsize=(6, 4))
        for lab in [lab for lab in LABELS if lab != "dense"]:
            ds = common_densities(cells, lab)
            if ds:
                stats = [mean_std(accuracies(cells, lab, d)) for d in ds]
                ax.errorbar(ds, [100 * m for m, _, _ in stats],
                            yerr=[100 * np.nan_to_num(s) for _, s, _ in stats],
                            marker="o", capsize=3, label=lab)
        if common_densities(cells, "dense"):
            ax.axhline(100 * np.mean(accuracies(cells, "dense", 1.0)), color="k", ls="--",
                       label="dense")
        ax.set(ylabel="test accuracy (%)",
               title=f"{model} on {dataset}: accuracy (mean ± std over seeds that trained)")
        _sparsity_axis(ax, {d for (lab, d) in cells if lab != "dense"})
        ax.legend(fontsize=8)
        files.append(_save(fig, out.with_name(f"{out.stem}_accuracy_{dataset}_{model}.png")))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    all_ds = set()
    for (dataset, model), group in groups.items():
        ds = common_densities(group.cells, "srigl")
        if ds:
            shares = [[r.ablated_fraction for r in group.cells[("srigl", d)]] for d in ds]
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


def _main_labels(group) -> list[str]:
    keys = [*group.cells, *group.failed]
    return [lab for lab in LABELS if any(k[0] == lab for k in keys)]


def fmt_cell(group, lab: str, density: float) -> str:
    """A cell of the accuracy table: mean ± std of its "ok" runs, `` *`` when the spread is
    large (``large_spread``), and how many of its runs failed.

    Parameters
    ----------
    group : ModelRuns
    lab : str
    density : float

    Returns
    -------
    str
        ``'89.12 ± 0.15'``, ``'61.17 ± 44.39 *'``, ``'86.76 ± 3.66 (1 of 3 failed)'``,
        ``'- (3 of 3 failed)'``, or ``'-'`` for a cell without runs.
    """
    acc = accuracies(group.cells, lab, density)
    n_failed = len(group.failed.get((lab, density), []))
    text = "-" if not acc else fmt_pm(acc) + (" *" if large_spread(acc) else "")
    if n_failed:
        text += f" ({n_failed} of {len(acc) + n_failed} failed)"
    return text


def seed_table(group) -> list[str]:
    """Per-seed accuracies of every cell with a large spread or failed runs.

    Parameters
    ----------
    group : ModelRuns

    Returns
    -------
    list of str
        Markdown lines (none when no cell qualifies).
    """
    rows = []
    for key in sorted({*group.cells, *group.failed},
                      key=lambda k: (list(LABELS).index(k[0]) if k[0] in LABELS
                                     else len(LABELS), k[0], -k[1])):
        ok, failed = group.cells.get(key, []), group.failed.get(key, [])
        if not failed and not large_spread(accuracies(group.cells, *key)):
            continue
        runs = sorted(ok + failed, key=lambda r: r.config.seed)
        seeds = ", ".join(
            f"s{r.config.seed} " + ("-" if r.accuracy is None else f"{100 * r.accuracy:.2f}")
            + ("" if r.status == OK else f" **{r.status}**") for r in runs)
        rows.append([key[0], f"{key[1]:g}", seeds, fmt_pm(accuracies(group.cells, *key))
                     if ok else "-"])
    if not rows:
        return []
    return (["", f"Per-seed test accuracy (%) of the cells with a std above {SPREAD_PP:g} pp "
             f"(`*` above) or with failed runs; the mean ± std is over the runs that "
             f"trained (status ok):", ""]
            + md_table(["method", "density", "per seed", "mean ± std (ok runs)"], rows))


def model_section(dataset, model, group) -> list[str]:
    """Accuracy table, per-seed values where needed, per-cell details and ablated neurons
    per layer of one model.

    Parameters
    ----------
    dataset, model : str
    group : ModelRuns

    Returns
    -------
    list of str
        Markdown lines.
    """
    cells = group.cells
    first = next(iter([*cells.values(), *group.failed.values()]))[0].config
    lines = [f"### {model} on {dataset}", "",
             f"{first.epochs} epochs, batch {first.batch_size}, {first.engine} engine, "
             f"{'all' if first.n_train is None else first.n_train} training examples, "
             f"{first.distribution} layer densities. Test accuracy (%), mean ± std over "
             f"the seeds that trained (seeds per cell in the details table; failed runs "
             f"are counted in the cell and excluded from its mean):", ""]
    labels = _main_labels(group)
    densities = sorted({d for (lab, d) in [*cells, *group.failed]
                        if lab in labels and lab != "dense"}, reverse=True)
    rows = []
    for lab in labels:
        if lab == "dense":
            rows.append([lab] + [fmt_cell(group, lab, 1.0)] * len(densities))
        else:
            rows.append([lab] + [fmt_cell(group, lab, d) for d in densities])
    lines += md_table(["method"] + [f"density {d:g}" for d in densities], rows)
    lines += seed_table(group)
    lines += ["", "Details of the runs that trained (realised density over the sparse-able "
              "weights, ITOP rate = share of weights ever active, seconds = training time per "
              "run as recorded by the trainer, for a resumed run that of its last invocation "
              "only):", ""]
    rows = []
    for lab in labels:
        for d in ([1.0] if lab == "dense" else densities):
            rs = cells.get((lab, d), [])
            if rs:
                rows.append([lab, f"{d:g}", len(rs), fmt_pm(accuracies(cells, lab, d)),
                             fmt_pm([r.summary["density"] for r in rs], 1.0, 4),
                             fmt_pm([r.summary["itop_rate"] for r in rs], 1.0, 3),
                             f"{np.mean([r.summary['seconds'] for r in rs]):.1f}"])
    lines += md_table(["method", "target density", "seeds", "accuracy (%)",
                       "realised density", "ITOP rate", "seconds"], rows)
    ds = common_densities(cells, "srigl")
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


def failed_section(groups) -> list[str]:
    """Every failed run (status other than ok): excluded from every mean and verdict.

    Parameters
    ----------
    groups : dict
        As returned by ``group_runs``.

    Returns
    -------
    list of str
        Markdown lines.
    """
    rows = [[model, r.label, f"{r.config.density:g}", r.config.seed, r.status,
             "-" if r.accuracy is None else f"{100 * r.accuracy:.2f}", f"`{r.path}`"]
            for (_, model), group in groups.items()
            for rs in group.failed.values() for r in rs]
    if not rows:
        return ["None: every run trained (status ok).", ""]
    return ([f"{len(rows)} run(s) diverged or ended at chance accuracy; they enter no mean, "
             f"std or verdict (a claim that compares their method says so):", ""]
            + md_table(["model", "method", "density", "seed", "status", "accuracy (%)",
                        "folder"], rows) + [""])


def _srigl_by_gamma(cells) -> dict:
    """SRigL runs with ablation: ``{gamma_sal: {density: [Run, ...]}}``."""
    by_gamma = {}
    for runs in cells.values():
        for r in runs:
            if r.config.method == "srigl" and r.config.ablation:
                by_gamma.setdefault(r.config.gamma_sal, {}).setdefault(
                    r.config.density, []).append(r)
    return by_gamma


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
    for (dataset, model), group in groups.items():
        by_gamma, failed = _srigl_by_gamma(group.cells), _srigl_by_gamma(group.failed)
        gammas = sorted({*by_gamma, *failed})
        ran = {g: {*by_gamma.get(g, {}), *failed.get(g, {})} for g in gammas}
        densities = sorted({d for ds in ran.values() for d in ds
                            if sum(d in ds2 for ds2 in ran.values()) > 1}, reverse=True)
        if not densities:
            continue
        rows = []
        for gamma in gammas:
            row = [f"{gamma:g}"]
            for d in densities:
                rs = by_gamma.get(gamma, {}).get(d, [])
                n_failed = len(failed.get(gamma, {}).get(d, []))
                row.append((f"{fmt_pm([r.accuracy for r in rs])} "
                            f"({100 * np.mean([r.ablated_fraction for r in rs]):.1f} %)"
                            if rs else "-")
                           + (f" ({n_failed} failed)" if n_failed else ""))
            rows.append(row)
        lines += [f"### {model} on {dataset}", "",
                  "SRigL test accuracy (%), mean ± std over seeds, and in brackets the "
                  "mean share of neurons ablated:", ""]
        lines += md_table(["gamma_sal"] + [f"density {d:g}" for d in densities], rows)
        lines.append("")
    return lines or ["No runs of the ablation study (`experiments/sweep.py --grid "
                     "ablation`).", ""]


def ablation_effect_section(groups) -> list[str]:
    """Where neuron ablation fires and what it changes: per model, SRigL with and without
    ablation at every density both ran, the accuracy gain (``claims.beats``: mean ± 2 se,
    verdict; "same runs" where no seed ablated a neuron and every seed's two accuracies
    agree) and per seed, how many seeds ablated any neuron and which layers lost how many.

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
    for (dataset, model), group in groups.items():
        cells = group.cells
        ds = common_densities(cells, "srigl", "srigl-noabl")
        if not ds:
            continue
        rows, by_fired, by_verdict = [], {}, {}
        for d in ds:
            rs = cells[("srigl", d)]
            gain = beats(accuracies(cells, "srigl", d), accuracies(cells, "srigl-noabl", d))
            n_fired = sum(r.ablated_fraction > 0 for r in rs)
            fired = "every" if n_fired == len(rs) else "some" if n_fired else "no"
            by_fired.setdefault(fired, []).append(f"{d:g}")
            without = {r.config.seed: r.accuracy for r in cells[("srigl-noabl", d)]}
            per_seed = {r.config.seed: r.accuracy - without[r.config.seed] for r in rs
                        if r.config.seed in without}
            # no neuron ablated in any seed: the two runs of a seed are the same run
            verdict = ("same runs" if not n_fired and not any(per_seed.values())
                       else gain.verdict)
            by_verdict.setdefault(verdict, []).append(f"{d:g}")
            layers = rs[0].summary["layers"]
            lost = [f"{layer['name'].removesuffix('.weight')} "
                    f"{np.mean([r.summary['layers'][i]['n_ablated'] for r in rs]):.1f}"
                    f"/{layer['shape'][0]}" for i, layer in enumerate(layers)
                    if any(r.summary["layers"][i]["n_ablated"] for r in rs)]
            rows.append([f"{d:g}", fmt_pm(accuracies(cells, "srigl", d)),
                         fmt_pm(accuracies(cells, "srigl-noabl", d)), gain.fmt(), verdict,
                         " ".join(f"s{seed} {100 * g:+.2f}" for seed, g in per_seed.items()),
                         f"{n_fired} of {len(rs)}",
                         fmt_pm([r.ablated_fraction for r in rs], 100.0, 1),
                         ", ".join(lost) or "none"])
        fires = "; ".join(f"in {fired} seed at density {', '.join(dens)}"
                          for fired, dens in by_fired.items())
        verdicts = "; ".join(f"{verdict} at density {', '.join(dens)}"
                             for verdict, dens in by_verdict.items())
        lines += [f"### {model} on {dataset}", "",
                  f"In short: ablation fires {fires}. \"Ablation helps\" (SRigL beats SRigL "
                  f"without ablation): {verdicts}. (\"same runs\": no neuron was ablated, "
                  f"so each seed's two runs are one and the same.)", ""]
        lines += md_table(["density", "SRigL (%)", "without ablation (%)",
                           "gain ± 2 se (pp)", "ablation helps", "gain per seed (pp)",
                           "seeds that ablated",
                           "ablated share (%)", "neurons ablated per layer (mean / width)"],
                          rows)
        lines.append("")
    return lines or ["No model ran SRigL both with and without ablation.", ""]


def sweep_command(runs, root) -> str:
    """The ``experiments/sweep.py`` command whose grid the runs are, or the smallest grid
    they are a part of (then marked incomplete).

    The candidates are every ``--grid``, with and without ``--quick``, with the seeds
    ``0 .. max(seed)`` (at least the default count) and the default models (``--quick``:
    ``mlp``) plus any other model the runs have.

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
        models = tuple(dict.fromkeys([*((ABLATION_MODEL,) if quick else DEFAULT_MODELS),
                                      *sorted({c.model for c in found})]))
        n_seeds = max(max(c.seed for c in found) + 1, 1 if quick else len(SEEDS))
        for grid in GRIDS:
            try:
                want = set(build_grid(grid, quick=quick, seeds=n_seeds, models=models))
            except ValueError:                  # a model without grid settings
                continue
            if found <= want and (best is None or len(want) < len(best[1])):
                best = (sweep_options(grid, quick=quick, seeds=n_seeds, models=models), want)
    if best is None:
        return (f"{len(found)} runs that are not all of one grid of `experiments/sweep.py` "
                f"(the `srigl-ref train` configuration of each is in its summary.json)")
    options, want = best
    command = shlex.join(["python", "experiments/sweep.py", *options, "--out", str(root)])
    if found == want:
        return f"`{command}` (all {len(want)} runs)"
    return f"`{command}`, **incomplete: {len(found)} of its {len(want)} runs**"


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
    n_failed = sum(r.status != OK for r in runs)
    lines = ["# Results: the paper's claims at laptop scale", "",
             "Generated by `experiments/report.py` from the runs' own `summary.json` files; "
             "do not edit by hand.", "",
             f"- Report command: `{command}`",
             f"- Runs: {len(runs)} from {sweep_command(runs, root)}",
             f"- Failed runs (diverged or at chance; excluded from every mean and verdict, "
             f"listed under \"Failed runs\"): {n_failed}",
             f"- Total training time: {sum(r.summary['seconds'] for r in runs) / 3600:.2f} h "
             f"(sum over runs of the trainer's own seconds)",
             f"- Versions: {_versions()}", "",
             "## Paper vs here", ""]
    results = {key: all_claims(group, tolerance) for key, group in groups.items()}
    rows = []
    for (dataset, model), claims in results.items():
        rows += [[str(c.claim), f"{model} ({dataset})", f"**{c.verdict}**", c.evidence]
                 for c in claims]
    lines += [f"- ({k}) {v}" for k, v in CLAIMS.items()] + [""]
    lines += md_table(["claim", "model", "verdict", "evidence"], rows)
    lines += ["", "How a verdict is decided:", "",
              VERDICT_RULES.format(tol=tolerance * 100, spread=SPREAD_PP),
              ""]
    for (dataset, model), claims in results.items():
        lines += [f"### Evidence: {model} on {dataset}", ""]
        table = [[str(c.claim)] + row for c in claims for row in c.table]
        lines += md_table(["claim", "comparison", "density", "difference ± 2 se (pp)",
                           "verdict"], table) if table else ["No comparisons possible."]
        lines.append("")
    lines += ["## Failed runs", ""] + failed_section(groups)
    lines += ["## Accuracy, density, ITOP rate, time and ablated neurons", ""]
    for (dataset, model), group in groups.items():
        lines += model_section(dataset, model, group)
    lines += ["## Where neuron ablation fires and what it changes", "",
              "SRigL (ablation on, gamma_sal 0.3) against SRigL without ablation, same "
              "seeds; a neuron counts as ablated when its row of the mask is empty at the "
              "end of training (the classifier is exempt).", ""]
    lines += ablation_effect_section(groups)
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
    ap = argparse.ArgumentParser(prog="experiments/report.py",
                                 description=__doc__.split("\n")[0])
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
        text = render(runs, args.root, out, shlex.join(["python", "experiments/report.py",
                                                                  *argv]),
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
