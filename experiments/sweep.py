"""Do the paper's claims hold at laptop scale? The sweep: methods x densities x seeds x
models on Fashion-MNIST, one single-threaded ``srigl-ref train`` process per run.

Grids (``--grid``):

- ``main``: dense, static, SET, RigL, SRigL without ablation (``srigl-noabl``) and SRigL,
  at densities 0.2, 0.1, 0.05, 0.01 (``resnet20``: 0.1, 0.01), seeds 0 .. ``--seeds`` - 1
  (default 3), on the ``--models`` (default LeNet-300-100 ``mlp``, 20 epochs, and LeNet-5
  ``lenet5``, 5 epochs; ``resnet20``, 5 epochs, on request); dense runs once per model and
  seed (density 1);
- ``ablation``: SRigL on ``mlp`` with ``gamma_sal`` in {0, 0.1, 0.3, 0.5, 0.95} at densities
  0.05 and 0.01, same seeds (the ``gamma_sal`` = 0.3 runs are those of ``main``);
- ``scale``: where does neuron ablation fire, and does it help there? SRigL with and
  without ablation past the main grid: LeNet-300-100 at density 0.005, LeNet-5 at 0.02 and
  0.0075, and a wide MLP 784-1024-1024-10 (condensed engine) at 0.05, 0.01 and 0.005, same
  seeds;
- ``all``: all three (each run once).

Every run writes ``ROOT/<model>/<label>/d<density>/s<seed>/`` (``<model>`` as
``runs.model_label`` names it, e.g. ``mlp-1024x1024``) (``summary.json``,
``metrics.jsonl``, ``model.npz`` as ``srigl-ref train`` does, plus ``train.log``, the run's
own output). Runs go to ``--jobs`` local processes (one per core), or with ``--scheduler``
to a Dask cluster (``experiments/dask_sweep.py``: one task per run, files returned to this
machine), each single-threaded (``OMP_NUM_THREADS`` = ``OPENBLAS_NUM_THREADS`` =
``NUMBA_NUM_THREADS`` = 1), longest first.

Resumable: a run whose ``summary.json`` is valid (``runs.read_run``), is of the
grid's configuration and completed all epochs, or says it diverged (rerunning it diverges
again), is skipped; one with a ``model.npz`` of the grid's configuration but no valid
summary continues with ``srigl-ref train --resume``; any other is started afresh. A finished
run of *another* configuration (say, other epochs) is an error: use another ``--out``.
Progress (done / running / remaining, ETA from the measured run times) goes to stderr.

    python experiments/sweep.py --dry-run              # the grid, its state and a time estimate
    python experiments/sweep.py                        # the full sweep into runs/sweep
    python experiments/report.py                       # then the report: docs/results.md
    python experiments/sweep.py --quick --out /tmp/q   # a smoke sweep on synthetic data
    python experiments/sweep.py --scheduler local:2    # the same on a Dask LocalCluster
    python experiments/sweep.py --scheduler tcp://HOST:8786 --seeds 5   # on a cluster
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments.runs import OK, label, model_label, read_run  # noqa: E402
from experiments.worker_task import LOG, run_environment  # noqa: E402
from srigl_ref import checkpoint  # noqa: E402
from srigl_ref._validate import check_int  # noqa: E402
from srigl_ref.train import TrainConfig  # noqa: E402

GRIDS = ("main", "ablation", "scale", "all")
#: Method labels of the grid and the ``TrainConfig`` fields each sets.
LABELS = {
    "dense": dict(method="dense", density=1.0),
    "static": dict(method="static"),
    "set": dict(method="set"),
    "rigl": dict(method="rigl"),
    "srigl-noabl": dict(method="srigl", ablation=False),
    "srigl": dict(method="srigl"),
}
DENSITIES = (0.2, 0.1, 0.05, 0.01)
#: Densities of the models that do not run at all of ``DENSITIES``.
MODEL_DENSITIES = {"resnet20": (0.1, 0.01)}
#: The default seeds (``--seeds`` N runs seeds 0 .. N - 1).
SEEDS = (0, 1, 2)
#: Epochs per model the grid can run, chosen so that ``--grid all`` with the default models
#: fits in well under 3 h on 2 cores (``--dry-run`` shows the estimate).
EPOCHS = {"mlp": 20, "lenet5": 5, "resnet20": 5}
DEFAULT_MODELS = ("mlp", "lenet5")
GAMMAS = (0.0, 0.1, 0.3, 0.5, 0.95)
ABLATION_DENSITIES = (0.05, 0.01)
ABLATION_MODEL = "mlp"
#: ``--grid scale``: SRigL with and without ablation (``SCALE_LABELS``) on these models
#: (``TrainConfig`` fields beyond the model's ``EPOCHS``) at these densities.
#: LeNet-5 cannot go to 0.005 (under ERK its conv2 keeps 11 weights for 16 filters, so
#: constant fan-in has k == 0): 0.0075 (k == 1 in both convs) is as sparse as it goes, and
#: 0.02 sits between the main grid's 0.05 (ablation barely fires) and 0.01 (it always does).
SCALE = ((dict(model="mlp"), (0.005,)),
         (dict(model="lenet5"), (0.02, 0.0075)),
         (dict(model="mlp", hidden=(1024, 1024), engine="condensed"), (0.05, 0.01, 0.005)))
SCALE_LABELS = ("srigl-noabl", "srigl")

#: ``--quick``: a smoke sweep of seconds on synthetic data (``TrainConfig`` fields).
QUICK = dict(dataset="synthetic", epochs=1, n_train=256, batch_size=32, delta=4)
QUICK_LABELS = ("static", "srigl")
QUICK_DENSITIES = (0.1,)
QUICK_GAMMAS = (0.0, 0.95)
QUICK_SCALE = ((dict(model="mlp", hidden=(64, 64), engine="condensed"), (0.1,)),)

#: Prior cost model of one run (wall seconds, one thread), measured here with one run of
#: ``srigl-ref train --n-train 6000 --epochs 1`` per model on Fashion-MNIST, on 2 cores
#: shared with other work (load average 4-5): process start (imports, data, cached
#: kernels) + epochs * (n_train * train + n_test * evaluation seconds per example).
#: Only the first estimate: the ETA rescales it by the measured run times.
#: ``resnet20``'s are not measured: LeNet-5's scaled by the ratio of dense multiply-adds
#: per 28 x 28 example (about 31 M vs 0.42 M: 75).
STARTUP_SECONDS = 3.5
TRAIN_SECONDS_PER_EXAMPLE = {"mlp": 5.7e-5, "lenet5": 4.1e-4, "resnet20": 4.1e-4 * 75}
EVAL_SECONDS_PER_EXAMPLE = {"mlp": 1.3e-5, "lenet5": 1.9e-4, "resnet20": 1.9e-4 * 75}
DATA_SIZES = {"fashion-mnist": (60000, 10000), "mnist": (60000, 10000),   # (train, test)
              "synthetic": (4096, 1024)}

#: ``TrainConfig`` fields spelled out in every run's command line, default or not.
ALWAYS = ("dataset", "model", "method", "density", "epochs", "seed")
_DEFAULTS = TrainConfig()


# ---------------------------------------------------------------------- the grid
def build_grid(grid: str = "main", *, quick: bool = False, seeds: int | None = None,
               models=None) -> list[TrainConfig]:
    """The run configurations of a grid, each once, in a fixed order.

    Parameters
    ----------
    grid : {"main", "ablation", "scale", "all"}
    quick : bool
        The smoke grid instead: synthetic data, one epoch of 256 examples, methods
        ``static`` and ``srigl`` (main) / ``gamma_sal`` 0 and 0.95 (ablation) / SRigL with
        and without ablation on a condensed 64-64 MLP (scale) at density 0.1.
    seeds : int >= 1 or None
        Seeds 0 .. ``seeds`` - 1; None: ``SEEDS`` (quick: seed 0 only).
    models : sequence of str or None
        Models of the main grid, each a key of ``EPOCHS``; None: ``DEFAULT_MODELS``
        (quick: ``mlp`` only). The ablation and scale studies run on their own models
        (``ABLATION_MODEL``, ``SCALE``) whatever the models.

    Returns
    -------
    list of TrainConfig

    Raises
    ------
    ValueError
        If ``grid`` is not one of ``GRIDS``, ``seeds`` is not >= 1, or a model is not one
        of ``EPOCHS`` or not known to ``srigl_ref`` (naming it).
    """
    if grid not in GRIDS:
        raise ValueError(f"grid == {grid!r}, must be one of {GRIDS}")
    if models is None:
        models = (ABLATION_MODEL,) if quick else DEFAULT_MODELS
    for model in models:
        if model not in EPOCHS:
            raise ValueError(f"models contains {model!r}, must be in {tuple(EPOCHS)}")
    seeds = (range(1) if quick else SEEDS) if seeds is None else range(
        check_int("seeds", seeds, low=1))
    if quick:
        base = {m: dict(QUICK, model=m) for m in (*models, ABLATION_MODEL)}
        labels, densities = QUICK_LABELS, {m: QUICK_DENSITIES for m in base}
        gammas, ablation_densities = QUICK_GAMMAS, QUICK_DENSITIES
    else:
        base = {m: dict(model=m, epochs=EPOCHS[m]) for m in (*models, ABLATION_MODEL)}
        labels = tuple(LABELS)
        densities = {m: MODEL_DENSITIES.get(m, DENSITIES) for m in base}
        gammas, ablation_densities = GAMMAS, ABLATION_DENSITIES
    configs = []
    if grid in ("main", "all"):
        for model in models:
            for seed in seeds:
                for label in labels:
                    for density in ((1.0,) if label == "dense" else densities[model]):
                        configs.append(TrainConfig(**{**base[model], "density": density,
                                                      "seed": seed, **LABELS[label]}))
    if grid in ("ablation", "all"):
        for seed in seeds:
            for density in ablation_densities:
                for gamma_sal in gammas:
                    configs.append(TrainConfig(**base[ABLATION_MODEL], method="srigl",
                                               density=density, seed=seed,
                                               gamma_sal=gamma_sal))
    if grid in ("scale", "all"):
        for seed in seeds:
            for fields_, scale_densities in (QUICK_SCALE if quick else SCALE):
                run = {**(QUICK if quick else {"epochs": EPOCHS[fields_["model"]]}),
                       **fields_}
                for label in SCALE_LABELS:
                    for density in scale_densities:
                        configs.append(TrainConfig(**run, density=density, seed=seed,
                                                   **LABELS[label]))
    return list(dict.fromkeys(configs))


def sweep_options(grid: str, *, quick: bool = False, seeds: int | None = None,
                  models=None) -> list[str]:
    """The ``experiments/sweep.py`` options that select a grid (defaults left out).

    Parameters
    ----------
    grid, quick, seeds, models
        As ``build_grid``.

    Returns
    -------
    list of str
    """
    options = ["--grid", grid] + (["--quick"] if quick else [])
    if seeds is not None and seeds != (1 if quick else len(SEEDS)):
        options += ["--seeds", str(seeds)]
    if models is not None and tuple(models) != ((ABLATION_MODEL,) if quick
                                                else DEFAULT_MODELS):
        options += ["--models", ",".join(models)]
    return options


def run_dir(config: TrainConfig) -> Path:
    """The folder of a run below the sweep root.

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    Path
        ``<model>/<label>/d<density>/s<seed>`` (relative).
    """
    return Path(model_label(config), label(config), f"d{config.density:g}",
                f"s{config.seed}")


def train_argv(config: TrainConfig) -> list[str]:
    """The ``srigl-ref train`` options that reproduce ``config``: those of ``ALWAYS``, then
    every other field that differs from its default.

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If ``config`` sets a field that ``srigl-ref train`` has no option for.
    """
    argv = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name not in ALWAYS and value == getattr(_DEFAULTS, f.name):
            continue
        if f.name == "ablation":
            argv.append("--no-ablation")
        elif f.name in ("nesterov", "ablation_base", "exempt_last_layer",
                        "dense_layers"):
            raise ValueError(f"config.{f.name} == {value!r}: srigl-ref train has no option "
                             f"for it, must be {getattr(_DEFAULTS, f.name)!r}")
        elif f.name == "hidden":
            argv += ["--hidden", *map(str, value)]
        else:
            argv += [f"--{f.name.replace('_', '-')}", str(value)]
    return argv


def estimate_seconds(config: TrainConfig, epochs_done: int = 0) -> float:
    """Prior wall-time estimate of a run (or of its remaining epochs), one thread.

    Parameters
    ----------
    config : TrainConfig
        Of a model in ``TRAIN_SECONDS_PER_EXAMPLE`` and a dataset in ``DATA_SIZES``.
    epochs_done : int
        Epochs already completed (a resumed run).

    Returns
    -------
    float
        Seconds.
    """
    n_train, n_test = DATA_SIZES[config.dataset]
    if config.n_train is not None:
        n_train = min(n_train, config.n_train)
    epoch = (n_train * TRAIN_SECONDS_PER_EXAMPLE[config.model]
             + n_test * EVAL_SECONDS_PER_EXAMPLE[config.model])
    return STARTUP_SECONDS + (config.epochs - epochs_done) * epoch


# ---------------------------------------------------------------------- run states
@dataclass(frozen=True)
class PlannedRun:
    """A run of the grid and what the sweep must do with it.

    Attributes
    ----------
    config : TrainConfig
    path : Path
        Its folder (``root / run_dir(config)``).
    status : {"done", "resume", "new"}
        Skip, continue with ``--resume``, or start afresh.
    epochs_done : int
        Epochs completed (``config.epochs`` when done).
    """
    config: TrainConfig
    path: Path
    status: str
    epochs_done: int = 0

    @property
    def estimate(self) -> float:
        """Prior seconds still needed (0 when done)."""
        return 0.0 if self.status == "done" else estimate_seconds(self.config,
                                                                  self.epochs_done)

    def train_args(self, folder=None) -> list[str]:
        """The ``srigl-ref train`` arguments of this run, writing to ``folder`` (None: its
        own ``path``)."""
        folder = str(self.path if folder is None else folder)
        if self.status == "resume":
            return ["--resume", folder]
        return train_argv(self.config) + ["--out", folder]

    def command(self) -> list[str]:
        """The ``python -m srigl_ref train`` command line of this run."""
        return [sys.executable, "-m", "srigl_ref", "train", *self.train_args()]


def run_state(config: TrainConfig, path) -> PlannedRun:
    """Decide whether the run of ``config`` in ``path`` is done, to resume, or new.

    Done: ``summary.json`` passes ``runs.read_run``, holds ``config`` and all epochs, or
    says the run diverged. Resume: otherwise, when ``model.npz`` loads and holds
    ``config``. New: anything else (missing or corrupt files, a checkpoint of another
    configuration).

    Parameters
    ----------
    config : TrainConfig
    path : path-like
        The run's folder (need not exist).

    Returns
    -------
    PlannedRun

    Raises
    ------
    ValueError
        If ``summary.json`` is a finished run of another configuration (naming the folder
        and the fields that differ): the sweep never overwrites a finished run.
    """
    path = Path(path)
    summary_path = path / "summary.json"
    if summary_path.exists():
        try:
            finished = read_run(summary_path)
        except ValueError:
            pass                                  # corrupt: the run is redone
        else:
            found = finished.config
            if found != config:
                diff = [f"{f.name} {getattr(found, f.name)!r} (grid: "
                        f"{getattr(config, f.name)!r})" for f in fields(TrainConfig)
                        if getattr(found, f.name) != getattr(config, f.name)]
                raise ValueError(f"{summary_path}: a finished run of another configuration: "
                                 f"{', '.join(diff)}; use another --out or remove {path}")
            if (finished.summary.get("epochs") == config.epochs
                    or finished.status == "diverged"):
                return PlannedRun(config, path, "done", config.epochs)
    try:
        ckpt = checkpoint.load_checkpoint(path / "model.npz")
        found = TrainConfig.from_dict(ckpt.config)
    except (ValueError, TypeError):
        return PlannedRun(config, path, "new")
    if found != config:
        return PlannedRun(config, path, "new")
    return PlannedRun(config, path, "resume", ckpt.meta["epoch"])


def plan(configs, root) -> list[PlannedRun]:
    """``run_state`` of every configuration in its folder below ``root``.

    Parameters
    ----------
    configs : iterable of TrainConfig
    root : path-like
        The sweep root.

    Returns
    -------
    list of PlannedRun

    Raises
    ------
    ValueError
        As ``run_state``.
    """
    return [run_state(c, Path(root) / run_dir(c)) for c in configs]


# ---------------------------------------------------------------------- running
def fmt_duration(seconds: float) -> str:
    """``'1:02:03'`` (hours, minutes, seconds)."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def wall_estimate(seconds, jobs: int) -> float:
    """Wall time of tasks run on ``jobs`` workers, longest first.

    Parameters
    ----------
    seconds : iterable of float
        Each task's duration.
    jobs : int >= 1

    Returns
    -------
    float
        The larger of the longest task and the total over the workers (0 for no task).
    """
    seconds = list(seconds)
    return max(max(seconds), sum(seconds) / jobs) if seconds else 0.0


