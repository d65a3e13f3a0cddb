"""The report (experiments/report.py) on hand-written summaries: tables, failed runs,
per-seed values, plots and errors."""
import sys

import pytest

from experiments import report, runs, sweep
from srigl_ref import checkpoint
from srigl_ref.train import TrainConfig
from tests.experiments.summaries import ACCURACY, SEED_OFFSET, fake_summary, make_runs, write_summary


def test_report_tables_and_plots_skipped(tmp_path, monkeypatch, capsys):
    root = tmp_path / "sweep"
    make_runs(root=root)
    study = [c for c in sweep.build_grid("ablation") if c.density == 0.01
             and c.gamma_sal != 0.3]                                   # 0.3: main's runs
    for c in study:
        write_summary(root, c, 0.78 + c.gamma_sal / 10 + SEED_OFFSET[c.seed],
                      ablated=(int(100 * c.gamma_sal), 0, 0))
    monkeypatch.setitem(sys.modules, "matplotlib", None)                 # not importable
    out = tmp_path / "docs" / "results.md"
    assert report.main(["--root", str(root), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"- Report command: `python experiments/report.py --root {root} --out {out}`" \
        in text
    assert (f"`python experiments/sweep.py --grid all --out {root}`, **incomplete: 45 of "
            f"its 186 runs**") in text
    assert "- Failed runs (diverged or at chance; excluded from every mean and verdict, " \
        "listed under \"Failed runs\"): 0" in text
    assert "## Failed runs\n\nNone: every run trained (status ok)." in text
    assert "Per-seed" not in text
    assert "| method | density 0.2 | density 0.01 |" in text
    assert "| dense | 90.00 ± 0.20 | 90.00 ± 0.20 |" in text
    assert "| srigl | 89.00 ± 0.20 | 80.00 ± 0.20 |" in text
    assert "| 1 | mlp (fashion-mnist) | **holds** | 2 of 2 cells hold, 0 do not" in text
    assert "| 2 | gain srigl - srigl-noabl | 0.01 | +4.00 ± 0.33 | holds |" in text
    assert "| srigl | 0.01 | 3 | 80.00 ± 0.20 | 0.0100 ± 0.0000 | 0.020 ± 0.000 | 60.0 |" \
        in text
    assert "| 0.01 | 31.0 / 300 | 11.0 / 100 | 0.0 / 10 | 10.5 ± 0.5 |" in text
    assert ("In short: ablation fires in no seed at density 0.2; in every seed at density "
            "0.01. \"Ablation helps\" (SRigL beats SRigL without ablation): holds at density "
            "0.2, 0.01.") in text
    assert ("| 0.01 | 80.00 ± 0.20 | 76.00 ± 0.20 | +4.00 ± 0.33 | holds | s0 +4.00 s1 +4.00 "
            "s2 +4.00 | 3 of 3 | 10.5 ± 0.5 | fc1 31.0/300, fc2 11.0/100 |") in text
    assert "| 0.2 | 89.00 ± 0.20 | 88.50 ± 0.20 | +0.50 ± 0.33 | holds | s0 +0.50 s1 +0.50 " \
        "s2 +0.50 | 0 of 3 | 0.0 ± 0.0 | none |" in text
    assert "| gamma_sal | density 0.01 |" in text
    assert "| 0.3 | 80.00 ± 0.20 (10.5 %) |" in text
    assert "| 0.95 | 87.50 ± 0.20 (23.7 %) |" in text
    assert "Plots skipped: matplotlib is not installed" in text
    assert "![" not in text and not list(out.parent.glob("*.png"))
    assert "matplotlib not installed" in text
    assert capsys.readouterr().out == f"report.py: wrote {out}\n"


def test_ablation_effect_says_same_runs_where_no_neuron_was_ablated():
    # at 0.2 no seed ablates and each seed's two runs agree: one run, not a comparison
    acc = {**ACCURACY, ("srigl-noabl", 0.2): ACCURACY[("srigl", 0.2)]}
    lines = report.ablation_effect_section(runs.group_runs(make_runs(accuracy=acc)))
    assert ("In short: ablation fires in no seed at density 0.2; in every seed at density "
            "0.01. \"Ablation helps\" (SRigL beats SRigL without ablation): same runs at "
            "density 0.2; holds at density 0.01.") in lines[2]
    assert lines[6].startswith("| 0.2 | 89.00 ± 0.20 | 89.00 ± 0.20 | +0.00 ± 0.33 | same runs "
                               "| s0 +0.00 s1 +0.00 s2 +0.00 | 0 of 3 |")


def test_report_plots_with_matplotlib(tmp_path):
    out = tmp_path / "results.md"
    files = report.make_plots(runs.group_runs(make_runs()), out)
    assert [f.name for f in files] == ["results_accuracy_fashion-mnist_mlp.png",
                                       "results_ablated.png"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


def test_report_errors(tmp_path, capsys):
    assert report.main(["--root", str(tmp_path / "none")]) == 2
    assert "report.py: error: root == " in capsys.readouterr().err
    assert report.main(["--root", str(tmp_path)]) == 2
    assert "no summary.json below it; run experiments/sweep.py" in capsys.readouterr().err
    bad = tmp_path / "a" / "summary.json"
    bad.parent.mkdir()
    bad.write_text('{"test_accuracy": 1.5}')
    assert report.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: missing key(s)" in err and len(err.strip().splitlines()) == 1
    checkpoint.write_json(bad, dict(fake_summary(TrainConfig(), 0.5), test_accuracy=None))
    with pytest.raises(ValueError, match=r"summary.json: test_accuracy == None, must be in"):
        runs.load_runs(tmp_path)
    checkpoint.write_json(bad, dict(fake_summary(TrainConfig(), 0.5), config={"x": 1}))
    with pytest.raises(ValueError, match=r"summary.json: no valid 'config' \(config has "
                       r"unknown key\(s\) \['x'\]\)"):
        runs.load_runs(tmp_path)


def test_failed_runs_are_listed_excluded_and_their_cells_show_seeds(tmp_path, monkeypatch):
    """Dense seed 0 at chance (no status: derived), RigL at 0.01 seed 1 diverged before its
    first evaluation, SET at 0.2 with one seed far off (spread, but trained)."""
    root = tmp_path / "sweep"
    by_cell = {(sweep.label(c), c.density, c.seed): c for c in sweep.build_grid("main")
               if c.model == "mlp"}
    make_runs(root=root)
    write_summary(root, by_cell[("dense", 1.0, 0)], 0.1005)
    write_summary(root, by_cell[("rigl", 0.01, 1)], None, status="diverged")
    write_summary(root, by_cell[("set", 0.2, 2)], 0.70)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "results.md"
    assert report.main(["--root", str(root), "--out", str(out)]) == 0
    text = out.read_text()
    assert "listed under \"Failed runs\"): 2" in text
    assert ("| model | method | density | seed | status | accuracy (%) | folder |\n|---|---|"
            "---|---|---|---|---|\n"
            f"| mlp | dense | 1 | 0 | at_chance | 10.05 | `{root}/mlp/dense/d1/s0` |\n"
            f"| mlp | rigl | 0.01 | 1 | diverged | - | `{root}/mlp/rigl/d0.01/s1` |") in text
    # accuracy table: failed runs counted, not averaged; a large spread marked
    assert "| dense | 90.10 ± 0.14 (1 of 3 failed) | 90.10 ± 0.14 (1 of 3 failed) |" in text
    assert "| rigl | 89.00 ± 0.20 | 80.00 ± 0.28 (1 of 3 failed) |" in text
    assert "| set | 81.27 ± 9.76 * | 75.00 ± 0.20 |" in text
    assert ("| method | density | per seed | mean ± std (ok runs) |\n|---|---|---|---|\n"
            "| dense | 1 | s0 10.05 **at_chance**, s1 90.00, s2 90.20 | 90.10 ± 0.14 |\n"
            "| set | 0.2 | s0 86.80, s1 87.00, s2 70.00 | 81.27 ± 9.76 |\n"
            "| rigl | 0.01 | s0 79.80, s1 - **diverged**, s2 80.20 | 80.00 ± 0.28 |") in text
    # the claims that compare RigL say what they left out; claim 2 (SRigL only) does not
    excluded = "excluded 1 failed run: mlp rigl d0.01 s1 (diverged, no accuracy)"
    for claim in ("1", "3a", "3b"):
        (row,) = [line for line in text.splitlines() if line.startswith(f"| {claim} | mlp")]
        assert row.endswith(f"; {excluded} |"), row
    (row,) = [line for line in text.splitlines() if line.startswith("| 2 | mlp")]
    assert "excluded" not in row
    assert "| dense | 1 | 2 | 90.10 ± 0.14 |" in text              # details: ok runs only
