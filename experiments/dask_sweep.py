"""The sweep on Dask distributed: every run of the grid is one Dask task, the same
single-threaded ``srigl-ref train`` process the local pool starts (``worker_task.run_train``).

``--scheduler local:N`` starts a ``LocalCluster`` of N single-threaded worker processes on
this machine (loopback only); ``--scheduler tcp://HOST:PORT`` joins a running scheduler
(workers started by hand, by dask-jobqueue on SLURM, dask-kubernetes, ...). The client
plans the runs from ``--out`` as the local pool does (finished runs are skipped), submits one
task per remaining run, longest first, and writes every finished run's files under ``--out``
(no shared filesystem needed; ``--shared-fs``: the workers write them there themselves).

Faults: a worker that dies mid-run loses only that run, which the scheduler gives to another
worker (up to ``distributed.scheduler.allowed-failures`` times); a run killed by a signal
on a live worker is re-run up to ``--retries`` times. A run that exits with an error is
reported, as by the local pool. Needs the optional extra ``dist``
(``pip install 'srigl-ref[dist]'``).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import queue
import re
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from experiments import worker_task
from experiments.sweep import ROOT, PlannedRun, Progress, describe, outcome, run_dir
from srigl_ref import checkpoint
from srigl_ref._validate import check_int

INSTALL_HINT = "pip install 'srigl-ref[dist]'"
#: The files a run to resume takes to its worker.
RESUME_FILES = ("model.npz", "metrics.jsonl", worker_task.LOG)


def require_distributed():
    """The ``distributed`` module.

    Raises
    ------
    ValueError
        One line naming the extra that installs it, when it is not installed.
    """
    try:
        import distributed
    except ImportError:
        raise ValueError(f"--scheduler needs Dask distributed, which is not installed: "
                         f"{INSTALL_HINT} (the extra 'dist')") from None
    return distributed


def parse_scheduler(spec: str) -> tuple[str, object]:
    """``("local", n_workers)`` for ``local:N``, ``("remote", address)`` for
    ``tcp://HOST:PORT`` (or ``tls://``).

    Parameters
    ----------
    spec : str

    Returns
    -------
    (str, int or str)

    Raises
    ------
    ValueError
        Naming ``spec`` and the accepted forms.
    """
    forms = ("must be local:N (N >= 1 worker processes on this machine) or "
             "tcp://HOST:PORT (a running Dask scheduler)")
    if spec.startswith("local:"):
        try:
            return "local", check_int("N", int(spec[len("local:"):]), low=1)
        except ValueError:
            raise ValueError(f"scheduler == {spec!r}, {forms}") from None
    if re.fullmatch(r"(tcp|tls)://[^\s/:]+:\d+", spec):
        return "remote", spec
    raise ValueError(f"scheduler == {spec!r}, {forms}")


@contextmanager
def connect(spec: str, *, timeout: float = 30.0):
    """A Dask ``Client`` of the scheduler ``spec`` (``parse_scheduler``); a local cluster
    is started for ``local:N`` and closed on exit.

    Parameters
    ----------
    spec : str
    timeout : float
        Seconds to wait for a remote scheduler.

    Yields
    ------
    distributed.Client
    """
    distributed = require_distributed()
    kind, value = parse_scheduler(spec)
    if kind == "local":
        with distributed.LocalCluster(n_workers=value, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address="127.0.0.1:0") \
                as cluster, distributed.Client(cluster) as client:
            yield client
    else:
        with distributed.Client(value, timeout=timeout) as client:
            yield client


class ByValue:
    """A function that any pickler ships by value, with its module: it pickles as
    ``pickle.loads`` of its ``cloudpickle`` bytes, so the scheduler and workers, which
    deserialize the task graph, need not import the module that defines it (``experiments``
    is not installed there). The module may import only what they have.

    Parameters
    ----------
    function : callable
        A module-level function.
    """

    def __init__(self, function):
        self.function = function

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __reduce__(self):
        import cloudpickle                      # installed with distributed
        module = sys.modules[self.function.__module__]
        cloudpickle.register_pickle_by_value(module)
        try:
            data = cloudpickle.dumps(self.function)
        finally:
            cloudpickle.unregister_pickle_by_value(module)
        return pickle.loads, (data,)


def task_key(run: PlannedRun) -> str:
    """The Dask key of a run's task: its folder and a hash of its configuration, e.g.
    ``srigl-train-mlp-srigl-d0.1-s0-1f2e3d4c`` (as the dashboard shows it)."""
    digest = hashlib.sha256(json.dumps(asdict(run.config), sort_keys=True).encode())
    return "-".join(["srigl-train", *run_dir(run.config).parts, digest.hexdigest()[:8]])


def write_run_files(folder: Path, files: dict) -> None:
    """Write a task's files into the run's folder, ``summary.json`` last (its presence
    means the run is done), each atomically.

    Parameters
    ----------
    folder : Path
    files : dict
        ``{relative path: bytes}``.

    Raises
    ------
    ValueError
        If a path leaves the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").unlink(missing_ok=True)
    for rel in sorted(files, key=lambda r: r == "summary.json"):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"file {rel!r} of a task leaves its run folder {folder}")
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write(path, lambda f, data=files[rel]: f.write(data))