class Progress:
    """Counts of done / running / remaining runs and an ETA, as lines on a stream.

    The ETA scales the prior estimates of the runs left by the median ratio of measured to
    estimated time over the runs finished so far.

    Parameters
    ----------
    n_total, n_done : int
        Runs in the grid, and runs done before this sweep started.
    jobs : int
    stream : file-like
    """

    def __init__(self, n_total: int, n_done: int, jobs: int, stream):
        self.n_total, self.n_done, self.jobs, self.stream = n_total, n_done, jobs, stream
        self.n_failed = 0
        self.ratios = []                     # measured / estimated seconds per finished run
        self.measured = {}                   # model -> wall seconds of its finished runs
        self.t0 = time.perf_counter()

    def finished(self, run: PlannedRun, seconds: float, ok: bool) -> None:
        """Record a finished run (``ok``: exit code 0 and a valid summary)."""
        if ok:
            self.n_done += 1
            self.ratios.append(seconds / run.estimate)
            self.measured.setdefault(run.config.model, []).append(seconds)
        else:
            self.n_failed += 1

    def eta(self, waiting, running) -> float:
        """Seconds left: ``waiting`` runs, ``running`` (run, seconds so far) pairs."""
        scale = statistics.median(self.ratios) if self.ratios else 1.0
        left = [r.estimate * scale for r in waiting]
        left += [max(r.estimate * scale - elapsed, 0.0) for r, elapsed in running]
        return wall_estimate(left, self.jobs)

    def measured_note(self) -> str:
        """Mean wall seconds per finished run and model, or "nothing to run"."""
        means = ", ".join(f"{m} {statistics.mean(s):.1f} s (n={len(s)})"
                          for m, s in self.measured.items())
        return f"measured wall per run: {means}" if means else "nothing to run"

    def say(self, waiting, running, note: str = "") -> None:
        """One progress line: counts, elapsed time, ETA and an optional note."""
        failed = f", {self.n_failed} failed" if self.n_failed else ""
        line = (f"sweep: {self.n_done}/{self.n_total} done, {len(running)} running, "
                f"{len(waiting)} waiting{failed} | elapsed "
                f"{fmt_duration(time.perf_counter() - self.t0)}, ETA "
                f"{fmt_duration(self.eta(waiting, running))}")
        print(line + (f" | {note}" if note else ""), file=self.stream, flush=True)


