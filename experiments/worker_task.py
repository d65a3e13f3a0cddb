"""What a Dask worker runs for one run of the sweep: one single-threaded
``python -m srigl_ref train`` process, exactly as the local pool starts it.

This module is shipped to the workers by value (``cloudpickle.register_pickle_by_value``),
so a worker needs only ``srigl-ref`` and Dask installed, not this repository; it imports
nothing but the standard library (and Dask's ``get_worker``, when on a worker).

Without a shared filesystem the run goes to a scratch folder on the worker (in the worker's
local directory, which Dask purges when a dead worker's successor starts), seeded with the
files of a run to resume, and every file the run wrote comes back to the client with the
result. With a shared filesystem the run writes its own folder and nothing comes back.

The worker checks first that its ``srigl_ref`` and library versions are the client's
(``code_fingerprint``): runs of other code would not give the local pool's results.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
#: Libraries whose versions decide a run's numbers, besides ``srigl_ref``'s own source.
LIBRARIES = ("numpy", "numba", "scipy", "llvmlite")
LOG = "train.log"


def package_dir(code_root=None) -> Path:
    """The ``srigl_ref`` package a ``python -m srigl_ref`` started here would import.

    Parameters
    ----------
    code_root : path-like or None
        A folder put first on ``PYTHONPATH`` (the client's repository, on its own machine).

    Returns
    -------
    Path
    """
    if code_root is not None and (Path(code_root) / "srigl_ref" / "__init__.py").is_file():
        return Path(code_root) / "srigl_ref"
    spec = importlib.util.find_spec("srigl_ref")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"srigl_ref is not installed for {sys.executable}")
    return Path(spec.submodule_search_locations[0])


def code_fingerprint(code_root=None) -> dict:
    """What decides a run's numbers besides its configuration: a hash of the ``srigl_ref``
    sources (every ``*.py`` file's path and bytes), the Python and the ``LIBRARIES``
    versions.

    Parameters
    ----------
    code_root : path-like or None
        As ``package_dir``.

    Returns
    -------
    dict
        ``{"srigl_ref": sha256 hex, "python": "3.11", "numpy": "2.4.6", ...}``.
    """
    root = package_dir(code_root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    found = {"srigl_ref": digest.hexdigest(), "python": "%d.%d" % sys.version_info[:2]}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_environment(code_root=None) -> dict:
    """The environment of a ``srigl-ref train`` process: this one's, single-threaded
    (every variable of ``THREAD_VARIABLES`` = 1), with ``code_root`` first on
    ``PYTHONPATH`` when given.

    Parameters
    ----------
    code_root : path-like or None

    Returns
    -------
    dict
    """
    env = dict(os.environ, **{v: "1" for v in THREAD_VARIABLES})
    if code_root is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_root),
                                                          env.get("PYTHONPATH")]))
    return env


def _die_with_parent():
    """A ``preexec_fn`` that has Linux kill the child when the thread that started it dies
    (a killed worker leaves no orphaned training process); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec():
        prctl(pr_set_pdeathsig, signal.SIGKILL)
    return preexec


def _worker():
    """The Dask worker running this task, or None outside one."""
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


def run_train(args, *, folder=None, inputs=None, code_root=None, expect=None,
              topic=None, name="") -> dict:
    """Run ``python -m srigl_ref train ARGS`` here, single-threaded, and report.

    Parameters
    ----------
    args : list of str
        The ``srigl-ref train`` arguments; the string ``"{folder}"`` stands for the run's
        folder.
    folder : str or None
        The run's folder on a filesystem shared with the client (nothing is returned);
        None: a scratch folder here, whose files are returned.
    inputs : dict or None
        ``{relative path: bytes}`` put into the scratch folder first (a resumed run's
        checkpoint, metrics and log).
    code_root : str or None
        Put first on the run's ``PYTHONPATH`` when it holds ``srigl_ref`` (a worker on the
        client's machine runs the client's source tree).
    expect : dict or None
        The client's ``code_fingerprint``; when this worker's differs, nothing runs.
    topic : str or None
        Dask event topic on which the start of the run is announced to the client.
    name : str
        The run's name in that event.

    Returns
    -------
    dict
        ``returncode``, ``seconds``, ``worker`` (address), ``files`` (``{relative path:
        bytes}``; empty with ``folder``); or only ``mismatch`` (text) when the fingerprint
        differs.

    Raises
    ------
    RuntimeError
        When the process was killed by a signal (say, out of memory), so that Dask's
        ``retries`` run it again; a run that exits with an error code is reported, not
        retried (it would fail the same way).
    """
    worker = _worker()
    address = worker.address if worker is not None else "local"
    if expect is not None:
        found = code_fingerprint(code_root)
        diff = [f"{k} {found.get(k)!r} (client: {v!r})" for k, v in expect.items()
                if found.get(k) != v]
        if diff:
            return {"mismatch": f"worker {address} ({sys.executable}) runs other code than "
                                f"the client: {', '.join(diff)}"}
    scratch = None
    if folder is None:
        parent = worker.local_directory if worker is not None else None
        scratch = Path(tempfile.mkdtemp(prefix="srigl-run-", dir=parent))
        run_folder = scratch / "run"
        run_folder.mkdir()
        for rel, data in (inputs or {}).items():
            (run_folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (run_folder / rel).write_bytes(data)
    else:
        run_folder = Path(folder)
        run_folder.mkdir(parents=True, exist_ok=True)
        (run_folder / "summary.json").unlink(missing_ok=True)
    env = run_environment(code_root)
    argv = [a.replace("{folder}", str(run_folder)) for a in args]
    resumed = "--resume" in argv
    try:
        if topic is not None and worker is not None:
            worker.log_event(topic, {"event": "start", "name": name, "worker": address})
        t0 = time.perf_counter()
        with (run_folder / LOG).open("a" if resumed else "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "srigl_ref", "train", *argv],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    cwd=scratch or run_folder,
                                    preexec_fn=_die_with_parent())
            returncode = proc.wait()
        seconds = time.perf_counter() - t0
        if returncode < 0:
            raise RuntimeError(f"{name}: srigl-ref train was killed by signal "
                               f"{-returncode} on worker {address}")
        files = {} if scratch is None else {
            p.relative_to(run_folder).as_posix(): p.read_bytes()
            for p in sorted(run_folder.rglob("*")) if p.is_file()}
        return {"returncode": returncode, "seconds": seconds, "worker": address,
                "files": files}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
