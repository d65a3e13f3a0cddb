"""The sweep (experiments/sweep.py) and its report (experiments/report.py, claims.py,
runs.py): the grids, resumability, the report's tables and verdicts on hand-written
summaries, and one quick end-to-end sweep on synthetic data."""
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from experiments import claims, report, runs, sweep
from experiments.claims import FAILS, HOLDS, INCONCLUSIVE
from srigl_ref import checkpoint, cli
from srigl_ref.train import TrainConfig

MLP_SHAPES = [[300, 784], [100, 300], [10, 100]]
SEED_OFFSET = {0: -0.002, 1: 0.0, 2: 0.002}          # accuracy std over 3 seeds: 0.2 pp
# mean accuracy per (label, density): every claim holds on these
ACCURACY = {("dense", 1.0): 0.90,
            ("static", 0.2): 0.85, ("static", 0.01): 0.70,
            ("set", 0.2): 0.87, ("set", 0.01): 0.75,
            ("rigl", 0.2): 0.89, ("rigl", 0.01): 0.80,
            ("srigl-noabl", 0.2): 0.885, ("srigl-noabl", 0.01): 0.76,
            ("srigl", 0.2): 0.89, ("srigl", 0.01): 0.80}


# ---------------------------------------------------------------------- the grid
def test_main_grid_counts_and_dense_once_per_model_and_seed():
    grid = sweep.build_grid("main")
    assert len(grid) == 2 * 3 * (1 + 5 * 4) == 126
    assert len(set(grid)) == len({sweep.run_dir(c) for c in grid}) == 126
    for model, epochs in (("mlp", 20), ("lenet5", 5)):
        of_model = [c for c in grid if c.model == model]
        assert {c.epochs for c in of_model} == {epochs}
        dense = [c for c in of_model if c.method == "dense"]
        assert sorted(c.seed for c in dense) == [0, 1, 2] and {c.density for c in dense} == {1.0}
        for lab in ("static", "set", "rigl", "srigl-noabl", "srigl"):
            cells = [(c.density, c.seed) for c in of_model if sweep.label(c) == lab]
            assert sorted(cells) == sorted((d, s) for d in (0.2, 0.1, 0.05, 0.01)
                                           for s in (0, 1, 2))
    assert all(c.dataset == "fashion-mnist" and c.n_train is None for c in grid)
    noabl = [c for c in grid if sweep.label(c) == "srigl-noabl"]
    assert all(c.method == "srigl" and not c.ablation for c in noabl)


def test_ablation_grid_and_all_share_the_default_gamma_runs():
    ablation = sweep.build_grid("ablation")
    assert len(ablation) == 5 * 2 * 3
    assert {(c.model, c.method, c.ablation) for c in ablation} == {("mlp", "srigl", True)}
    assert sorted({c.gamma_sal for c in ablation}) == [0.0, 0.1, 0.3, 0.5, 0.95]
    assert {c.density for c in ablation} == {0.05, 0.01}
    main = set(sweep.build_grid("main"))
    shared = [c for c in ablation if c in main]
    assert len(shared) == 6 and {c.gamma_sal for c in shared} == {0.3}
    assert len(sweep.build_grid("all")) == 126 + 30 - 6
    assert str(sweep.run_dir(ablation[0])) == "mlp/srigl-g0/d0.05/s0"


def test_quick_grid_and_bad_grid():
    quick = sweep.build_grid("main", quick=True)
    assert [sweep.label(c) for c in quick] == ["static", "srigl"]
    assert {(c.dataset, c.model, c.epochs, c.density, c.seed) for c in quick} == {
        ("synthetic", "mlp", 1, 0.1, 0)}
    with pytest.raises(ValueError, match=r"grid == 'big', must be one of \('main', "):
        sweep.build_grid("big")


def test_train_argv_is_understood_by_the_cli():
    for config in sweep.build_grid("all", quick=True) + sweep.build_grid("main")[:8]:
        args = cli.build_parser().parse_args(["train", *sweep.train_argv(config)])
        for name in ("dataset", "model", "method", "density", "epochs", "seed", "gamma_sal",
                     "n_train", "batch_size", "delta"):
            assert getattr(args, name) == getattr(config, name), name
        assert args.no_ablation == (not config.ablation)
    with pytest.raises(ValueError, match=r"config.nesterov == False: srigl-ref train has "
                       r"no option for it, must be True"):
        sweep.train_argv(TrainConfig(nesterov=False))


