"""Is a whole trained model, condensed, faster at batch 1 than the masked dense model?

Loads a run folder (``model.npz``), builds the masked dense NumPy model
(``Model.forward(x, train=False)``) and its condensed form (``condense_model``), checks that
their predictions agree on the test examples used, then times single-example calls, the
two models alternating call by call (the order flipped every call), and reports median
[IQR] per model and the ratio of medians. Set the thread counts in the environment
(``OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1``) for batch-1 numbers.

    python bench/condensed_model.py RUN_DIR --n-timing 5000
    python bench/condensed_model.py --quick        # trains a tiny synthetic run first (CI)
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
from srigl_ref import checkpoint  # noqa: E402
from srigl_ref.condensed import model_from_checkpoint  # noqa: E402
from srigl_ref.condensed.model import CONV_STRATEGIES, condense_model  # noqa: E402
from srigl_ref.train import TrainConfig, Trainer, run_dataset  # noqa: E402

QUICK_RUN = dict(dataset="synthetic", n_train=512, batch_size=64, epochs=1, delta=4)


def interleaved_calls(models: dict, examples: list, n_calls: int) -> dict[str, np.ndarray]:
    """Seconds of ``n_calls`` single calls per model, alternating models call by call."""
    times = {name: np.empty(n_calls) for name in models}
    for f in models.values():
        for e in examples[:3]:
            f(e)                                                     # compile, warm caches
    order = list(models)
    for i in range(n_calls):
        e = examples[i % len(examples)]
        for name in (order if i % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            models[name](e)
            times[name][i] = time.perf_counter() - t0
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", nargs="?", type=Path, help="a run folder holding model.npz")
    ap.add_argument("--n-timing", type=int, default=2000,
                    help="single-example calls timed per model (default %(default)s)")
    ap.add_argument("--conv", choices=CONV_STRATEGIES, default="condensed",
                    help="condense_model's conv strategy (default %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help="train a tiny synthetic run in a temporary folder and time 50 calls")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if args.quick:
            run_dir, args.n_timing = Path(tmp), 50
            Trainer(TrainConfig(**QUICK_RUN), run_dir, progress=None).run()
        if run_dir is None:
            ap.error("RUN_DIR is required unless --quick")
        ckpt = checkpoint.load_checkpoint(run_dir / "model.npz")
        config = TrainConfig.from_dict(ckpt.config)
        dataset = run_dataset(config, progress=sys.stderr)
        model = model_from_checkpoint(ckpt, dataset.input_shape)
        cmodel = condense_model(model, ckpt.masks, conv=args.conv)
        x = dataset.x_test[:min(args.n_timing, 512)]
        ref, got = model.forward(x, train=False)[0], cmodel(x)
        n_diff = int((ref.argmax(axis=1) != got.argmax(axis=1)).sum())
        if n_diff:
            print(f"predictions differ on {n_diff} of {len(x)} examples: not timing")
            return 1
        print_environment()
        print(f"{run_dir / 'model.npz'}: {config.model}, {config.method}, {config.dataset}, "
              f"conv {args.conv}; predictions agree on {len(x)} test examples")
        examples = [np.ascontiguousarray(e[None]) for e in x]
        times = interleaved_calls({"dense NumPy model": lambda e: model.forward(
            e, train=False)[0], "condensed": cmodel}, examples, args.n_timing)
    print(f"batch-1 latency, whole model (median [IQR] over {args.n_timing} single-example "
          f"calls each, interleaved):")
    for name, t in times.items():
        q1, med, q3 = np.percentile(t, [25, 50, 75]) * 1e6
        print(f"  {name:<18} {med:8.1f} us [{q1:.1f}, {q3:.1f}]")
    ratio = np.median(times["dense NumPy model"]) / np.median(times["condensed"])
    print(f"  {'speed-up':<18} {ratio:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
