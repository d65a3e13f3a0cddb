"""Shared benchmark harness: interleaved timing, robust statistics, environment record.

Every script in ``bench/`` answers one question by timing competitors *side by side in one
run*: each repeat runs every competitor once, in a rotated order, so drift and noise from
other processes on this shared machine hit all of them alike. Results are medians with the
inter-quartile range, and ratios of medians.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one competitor: all samples, and their median / quartiles."""
    name: str
    samples: np.ndarray  # [repeats] float64 seconds per call

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def iqr(self) -> tuple[float, float]:
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)


def time_interleaved(competitors: dict[str, Callable[[], object]], *, repeats: int = 15,
                     min_seconds: float = 0.02, warmup: int = 1) -> dict[str, Timing]:
    """Time each zero-argument callable, interleaved, and return a ``Timing`` per name.

    Each sample is the mean over ``n`` back-to-back calls, with ``n`` chosen per competitor
    so one sample lasts at least ``min_seconds``. Every repeat visits the competitors in a
    rotated order.
    """
    names = list(competitors)
    for name in names:
        for _ in range(warmup):
            competitors[name]()
    inner = {}
    for name in names:
        t0 = time.perf_counter()
        competitors[name]()
        one = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, int(min_seconds / one))
    samples = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, n = competitors[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: Timing(name, np.asarray(samples[name])) for name in names}


def fmt_seconds(s: float) -> str:
    """A human-readable duration: ``'12.3 us'``, ``'4.56 ms'``, ``'1.23 s'``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_timing(t: Timing) -> str:
    """``'median [q1, q3]'``."""
    q1, q3 = t.iqr
    return f"{fmt_seconds(t.median)} [{fmt_seconds(q1)}, {fmt_seconds(q3)}]"


def environment() -> dict:
    """Versions, threads, BLAS and CPU of this run, for the results table."""
    import numba
    import scipy
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
    }
    try:
        from threadpoolctl import threadpool_info
        env["blas"] = [{k: i.get(k) for k in ("internal_api", "version", "num_threads",
                                              "architecture")} for i in threadpool_info()]
    except ImportError:
        env["blas"] = "threadpoolctl not installed"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                "OPENBLAS_CORETYPE"):
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_environment() -> None:
    print("environment:", json.dumps(environment(), indent=None))
