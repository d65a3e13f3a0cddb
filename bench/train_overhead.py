"""What does dynamic sparsity cost a training run? SRigL vs static sparse, side by side.

Builds two trainers with the same configuration except the method (``static`` and
``srigl``; optionally ``rigl``) and runs their epochs interleaved (A B, B A, ...), so noise
from other processes hits both alike. The overhead of SRigL (masking is common to both; the
extra work is the dense gradient on update steps and the topology updates) is the ratio of
total epoch times, and of per-epoch medians.

    python bench/train_overhead.py                    # defaults of `srigl-ref train`
    python bench/train_overhead.py --quick            # synthetic data, a smoke run
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.harness import print_environment  # noqa: E402
from srigl_ref.train import TrainConfig, Trainer  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--methods", default="static,srigl")
    args = ap.parse_args(argv)
    base = dict(epochs=args.epochs)
    if args.quick:
        base = dict(dataset="synthetic", epochs=2, delta=10)
    methods = args.methods.split(",")
    print_environment()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {m: Trainer(TrainConfig(method=m, **base), Path(tmp) / m, progress=None)
                    for m in methods}
        for t in trainers.values():
            t.start()
        times = {m: [] for m in methods}
        for epoch in range(base["epochs"]):
            order = methods if epoch % 2 == 0 else methods[::-1]
            for m in order:
                t0 = time.perf_counter()
                trainers[m].run_epoch()
                times[m].append(time.perf_counter() - t0)
            print(f"epoch {epoch + 1}: " + ", ".join(f"{m} {times[m][-1]:.2f} s"
                                                   for m in methods), flush=True)
        summaries = {m: t.finish(sum(times[m])) for m, t in trainers.items()}
    ref = methods[0]
    print(f"\n| method | total s | median epoch s | total / {ref} | test accuracy | "
          f"updates |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        tot = sum(times[m])
        print(f"| {m} | {tot:.1f} | {np.median(times[m]):.2f} | "
              f"{tot / sum(times[ref]):.3f} | {summaries[m]['test_accuracy']:.4f} | "
              f"{len(trainers[m].schedule.steps) if m != 'static' else 0} |")


if __name__ == "__main__":
    main()
