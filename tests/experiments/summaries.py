"""Hand-written ``summary.json`` files of the sweep's grid for the report's tests: every
number is set here, so each table cell and verdict has a known answer."""
from dataclasses import asdict
from pathlib import Path

from experiments import runs, sweep
from srigl_ref import checkpoint

MLP_SHAPES = [[300, 784], [100, 300], [10, 100]]
SEED_OFFSET = {0: -0.002, 1: 0.0, 2: 0.002}          # accuracy std over 3 seeds: 0.2 pp
# mean accuracy per (label, density): every claim holds on these
ACCURACY = {("dense", 1.0): 0.90,
            ("static", 0.2): 0.85, ("static", 0.01): 0.70,
            ("set", 0.2): 0.87, ("set", 0.01): 0.75,
            ("rigl", 0.2): 0.89, ("rigl", 0.01): 0.80,
            ("srigl-noabl", 0.2): 0.885, ("srigl-noabl", 0.01): 0.76,
            ("srigl", 0.2): 0.89, ("srigl", 0.01): 0.80}


def fake_summary(config, accuracy, ablated=(0, 0, 0), seconds=60.0, status=None):
    """A summary.json dict as the trainer writes it, for an mlp run (with a ``"status"``
    when given; without, as written before the trainer had one)."""
    layers = [{"name": f"fc{i + 1}.weight", "shape": shape, "sparsity": 0.9, "fan_in": 10,
               "n_active_neurons": shape[0] - n, "n_ablated": n, "density": 0.1}
              for i, (shape, n) in enumerate(zip(MLP_SHAPES, ablated))]
    return {"test_accuracy": accuracy, "density": config.density * 0.999,
            "target_density": config.density, "method": config.method, "seconds": seconds,
            "epochs": config.epochs, "itop_rate": min(1.0, config.density * 2),
            "layers": layers, "config": asdict(config),
            **({} if status is None else {"status": status})}


def write_summary(root, config, accuracy=0.5, **kw) -> Path:
    """Write ``fake_summary`` as the run's ``summary.json`` below the sweep root."""
    path = Path(root) / sweep.run_dir(config) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(path, fake_summary(config, accuracy, **kw))
    return path


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
    """The ``ModelRuns`` of runs of one model."""
    (group,) = runs.group_runs(made).values()
    return group
