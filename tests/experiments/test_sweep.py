"""The sweep (experiments/sweep.py): the grids, resumability, and one quick end-to-end
sweep on synthetic data with the local process pool."""
import sys
from dataclasses import asdict, replace

import pytest

from experiments import report, sweep
from srigl_ref import checkpoint, cli
from srigl_ref.nn.models import MODELS
from srigl_ref.train import TrainConfig
from tests.experiments.summaries import fake_summary, write_summary


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
    assert len(sweep.build_grid("all")) == 126 + 30 - 6 + 36
    assert str(sweep.run_dir(ablation[0])) == "mlp/srigl-g0/d0.05/s0"


def test_scale_grid_runs_srigl_with_and_without_ablation_past_the_main_grid():
    scale = sweep.build_grid("scale")
    assert len(scale) == 3 * 2 * (1 + 2 + 3) == 36
    assert {sweep.label(c) for c in scale} == {"srigl", "srigl-noabl"}
    cells = {(sweep.model_label(c), c.density, c.epochs, c.engine) for c in scale}
    assert cells == {("mlp", 0.005, 20, "masked"), ("lenet5", 0.02, 5, "masked"),
                     ("lenet5", 0.0075, 5, "masked"),
                     ("mlp-1024x1024", 0.05, 20, "condensed"),
                     ("mlp-1024x1024", 0.01, 20, "condensed"),
                     ("mlp-1024x1024", 0.005, 20, "condensed")}
    assert not set(scale) & set(sweep.build_grid("main"))
    wide = next(c for c in scale if c.hidden is not None)
    assert str(sweep.run_dir(wide)) == "mlp-1024x1024/srigl-noabl/d0.05/s0"
    assert sweep.train_argv(wide)[-5:] == ["--engine", "condensed", "--hidden", "1024", "1024"]


def test_quick_grid_and_bad_grid():
    quick = sweep.build_grid("main", quick=True)
    assert [sweep.label(c) for c in quick] == ["static", "srigl"]
    assert {(c.dataset, c.model, c.epochs, c.density, c.seed) for c in quick} == {
        ("synthetic", "mlp", 1, 0.1, 0)}
    with pytest.raises(ValueError, match=r"grid == 'big', must be one of \('main', "):
        sweep.build_grid("big")


def test_seeds_and_models_are_configurable():
    five = sweep.build_grid("all", seeds=5)
    assert sorted({c.seed for c in five}) == [0, 1, 2, 3, 4]
    assert len(five) == 5 * (2 * (1 + 5 * 4) + 5 * 2 + 2 * 6) - 5 * 2 == 310  # 0.3 shared
    quick = sweep.build_grid("main", quick=True, seeds=2, models=("mlp", "lenet5"))
    assert [(c.model, sweep.label(c), c.seed) for c in quick] == [
        ("mlp", "static", 0), ("mlp", "srigl", 0), ("mlp", "static", 1), ("mlp", "srigl", 1),
        ("lenet5", "static", 0), ("lenet5", "srigl", 0), ("lenet5", "static", 1),
        ("lenet5", "srigl", 1)]
    assert {(c.dataset, c.epochs) for c in quick} == {("synthetic", 1)}
    ablation = sweep.build_grid("ablation", models=("lenet5",))
    assert {c.model for c in ablation} == {"mlp"}                # the study runs on mlp
    with pytest.raises(ValueError, match=r"models contains 'vit', must be in \('mlp', "
                       r"'lenet5', 'resnet20'\)"):
        sweep.build_grid("main", models=("vit",))
    with pytest.raises(ValueError, match=r"seeds == 0, must be in \[1, inf\]"):
        sweep.build_grid("main", seeds=0)
    assert sweep.sweep_options("all") == ["--grid", "all"]
    assert sweep.sweep_options("main", quick=True, seeds=1, models=("mlp",)) == [
        "--grid", "main", "--quick"]
    assert sweep.sweep_options("all", seeds=5, models=("mlp", "lenet5", "resnet20")) == [
        "--grid", "all", "--seeds", "5", "--models", "mlp,lenet5,resnet20"]


@pytest.mark.skipif("resnet20" not in MODELS, reason="resnet20 is not a model of this "
                    "srigl_ref yet (nn/models.py)")
def test_resnet20_rows_at_their_densities():
    grid = sweep.build_grid("main", seeds=5, models=("mlp", "lenet5", "resnet20"))
    rows = [c for c in grid if c.model == "resnet20"]
    assert len(rows) == 5 * (1 + 5 * 2)
    assert {c.density for c in rows} == {1.0, 0.1, 0.01}
    assert {c.epochs for c in rows} == {sweep.EPOCHS["resnet20"]}
    assert sweep.estimate_seconds(rows[0]) > sweep.estimate_seconds(
        replace(rows[0], model="lenet5"))


def test_train_argv_is_understood_by_the_cli():
    for config in sweep.build_grid("all", quick=True) + sweep.build_grid("main")[:8]:
        args = cli.build_parser().parse_args(["train", *sweep.train_argv(config)])
        for name in ("dataset", "model", "method", "density", "epochs", "seed", "gamma_sal",
                     "n_train", "batch_size", "delta", "engine"):
            assert getattr(args, name) == getattr(config, name), name
        assert (None if args.hidden is None else tuple(args.hidden)) == config.hidden
        assert args.no_ablation == (not config.ablation)
    with pytest.raises(ValueError, match=r"config.nesterov == False: srigl-ref train has "
                       r"no option for it, must be True"):
        sweep.train_argv(TrainConfig(nesterov=False))


def test_dry_run_prints_grid_and_estimate(capsys):
    assert sweep.main(["--dry-run", "--out", "/nonexistent/sweep"]) == 0      # grid all
    out = capsys.readouterr().out
    assert "mlp/srigl-g0.95/d0.01/s2" in out and "lenet5/dense/d1/s2" in out
    assert "mlp-1024x1024/srigl/d0.005/s2" in out
    assert "186 runs: 0 done, 0 to resume, 186 to start; estimated wall time with" in out
    assert sweep.main(["--dry-run", "--jobs", "0"]) == 2
    assert "sweep.py: error: jobs == 0, must be in [1, inf]" in capsys.readouterr().err


# ---------------------------------------------------------------------- resumability
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
    assert "`python experiments/sweep.py --grid main --quick --out" in text
    assert "(all 2 runs)" in text