def _last_line(path: Path) -> str:
    if not path.is_file():
        return f"(no {path.name})"
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no output)"


def outcome(run: PlannedRun, returncode: int, seconds: float) -> tuple[bool, str]:
    """Did a finished ``srigl-ref train`` process complete its run? And the progress note.

    Complete: ``summary.json`` passes ``runs.read_run`` and the exit code is 0, or the
    summary says the run diverged (the trainer then exits non-zero: rerunning it would
    diverge again, so it counts as done, flagged).

    Parameters
    ----------
    run : PlannedRun
    returncode : int
    seconds : float
        Its wall time.

    Returns
    -------
    (bool, str)
    """
    try:
        finished = read_run(run.path / "summary.json")
    except ValueError:
        finished = None
    if finished is not None and (returncode == 0 or finished.status == "diverged"):
        acc = finished.accuracy
        flag = "" if finished.status == OK else f" [{finished.status.upper()}]"
        return True, (f"finished {run.path} in {seconds:.0f} s, accuracy "
                      f"{'-' if acc is None else f'{acc:.4f}'}{flag}")
    return False, (f"FAILED {run.path} (exit {returncode}): "
                   f"{_last_line(run.path / LOG)}")


def run_sweep(runs, *, jobs: int, stream=None, heartbeat: float = 60.0,
              poll: float = 0.2) -> list[PlannedRun]:
    """Run every planned run that is not done, ``jobs`` at a time, longest first.

    Each run is a ``python -m srigl_ref train`` process, single-threaded, its output in
    ``<run>/train.log``; an invalid ``summary.json`` left from an earlier attempt is removed
    first. On an exception (Ctrl-C included) the running processes are terminated; their
    checkpoints let the next sweep resume them.

    Parameters
    ----------
    runs : sequence of PlannedRun
    jobs : int >= 1
    stream : file-like or None
        Where progress lines go (None: ``sys.stderr``).
    heartbeat : float
        Seconds between progress lines while nothing starts or finishes.
    poll : float
        Seconds between checks of the running processes.

    Returns
    -------
    list of PlannedRun
        The runs that failed (not complete by ``outcome``), in order of failure.
    """
    jobs = check_int("jobs", jobs, low=1)
    waiting = sorted((r for r in runs if r.status != "done"), key=lambda r: -r.estimate)
    progress = Progress(len(runs), len(runs) - len(waiting), jobs,
                        sys.stderr if stream is None else stream)
    env = run_environment(ROOT)
    running = {}                                   # Popen -> (run, start time, log file)
    failed = []
    n_resume = sum(r.status == "resume" for r in waiting)
    progress.say(waiting, [], f"{len(waiting) - n_resume} to start, {n_resume} to resume")
    last_said = time.perf_counter()

    def elapsed():
        now = time.perf_counter()
        return [(r, now - t) for r, t, _ in running.values()]

    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                run = waiting.pop(0)
                run.path.mkdir(parents=True, exist_ok=True)
                (run.path / "summary.json").unlink(missing_ok=True)
                log = (run.path / LOG).open("a" if run.status == "resume" else "w")
                proc = subprocess.Popen(run.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
                running[proc] = (run, time.perf_counter(), log)
                progress.say(waiting, elapsed(), f"started {run.path}"
                             + (f" (resume after epoch {run.epochs_done})"
                                if run.status == "resume" else ""))
                last_said = time.perf_counter()
            time.sleep(poll)
            for proc in [p for p in running if p.poll() is not None]:
                run, t_start, log = running.pop(proc)
                log.close()
                seconds = time.perf_counter() - t_start
                ok, note = outcome(run, proc.returncode, seconds)
                progress.finished(run, seconds, ok)
                if not ok:
                    failed.append(run)
                progress.say(waiting, elapsed(), note)
                last_said = time.perf_counter()
            if time.perf_counter() - last_said > heartbeat:
                progress.say(waiting, elapsed())
                last_said = time.perf_counter()
    finally:
        for proc, (_, _, log) in running.items():
            proc.terminate()
            proc.wait()
            log.close()
    progress.say([], [], progress.measured_note())
    return failed


# ---------------------------------------------------------------------- command line
def describe(runs, jobs: int) -> str:
    """The grid as a table (state, estimated seconds, folder) and the time estimate.

    Parameters
    ----------
    runs : sequence of PlannedRun
    jobs : int >= 1

    Returns
    -------
    str
        Lines for ``--dry-run``.
    """
    lines = [f"{'state':<7} {'est. s':>7}  run"]
    for r in runs:
        lines.append(f"{r.status:<7} {r.estimate:>7.0f}  {run_dir(r.config)}")
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "resume", "new")}
    per_model = {}
    for r in runs:
        per_model.setdefault(r.config.model, []).append(r)
    lines.append("")
    for model, rs in per_model.items():
        lines.append(f"{model}: {len(rs)} runs, {rs[0].config.epochs} epochs, estimated "
                     f"{estimate_seconds(rs[0].config):.0f} s per run")
    lines.append(f"{len(runs)} runs: {counts['done']} done, {counts['resume']} to resume, "
                 f"{counts['new']} to start; estimated wall time with {jobs} jobs: "
                 f"{fmt_duration(wall_estimate([r.estimate for r in runs], jobs))}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="experiments/sweep.py",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/sweep", help="sweep root (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel runs (default: one per core, %(default)s)")
    ap.add_argument("--grid", choices=GRIDS, default="all",
                    help="main: methods x densities; ablation: the gamma_sal study; scale: "
                    "ablation on or off past the main grid; all: the three (default)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny grid on synthetic data, for smoke tests (seconds)")
    ap.add_argument("--seeds", type=int, default=None,
                    help=f"run seeds 0 .. SEEDS-1 (default {len(SEEDS)}; --quick: 1)")
    ap.add_argument("--models", default=None,
                    help=f"comma-separated models of the main grid, of {', '.join(EPOCHS)} "
                    f"(default {','.join(DEFAULT_MODELS)}; --quick: {ABLATION_MODEL})")
    ap.add_argument("--scheduler", default=None, metavar="local:N|tcp://HOST:PORT",
                    help="run every run as one Dask task: on a LocalCluster of N worker "
                    "processes, or on a running Dask scheduler (needs the extra 'dist'); "
                    "default: the local process pool (--jobs)")
    ap.add_argument("--shared-fs", action="store_true",
                    help="with --scheduler: the workers see --out at the same path and "
                    "write the run folders themselves (default: files are returned to "
                    "this machine)")
    ap.add_argument("--retries", type=int, default=2,
                    help="with --scheduler: re-runs of a run killed by a signal "
                    "(default %(default)s)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the grid, its state and the time estimate; run nothing")
    return ap


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 some runs failed, 2 bad arguments or
    runs of another configuration in ``--out``, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    models = None if args.models is None else tuple(args.models.split(","))
    try:
        check_int("jobs", args.jobs, low=1)
        check_int("retries", args.retries, low=0)
        if args.shared_fs and args.scheduler is None:
            raise ValueError("--shared-fs applies with --scheduler only (the local pool "
                             "always writes --out itself)")
        if args.scheduler is not None:
            from experiments import dask_sweep
            dask_sweep.parse_scheduler(args.scheduler)
            dask_sweep.require_distributed()
        runs = plan(build_grid(args.grid, quick=args.quick, seeds=args.seeds,
                               models=models), args.out)
        if args.dry_run:
            print(describe(runs, args.jobs) if args.scheduler is None else
                  dask_sweep.describe_plan(runs, args.scheduler, jobs=args.jobs,
                                           shared_fs=args.shared_fs,
                                           retries=args.retries, out=args.out))
            return 0
    except (ValueError, TypeError) as e:
        print(f"sweep.py: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.scheduler is None:
            failed = run_sweep(runs, jobs=args.jobs)
        else:
            failed = dask_sweep.run_on_scheduler(runs, args.scheduler,
                                                 shared_fs=args.shared_fs,
                                                 retries=args.retries)
    except ValueError as e:                       # a worker of other code
        print(f"sweep.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep.py: interrupted; the same command resumes the sweep", file=sys.stderr)
        return 130
    if failed:
        print(f"sweep.py: {len(failed)} run(s) failed (see train.log in each; rerun the "
              f"same command to retry): " + ", ".join(str(r.path) for r in failed),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