def test_dry_run_prints_grid_and_estimate(capsys):
    assert sweep.main(["--dry-run", "--out", "/nonexistent/sweep"]) == 0      # grid all
    out = capsys.readouterr().out
    assert "mlp/srigl-g0.95/d0.01/s2" in out and "lenet5/dense/d1/s2" in out
    assert "150 runs: 0 done, 0 to resume, 150 to start; estimated wall time with" in out
    assert sweep.main(["--dry-run", "--jobs", "0"]) == 2
    assert "sweep.py: error: jobs == 0, must be in [1, inf]" in capsys.readouterr().err


# ---------------------------------------------------------------------- resumability
def fake_summary(config, accuracy, ablated=(0, 0, 0), seconds=60.0):
    """A summary.json dict as the trainer writes it, for an mlp run."""
    layers = [{"name": f"fc{i + 1}.weight", "shape": shape, "sparsity": 0.9, "fan_in": 10,
               "n_active_neurons": shape[0] - n, "n_ablated": n, "density": 0.1}
              for i, (shape, n) in enumerate(zip(MLP_SHAPES, ablated))]
    return {"test_accuracy": accuracy, "density": config.density * 0.999,
            "target_density": config.density, "method": config.method, "seconds": seconds,
            "epochs": config.epochs, "itop_rate": min(1.0, config.density * 2),
            "layers": layers, "config": asdict(config)}


def write_summary(root, config, accuracy=0.5, **kw) -> Path:
    path = Path(root) / sweep.run_dir(config) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(path, fake_summary(config, accuracy, **kw))
    return path


def write_checkpoint(path, config, epoch) -> None:
    path.mkdir(parents=True, exist_ok=True)
    checkpoint.save_checkpoint(path / "model.npz", checkpoint.Checkpoint(
        {}, {}, {}, {}, {"config": asdict(config), "step": 0, "epoch": epoch,
                         "sparse_names": []}))


def test_run_state_done_resume_new(tmp_path):
    config = sweep.build_grid("main")[5]
    path = tmp_path / sweep.run_dir(config)
    assert sweep.run_state(config, path).status == "new"                  # missing
    write_checkpoint(path, config, epoch=7)
    state = sweep.run_state(config, path)
    assert (state.status, state.epochs_done) == ("resume", 7)
    assert state.command()[-2:] == ["--resume", str(path)]
    assert state.estimate < sweep.estimate_seconds(config)
    (path / "summary.json").write_text('{"test_accuracy": 0.9')           # corrupt
    assert sweep.run_state(config, path).status == "resume"
    write_summary(tmp_path, config)
    assert sweep.run_state(config, path).status == "done"
    write_checkpoint(path, replace(config, lr=0.01), epoch=7)             # summary wins
    assert sweep.run_state(config, path).status == "done"
    summary = fake_summary(config, 0.5)
    checkpoint.write_json(path / "summary.json", dict(summary, test_accuracy=None))
    assert sweep.run_state(config, path).status == "new"                  # other ckpt
    checkpoint.write_json(path / "summary.json", dict(summary, epochs=3))  # unfinished
    assert sweep.run_state(config, path).status == "new"


def test_finished_run_of_another_config_is_an_error(tmp_path):
    config = sweep.build_grid("main")[0]
    write_summary(tmp_path, replace(config, epochs=3))
    with pytest.raises(ValueError, match=r"s0/summary.json: a finished run of another "
                       r"configuration: epochs 3 \(grid: 20\); use another --out"):
        sweep.plan([config], tmp_path)


def test_sweep_with_everything_done_starts_nothing(tmp_path, monkeypatch, capsys):
    grid = sweep.build_grid("main", quick=True)
    for config in grid:
        write_summary(tmp_path, config)

    def no_process(*a, **kw):
        raise AssertionError("a finished run was started again")
    monkeypatch.setattr(sweep.subprocess, "Popen", no_process)
    assert sweep.main(["--quick", "--grid", "main", "--out", str(tmp_path)]) == 0
    assert "2/2 done, 0 running, 0 waiting" in capsys.readouterr().err


