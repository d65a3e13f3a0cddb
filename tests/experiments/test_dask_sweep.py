"""The sweep on Dask distributed (experiments/dask_sweep.py, worker_task.py): the quick grid
on a LocalCluster of 2 worker processes (loopback) gives the serial runner's results, a
rerun does nothing, a worker killed mid-run loses only its run, and the errors."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from distributed import Client, LocalCluster

from experiments import dask_sweep, sweep, worker_task

#: Summary and metrics fields that measure time, not results.
TIMING = {"seconds"}


def results_of(path):
    """What a run computed: its summary and metrics without timings, and its checkpoint's
    arrays."""
    summary = {k: v for k, v in json.loads((path / "summary.json").read_text()).items()
               if k not in TIMING}
    metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
               for line in (path / "metrics.jsonl").read_text().splitlines()]
    with np.load(path / "model.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return summary, metrics, arrays


def assert_same_results(a, b):
    (sa, ma, za), (sb, mb, zb) = results_of(a), results_of(b)
    assert sa == sb and ma == mb
    assert za.keys() == zb.keys()
    for k in za:
        np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def test_quick_grid_on_local_cluster_equals_serial_then_rerun_does_nothing(
        tmp_path, monkeypatch, capsys):
    grid = sweep.build_grid("all", quick=True)
    serial, dask = tmp_path / "serial", tmp_path / "dask"
    assert sweep.main(["--quick", "--out", str(serial), "--jobs", "1"]) == 0
    assert sweep.main(["--quick", "--out", str(dask), "--scheduler", "local:2"]) == 0
    err = capsys.readouterr().err
    assert "sweep: Dask scheduler tcp://127.0.0.1:" in err and ", dashboard http" in err
    assert f"{len(grid)} Dask tasks on 2 worker thread(s)" in err
    assert f"{len(grid)}/{len(grid)} done, 0 running, 0 waiting" in err
    for config in grid:
        path = sweep.run_dir(config)
        assert f"finished {dask / path} in" in err and f"started {dask / path} on tcp://" in err
        assert_same_results(serial / path, dask / path)
        assert "test accuracy" in (dask / path / "train.log").read_text()

    def no_cluster(*a, **kw):
        raise AssertionError("a cluster was started with every run done")
    monkeypatch.setattr(dask_sweep, "connect", no_cluster)
    before = {p: p.stat().st_mtime_ns for p in dask.rglob("*")}
    assert sweep.main(["--quick", "--out", str(dask), "--scheduler", "local:2"]) == 0
    assert f"{len(grid)}/{len(grid)} done, 0 running, 0 waiting" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in dask.rglob("*")} == before
    monkeypatch.undo()
    # interrupted after its last checkpoint: the worker gets checkpoint, metrics and log
    # from the client (no shared files) and resumes
    cut = dask / sweep.run_dir(grid[1])
    (cut / "summary.json").unlink()
    assert sweep.main(["--quick", "--out", str(dask), "--scheduler", "local:1"]) == 0
    err = capsys.readouterr().err
    assert "1 to start, 0 to resume" not in err and "0 to start, 1 to resume" in err
    assert f"finished {cut} in" in err
    assert_same_results(serial / sweep.run_dir(grid[1]), cut)


def test_a_cluster_started_by_hand_needs_only_srigl_ref(tmp_path, capsys):
    """``dask scheduler`` and ``dask worker`` processes that can import ``srigl_ref`` (this
    tree's) but not this repository's ``experiments``: the tasks reach them by value."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "srigl_ref").symlink_to(sweep.ROOT / "srigl_ref")
    env = dict(os.environ, PYTHONPATH=str(site))
    assert subprocess.run([sys.executable, "-c", "import experiments"], cwd=tmp_path,
                          env=env, capture_output=True).returncode == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    commands = [["scheduler", "--host", "127.0.0.1", "--port", str(port),
                 "--dashboard-address", "127.0.0.1:0"],
                ["worker", address, "--nworkers", "1", "--nthreads", "1",
                 "--host", "127.0.0.1"]]
    processes = []
    try:
        for command in commands:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", *command], cwd=tmp_path, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{command[0]}.log").open("w")))
            time.sleep(1.0)
        out = tmp_path / "out"
        assert sweep.main(["--quick", "--grid", "main", "--out", str(out),
                           "--scheduler", address]) == 0, \
            (tmp_path / "scheduler.log").read_text()[-3000:]
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    err = capsys.readouterr().err
    assert f"sweep: Dask scheduler {address}, dashboard http://127.0.0.1:" in err
    assert "2/2 done, 0 running, 0 waiting" in err
    for config in sweep.build_grid("main", quick=True):
        assert sweep.run_state(config, out / sweep.run_dir(config)).status == "done"


def running(process) -> bool:
    """Is the process alive (a zombie, killed but not yet reaped, is not)?"""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_when_busy(client, killed, stop, target):
    """Wait until a worker runs a training process, then SIGKILL the worker
    (``target="worker"``) or its training process (``"run"``); ``killed["orphans"]``:
    the training processes still alive 1 s later."""
    pids = client.run(os.getpid)
    while not stop.is_set():
        for address, pid in pids.items():
            children = [c for c in psutil.Process(pid).children()
                        if "srigl_ref" in " ".join(c.cmdline())]
            if children:
                time.sleep(0.3)                      # mid-run, not at its start
                killed.update(address=address)
                os.kill(pid if target == "worker" else children[0].pid, signal.SIGKILL)
                # a run needs seconds more: dead within 1 s means killed with its worker
                time.sleep(1.0)
                killed.update(orphans=[c.pid for c in children if running(c)])
                return
        time.sleep(0.05)