def cluster_threads(client) -> int:
    """Worker threads the scheduler has now (at least 1, for the ETA)."""
    return max(1, sum(client.nthreads().values()))


def collect(future, run: PlannedRun, *, shared_fs: bool) -> tuple[bool, float, str]:
    """A finished task's run: its files written under ``--out`` (unless ``shared_fs``),
    then judged as the local pool judges a run (``sweep.outcome``).

    Parameters
    ----------
    future : distributed.Future
        Done.
    run : PlannedRun
    shared_fs : bool

    Returns
    -------
    (bool, float, str)
        Complete, wall seconds (0 for a task that raised) and the progress note.

    Raises
    ------
    ValueError
        When the worker runs other code than this tree.
    """
    try:
        result = future.result()
    except Exception as e:                          # noqa: BLE001 - reported per run
        return False, 0.0, (f"FAILED {run.path} (task {type(e).__name__}: "
                            f"{' '.join(str(e).split())})")
    if "mismatch" in result:
        raise ValueError(f"{result['mismatch']}; install this tree's srigl-ref and "
                         f"libraries on every worker")
    if not shared_fs:
        write_run_files(run.path, result["files"])
    ok, note = outcome(run, result["returncode"], result["seconds"])
    note += f" on {result['worker']}"
    if not ok and shared_fs and result["returncode"] == 0:
        note += (f"; no summary.json in {run.path} here: is --out on a filesystem the "
                 f"workers share, at the same path?")
    return ok, result["seconds"], note


def run_dask_sweep(runs, client, *, shared_fs: bool = False, retries: int = 2,
                   code_root=None, stream=None, heartbeat: float = 60.0,
                   poll: float = 0.2) -> list[PlannedRun]:
    """Run every planned run that is not done as one Dask task, longest first.

    Parameters
    ----------
    runs : sequence of PlannedRun
    client : distributed.Client
    shared_fs : bool
        The workers see ``--out`` at the same path: they write the run folders themselves
        and no file is transferred.
    retries : int >= 0
        Dask ``retries`` of a task whose run was killed by a signal.
    code_root : path-like or None
        Put first on the workers' ``PYTHONPATH`` (``ROOT`` for a cluster on this machine);
        None: the workers' installed ``srigl_ref``, which must equal this tree's.
    stream : file-like or None
        Where progress lines go (None: ``sys.stderr``).
    heartbeat : float
        Seconds between progress lines while nothing starts or finishes.
    poll : float
        Seconds between checks of the tasks.

    Returns
    -------
    list of PlannedRun
        The runs that failed, in order of failure.

    Raises
    ------
    ValueError
        When a worker runs other code than this tree (``worker_task.code_fingerprint``).
    """
    retries = check_int("retries", retries, low=0)
    run_train = ByValue(worker_task.run_train)
    waiting = sorted((r for r in runs if r.status != "done"), key=lambda r: -r.estimate)
    progress = Progress(len(runs), len(runs) - len(waiting), cluster_threads(client),
                        sys.stderr if stream is None else stream)
    expect = worker_task.code_fingerprint(ROOT)
    events = queue.Queue()
    topic = f"srigl-sweep-{uuid.uuid4().hex[:12]}"
    client.subscribe_topic(topic, events.put)
    pending, by_name = {}, {str(r.path): r for r in waiting}
    started, attempts, failed = {}, {}, []

    def state():
        now = time.perf_counter()
        queued = [r for r in pending.values() if str(r.path) not in started]
        return queued, [(by_name[n], now - t) for n, t in started.items()]

    try:
        for i, run in enumerate(waiting):
            folder = str(run.path.resolve()) if shared_fs else None
            inputs = None
            if run.status == "resume" and not shared_fs:
                inputs = {name: (run.path / name).read_bytes() for name in RESUME_FILES
                          if (run.path / name).is_file()}
            future = client.submit(
                run_train, run.train_args(folder or "{folder}"), folder=folder,
                inputs=inputs, code_root=None if code_root is None else str(code_root),
                expect=expect, topic=topic, name=str(run.path), key=task_key(run),
                priority=len(waiting) - i, retries=retries)
            pending[future] = run
        n_resume = sum(r.status == "resume" for r in waiting)
        progress.say(waiting, [], f"{len(waiting) - n_resume} to start, {n_resume} to "
                     f"resume: {len(waiting)} Dask tasks on {progress.jobs} worker thread(s)")
        last_said = time.perf_counter()
        while pending:
            time.sleep(poll)
            for future in [f for f in pending if f.done()]:
                run = pending.pop(future)
                started.pop(str(run.path), None)
                ok, seconds, note = collect(future, run, shared_fs=shared_fs)
                if not ok:
                    failed.append(run)
                progress.finished(run, seconds, ok)
                progress.jobs = cluster_threads(client)
                progress.say(*state(), note)
                last_said = time.perf_counter()
            while not events.empty():
                _, msg = events.get()
                name = msg["name"]
                if name not in {str(r.path) for r in pending.values()}:
                    continue                    # a late event of a finished run
                started[name] = time.perf_counter()
                attempts[name] = attempts.get(name, 0) + 1
                again = (f"restarted {name} on {msg['worker']} (attempt {attempts[name]}: "
                         f"its worker was lost or the run was killed)")
                progress.say(*state(), again if attempts[name] > 1
                             else f"started {name} on {msg['worker']}")
                last_said = time.perf_counter()
            if time.perf_counter() - last_said > heartbeat:
                progress.jobs = cluster_threads(client)
                progress.say(*state(), f"{progress.jobs} worker thread(s)")
                last_said = time.perf_counter()
    finally:
        client.unsubscribe_topic(topic)
        if pending:
            client.cancel(list(pending))
    progress.say([], [], progress.measured_note())
    return failed


