"""A run's status and the cells (experiments/runs.py) on hand-written summaries."""
import pytest

from experiments import runs, sweep
from srigl_ref import checkpoint
from tests.experiments.summaries import fake_summary, write_summary

CONFIG = sweep.build_grid("main")[1]                     # mlp static d0.2 s0


@pytest.mark.parametrize("accuracy, status", [
    (0.10, "at_chance"), (0.115, "at_chance"), (0.085, "at_chance"),
    (0.125, "ok"), (0.075, "ok"), (0.0, "ok"), (0.9, "ok")])
def test_status_without_a_status_key_is_derived_from_chance(accuracy, status):
    run = runs.Run(None, CONFIG, fake_summary(CONFIG, accuracy))
    assert run.n_classes == 10
    assert run.status == status


def test_the_summary_status_wins():
    assert runs.Run(None, CONFIG, fake_summary(CONFIG, 0.1, status="ok")).status == "ok"
    assert runs.Run(None, CONFIG, fake_summary(CONFIG, 0.8, status="at_chance")).status \
        == "at_chance"


def test_read_run_accepts_a_diverged_run_without_accuracy(tmp_path):
    path = write_summary(tmp_path, CONFIG, None, status="diverged")
    run = runs.read_run(path)
    assert (run.status, run.accuracy, run.config) == ("diverged", None, CONFIG)
    assert run.describe() == "mlp static d0.2 s0 (diverged, no accuracy)"
    checkpoint.write_json(path, fake_summary(CONFIG, None))            # ok needs accuracy
    with pytest.raises(ValueError, match=r"summary.json: test_accuracy == None, must be in"):
        runs.read_run(path)
    checkpoint.write_json(path, fake_summary(CONFIG, 0.5, status="crashed"))
    with pytest.raises(ValueError, match=r"summary.json: status == 'crashed', must be one "
                       r"of \('ok', 'diverged', 'at_chance'\)"):
        runs.read_run(path)
    path.write_text("{")
    with pytest.raises(ValueError, match=r"summary.json: not a readable JSON summary"):
        runs.read_run(path)


def test_group_runs_keeps_failed_runs_apart():
    configs = [c for c in sweep.build_grid("main")
               if c.model == "mlp" and sweep.label(c) == "rigl" and c.density == 0.01]
    made = [runs.Run(None, c, fake_summary(c, acc, status=status)) for c, acc, status in
            zip(configs, (0.8, 0.1, None), ("ok", "at_chance", "diverged"))]
    (group,) = runs.group_runs(made).values()
    assert group.cells == {("rigl", 0.01): [made[0]]}
    assert group.failed == {("rigl", 0.01): [made[1], made[2]]}
    assert group.failed_among(("rigl",)) == made[1:]
    assert group.failed_among(("set", "srigl")) == []