@pytest.mark.parametrize("target", ["worker", "run"])
def test_a_killed_worker_or_run_loses_only_that_run(tmp_path, target):
    """A worker killed mid-run: the scheduler gives its run to a worker (the nanny's
    restarted one or the other); a training process killed by a signal on a live worker:
    Dask ``retries`` run it again. Either way the sweep completes, bounded in time."""
    runs = sweep.plan(sweep.build_grid("main", quick=True), tmp_path)
    killed, stop, stream, result = {}, threading.Event(), io.StringIO(), {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        killer = threading.Thread(target=kill_when_busy,
                                  args=(client, killed, stop, target))
        killer.start()
        sweeper = threading.Thread(target=lambda: result.update(
            failed=dask_sweep.run_dask_sweep(runs, client, shared_fs=True, retries=1,
                                             code_root=sweep.ROOT, stream=stream,
                                             poll=0.1)))
        sweeper.start()
        sweeper.join(timeout=240)                   # bounded: never hangs the suite
        stop.set()
        killer.join(timeout=10)
        assert not sweeper.is_alive(), f"the sweep did not finish:\n{stream.getvalue()}"
    out = stream.getvalue()
    assert killed, f"no worker was ever busy:\n{out}"
    assert result["failed"] == [], out
    assert "2/2 done, 0 running, 0 waiting" in out
    (again,) = [line for line in out.splitlines() if "| restarted " in line]
    name = again.split("| restarted ")[1].split(" on ")[0]
    (done,) = [line for line in out.splitlines() if f"| finished {name} in" in line]
    if target == "worker":
        assert not done.endswith(f"on {killed['address']}"), out
    assert killed["orphans"] == [], "a training process outlived its killed worker"
    for run in runs:
        assert sweep.run_state(run.config, run.path).status == "done"


def test_dry_run_of_the_full_grid_shows_the_dask_plan(capsys):
    assert sweep.main(["--dry-run", "--out", "/nonexistent/sweep",
                       "--scheduler", "local:2"]) == 0
    out = capsys.readouterr().out
    assert "186 runs: 0 done, 0 to resume, 186 to start; estimated wall time with 2 jobs" \
        in out
    assert "Dask plan: scheduler local:2: a LocalCluster on this machine: 2 worker " \
        "process(es) x 1 thread, loopback only" in out
    assert "- 186 task(s), one per run to start or resume, longest first" in out
    assert "keys like srigl-train-" in out and "retried 2 time(s)" in out
    assert "written under /nonexistent/sweep" in out


def test_scheduler_errors(tmp_path, monkeypatch, capsys):
    for spec in ("local:0", "local:x", "http://host:8786", "tcp://host"):
        assert sweep.main(["--quick", "--out", str(tmp_path), "--scheduler", spec]) == 2
        err = capsys.readouterr().err
        assert err == (f"sweep.py: error: scheduler == {spec!r}, must be local:N (N >= 1 "
                       f"worker processes on this machine) or tcp://HOST:PORT (a running "
                       f"Dask scheduler)\n")
    assert sweep.main(["--quick", "--out", str(tmp_path), "--shared-fs"]) == 2
    assert capsys.readouterr().err == ("sweep.py: error: --shared-fs applies with "
                                       "--scheduler only (the local pool always writes "
                                       "--out itself)\n")
    monkeypatch.setitem(sys.modules, "distributed", None)          # not installed
    assert sweep.main(["--quick", "--out", str(tmp_path), "--scheduler", "local:2"]) == 2
    assert capsys.readouterr().err == (
        "sweep.py: error: --scheduler needs Dask distributed, which is not installed: "
        "pip install 'srigl-ref[dist]' (the extra 'dist')\n")


def test_worker_of_other_code_runs_nothing(tmp_path):
    mine = worker_task.code_fingerprint(sweep.ROOT)
    assert set(mine) == {"srigl_ref", "python", *worker_task.LIBRARIES}
    other = dict(mine, srigl_ref="0" * 64)
    out = worker_task.run_train(["--out", "{folder}"], folder=str(tmp_path / "run"),
                                code_root=str(sweep.ROOT), expect=other)
    assert out == {"mismatch": f"worker local ({sys.executable}) runs other code than the "
                               f"client: srigl_ref {mine['srigl_ref']!r} (client: "
                               f"{'0' * 64!r})"}
    assert not (tmp_path / "run").exists()


def test_task_files_stay_in_their_run_folder(tmp_path):
    dask_sweep.write_run_files(tmp_path, {"summary.json": b"{}", "sub/x": b"1"})
    assert (tmp_path / "sub" / "x").read_bytes() == b"1"
    with pytest.raises(ValueError, match=r"file '../x' of a task leaves its run folder"):
        dask_sweep.write_run_files(tmp_path, {"../x": b"1"})