def run_on_scheduler(runs, spec: str, *, shared_fs: bool = False, retries: int = 2,
                     stream=None) -> list[PlannedRun]:
    """Connect to ``spec`` (``connect``), print the dashboard address, and run the sweep
    (``run_dask_sweep``); nothing is started when every run is done.

    Parameters
    ----------
    runs : sequence of PlannedRun
    spec : str
        ``local:N`` or ``tcp://HOST:PORT``.
    shared_fs : bool
    retries : int >= 0
    stream : file-like or None
        Where progress lines go (None: ``sys.stderr``).

    Returns
    -------
    list of PlannedRun
        The runs that failed.
    """
    stream = sys.stderr if stream is None else stream
    kind, _ = parse_scheduler(spec)
    require_distributed()
    if all(r.status == "done" for r in runs):
        Progress(len(runs), len(runs), 1, stream).say([], [], "nothing to run")
        return []
    with connect(spec) as client:
        print(f"sweep: Dask scheduler {client.scheduler.address}, dashboard "
              f"{client.dashboard_link}", file=stream, flush=True)
        return run_dask_sweep(runs, client, shared_fs=shared_fs, retries=retries,
                              code_root=ROOT if kind == "local" else None, stream=stream)


def describe_plan(runs, spec: str, *, jobs: int, shared_fs: bool, retries: int,
                  out) -> str:
    """``--dry-run`` with ``--scheduler``: the grid (``describe``) and the Dask plan.

    A remote scheduler is asked for its worker threads (5 s); when it does not answer, the
    estimate uses ``jobs``.

    Parameters
    ----------
    runs : sequence of PlannedRun
    spec : str
        ``--scheduler``.
    jobs : int >= 1
        Worker threads assumed for a remote scheduler that does not answer.
    shared_fs : bool
    retries : int
    out : path-like
        ``--out``.

    Returns
    -------
    str
    """
    distributed = require_distributed()
    kind, value = parse_scheduler(spec)
    if kind == "local":
        threads = value
        where = (f"a LocalCluster on this machine: {value} worker process(es) x 1 thread, "
                 f"loopback only (127.0.0.1), started for the sweep and closed after it")
    else:
        try:
            with distributed.Client(value, timeout=5) as client:
                threads = cluster_threads(client)
                where = (f"the running scheduler {value}: {len(client.nthreads())} "
                         f"worker(s), {threads} thread(s) now")
        except (OSError, TimeoutError) as e:
            threads = jobs
            where = (f"the scheduler {value}, not reachable now ({type(e).__name__}); the "
                     f"estimate assumes --jobs {jobs} worker threads")
    todo = [r for r in runs if r.status != "done"]
    example = (task_key(todo[0]) if todo
               else "srigl-train-<model>-<label>-d<density>-s<seed>-<hash>")
    files = ("written by the workers into --out themselves (--shared-fs: the same path on "
             "every worker)" if shared_fs else
             f"returned to this machine and written under {out} (summary.json last); a run "
             f"to resume takes its checkpoint, metrics and log to its worker")
    lines = [describe(runs, threads), "",
             f"Dask plan: scheduler {spec}: {where}.",
             f"- {len(todo)} task(s), one per run to start or resume, longest first (task "
             f"priority), each one single-threaded `python -m srigl_ref train` process on a "
             f"worker; keys like {example}",
             f"- files: {files}",
             f"- faults: a worker lost mid-run: the scheduler re-runs its run elsewhere "
             f"(distributed.scheduler.allowed-failures); a run killed by a signal: "
             f"retried {retries} time(s); a run that exits with an error: reported",
             f"- every worker must run this tree's srigl_ref and library versions (checked "
             f"by each task before it runs) and find the data sets; the progress shows the "
             f"dashboard address"]
    return "\n".join(lines)