# ---------------------------------------------------------------------- the report
def make_runs(accuracy=ACCURACY, densities=(0.2, 0.01), ablated=None, root=None):
    """Runs of the main grid (mlp, the given densities) with hand-set accuracies; written
    as summary.json files below ``root`` when given."""
    ablated = ablated or {0.2: (0, 0, 0), 0.01: (30, 10, 0)}
    made = []
    for config in sweep.build_grid("main"):
        if config.model != "mlp" or config.density not in (1.0, *densities):
            continue
        acc = accuracy[(sweep.label(config), config.density)] + SEED_OFFSET[config.seed]
        n_abl = ablated.get(config.density, (0, 0, 0)) if sweep.label(config) == "srigl" \
            else (0, 0, 0)
        n_abl = tuple(n + config.seed if n else 0 for n in n_abl)
        if root is not None:
            write_summary(root, config, acc, ablated=n_abl)
        made.append(runs.Run(Path(sweep.run_dir(config)), config,
                               fake_summary(config, acc, ablated=n_abl)))
    return made


def group_of(made):
    (group,) = runs.group_runs(made).values()
    return group


def test_mean_std_format():
    assert claims.fmt_pm([0.80, 0.82, 0.84]) == "82.00 ± 2.00"
    assert claims.fmt_pm([0.5]) == "50.00 (n=1)"
    assert claims.fmt_pm([0.1, 0.1], 1.0, 4) == "0.1000 ± 0.0000"


def test_verdict_rules():
    a, b = [0.90, 0.91, 0.92], [0.80, 0.81, 0.82]
    assert claims.beats(a, b).verdict == HOLDS
    assert claims.beats(b, a).verdict == FAILS
    assert claims.beats(a, [0.89, 0.91, 0.93]).verdict == INCONCLUSIVE
    assert claims.beats([0.0, 0.0], [0.0, 0.0]).verdict == FAILS         # no noise, no gain
    assert claims.beats([0.9], [0.1, 0.2]).verdict == INCONCLUSIVE       # one seed
    c = claims.beats(a, b)
    assert c.fmt() == "+10.00 ± 1.63"
    assert claims.matches([0.900, 0.901, 0.902], [0.903, 0.904, 0.905], 0.01).verdict == HOLDS
    assert claims.matches(a, b, 0.01).verdict == FAILS
    assert claims.matches(a, [0.89, 0.90, 0.91], 0.01).verdict == INCONCLUSIVE
    assert claims.overall([HOLDS, HOLDS, INCONCLUSIVE]) == HOLDS
    assert claims.overall([HOLDS, INCONCLUSIVE, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.overall([HOLDS, HOLDS, FAILS]) == INCONCLUSIVE          # mixed
    assert claims.overall([FAILS, INCONCLUSIVE]) == FAILS
    assert claims.overall([]) == INCONCLUSIVE


def test_every_claim_holds_on_the_designed_numbers():
    results = claims.all_claims(group_of(make_runs()), tolerance=0.01)
    assert [(c.claim, c.verdict) for c in results] == [
        (1, HOLDS), (2, HOLDS), ("3a", HOLDS), ("3b", HOLDS), (4, HOLDS)]
    assert results[2].evidence == "6 of 6 cells hold, 0 do not, 0 inconclusive"
    assert results[1].table[-1][:3] == ["gain at 0.01 - gain at 0.2", "", "+3.50 ± 0.46"]
    assert results[4].evidence == ("10.5 % of neurons ablated at density 0.01 vs 0.0 % "
                                  "at 0.2")


def test_claims_that_do_not_hold_or_are_inconclusive():
    worse = {**ACCURACY, ("srigl", 0.01): 0.70, ("static", 0.2): 0.895, ("set", 0.2): 0.90,
             ("set", 0.01): 0.85}
    made = make_runs(worse, ablated={0.2: (0, 0, 0), 0.01: (0, 0, 0)})
    results = {c.claim: c for c in claims.all_claims(group_of(made), tolerance=0.01)}
    assert results[1].verdict == INCONCLUSIVE                             # holds, then fails
    assert [row[3] for row in results[1].table] == [HOLDS, FAILS]
    assert results[2].verdict == FAILS                                    # gain -6 pp at 0.01
    assert results["3a"].verdict == INCONCLUSIVE                          # mixed
    assert results["3a"].evidence == "3 of 6 cells hold, 2 do not, 1 inconclusive"
    assert results["3b"].verdict == FAILS                                 # 4 of 4 do not
    assert results[4].verdict == FAILS                                    # nothing ablated
    made = make_runs(densities=(0.2, 0.05, 0.01),
                     accuracy={**ACCURACY, **{(lab, 0.05): 0.85 for lab in
                                              ("static", "set", "rigl", "srigl-noabl",
                                               "srigl")}},
                     ablated={0.2: (0, 0, 0), 0.05: (60, 20, 0), 0.01: (30, 10, 0)})
    claim4 = claims.claim_4(group_of(made).cells)
    assert claim4.verdict == INCONCLUSIVE and "falls somewhere" in claim4.evidence


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
    assert f"- Report command: `python experiments/report.py --root {root} --out {out}`" in text
    assert (f"`python experiments/sweep.py --grid all --out {root}`, **incomplete: 45 of its 150 "
            f"runs**") in text
    assert "| method | density 0.2 | density 0.01 |" in text
    assert "| dense | 90.00 ± 0.20 | 90.00 ± 0.20 |" in text
    assert "| srigl | 89.00 ± 0.20 | 80.00 ± 0.20 |" in text
    assert "| 1 | mlp (fashion-mnist) | **holds** | 2 of 2 cells hold, 0 do not" in text
    assert "| 2 | gain srigl - srigl-noabl | 0.01 | +4.00 ± 0.33 | holds |" in text
    assert "| srigl | 0.01 | 3 | 80.00 ± 0.20 | 0.0100 ± 0.0000 | 0.020 ± 0.000 | 60.0 |" \
        in text
    assert "| 0.01 | 31.0 / 300 | 11.0 / 100 | 0.0 / 10 | 10.5 ± 0.5 |" in text
    assert "| gamma_sal | density 0.01 |" in text
    assert "| 0.3 | 80.00 ± 0.20 (10.5 %) |" in text
    assert "| 0.95 | 87.50 ± 0.20 (23.7 %) |" in text
    assert "Plots skipped: matplotlib is not installed" in text
    assert "![" not in text and not list(out.parent.glob("*.png"))
    assert "matplotlib not installed" in text
    assert capsys.readouterr().out == f"report.py: wrote {out}\n"


def test_report_plots_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
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


# ---------------------------------------------------------------------- end to end
def test_quick_sweep_end_to_end_resume_rerun_and_failure(tmp_path, monkeypatch, capsys):
    """One real quick sweep (2 runs in parallel); then an interrupted run is resumed, a
    corrupt one restarted, a failing one reported, and the report is written."""
    root = tmp_path / "sweep"
    assert sweep.main(["--quick", "--grid", "main", "--out", str(root), "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert "2/2 done, 0 running, 0 waiting" in err and "measured wall per run: mlp" in err
    static, srigl = (root / sweep.run_dir(c) for c in sweep.build_grid("main", quick=True))
    for path in (static, srigl):
        assert checkpoint.read_summary(path / "summary.json")["config"]["epochs"] == 1
        assert "test accuracy" in (path / "train.log").read_text()
    (srigl / "summary.json").unlink()                            # interrupted after its checkpoint
    (static / "summary.json").write_text("{")                    # corrupt, and no checkpoint
    (static / "model.npz").unlink()
    monkeypatch.setenv("SRIGL_REF_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SRIGL_REF_DATA_URL", "http://127.0.0.1:9/")   # nothing listens
    failing = sweep.run_state(TrainConfig(dataset="mnist", epochs=1), tmp_path / "fail")
    runs = sweep.plan(sweep.build_grid("main", quick=True), root) + [failing]
    assert [r.status for r in runs] == ["new", "resume", "new"]
    failed = sweep.run_sweep(runs, jobs=2)
    err = capsys.readouterr().err
    assert failed == [failing]
    assert f"started {srigl} (resume after epoch 1)" in err
    assert f"finished {static} in" in err and f"finished {srigl} in" in err
    assert f"FAILED {tmp_path / 'fail'} (exit 2): srigl-ref: error: " in err
    assert "mnist" in err.split("FAILED")[1].splitlines()[0]
    assert [r.status for r in sweep.plan(sweep.build_grid("main", quick=True), root)] == [
        "done", "done"]
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert report.main(["--root", str(root), "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "`python experiments/sweep.py --grid main --quick --out" in text and "(all 2 runs)" in text
