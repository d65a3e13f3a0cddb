"""How fast is one topology update, against the least any update must do?

Times ``srigl_update`` and ``rigl_update`` (tie-breaks ``stable`` and ``torch_cpu``) on one
layer, with a continuous gradient and with one whose rows are 30 % exactly zero (``, ties``:
tied regrowth boundaries), side by side in one run with:
  (a) one ``np.partition`` of the layer's dense ``|grad|`` (a single selection over N
      scores: any RigL-style update needs at least that), and
  (b) the readable NumPy reference ``srigl_ref.dst.reference`` (slower: fewer repeats).
Reports medians [IQR] and ratios of medians. One thread (kernels are serial; set before
NumPy/Numba load).

    python bench/topology_update.py            # the full table (reference included)
    python bench/topology_update.py --quick    # a smoke run on small layers
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import srigl_ref  # noqa: E402
from bench.harness import fmt_seconds, fmt_timing, print_environment, time_interleaved  # noqa
from srigl_ref.dst import reference  # noqa: E402

SHAPES = [(768, 768), (768, 3072), (512, 4608)]
SPARSITIES = [0.8, 0.9, 0.99]
DROP_FRACTION = 0.3


def layer(shape, sparsity, rng):
    k = srigl_ref.constant_fan_in(shape, sparsity)
    mask = srigl_ref.random_fan_in_mask(shape, k, rng)
    weight = (rng.standard_normal(shape) * mask).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    momentum = (rng.standard_normal(shape) * mask).astype(np.float32)
    return weight, mask, grad, momentum


def tie_breaks() -> list[str]:
    from srigl_ref.dst import topology
    return list(topology.TIE_BREAKS)


def bench_one(shape, sparsity, repeats, reference_repeats, rng):
    weight, mask, grad, momentum = layer(shape, sparsity, rng)
    abs_grad = np.abs(grad).ravel()
    n_prune = int(mask.sum() * DROP_FRACTION)
    competitors = {"np.partition(|G|)": lambda: np.partition(abs_grad, abs_grad.size - n_prune)}
    # the same gradient with 30 % of the rows exactly zero ("dead" neurons): regrowth in
    # those rows is all ties, so torch_cpu must emulate torch's sort order there
    grad_ties = np.where(rng.random((grad.shape[0], 1)) < 0.3, np.float32(0), grad)
    for g, tag in ((grad, ""), (grad_ties, ", ties")):
        for tb in tie_breaks():
            competitors[f"srigl[{tb}{tag}]"] = lambda tb=tb, g=g: srigl_ref.srigl_update(
                weight, mask, g, sparsity=sparsity, drop_fraction=DROP_FRACTION,
                momentum=momentum, tie_break=tb)
            competitors[f"rigl[{tb}{tag}]"] = lambda tb=tb, g=g: srigl_ref.rigl_update(
                weight, mask, g, drop_fraction=DROP_FRACTION, momentum=momentum,
                tie_break=tb)
    def reference_srigl():
        return reference.srigl_update(weight, mask, grad, sparsity=sparsity,
                                      drop_fraction=DROP_FRACTION, momentum=momentum)

    # correctness before timing: the kernels equal the readable reference
    if reference_repeats:
        want, got = reference_srigl(), competitors["srigl[stable]"]()
        assert np.array_equal(got.mask, want.mask), "srigl_update != reference"
        assert got.weight.tobytes() == want.weight.tobytes(), "srigl_update != reference"
    timings = time_interleaved(competitors, repeats=repeats)
    if reference_repeats:
        timings.update(time_interleaved({"reference srigl": reference_srigl},
                                        repeats=reference_repeats, min_seconds=0.0, warmup=0))
    return timings


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small layers, few repeats (CI smoke)")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--reference-repeats", type=int, default=5,
                    help="repeats of the readable reference (0 skips it)")
    ap.add_argument("--shapes", default=None, help="e.g. 768x3072,768x768")
    ap.add_argument("--sparsities", default=None, help="e.g. 0.9,0.99")
    args = ap.parse_args(argv)
    shapes = SHAPES
    sparsities = SPARSITIES
    if args.quick:
        shapes, sparsities, args.repeats, args.reference_repeats = [(64, 256)], [0.9], 5, 1
    if args.shapes:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    if args.sparsities:
        sparsities = [float(x) for x in args.sparsities.split(",")]
    print_environment()
    print(f"drop fraction {DROP_FRACTION}, float32, 1 thread, repeats {args.repeats}, "
          f"reference repeats {args.reference_repeats}; times: median [q1, q3]")
    rng = np.random.default_rng(0)
    header = "| shape | S | competitor | time | / partition | reference / this |"
    print(header)
    print("|---|---|---|---|---|---|")
    for shape in shapes:
        for s in sparsities:
            t = bench_one(shape, s, args.repeats, args.reference_repeats, rng)
            base = t["np.partition(|G|)"].median
            reference_t = t["reference srigl"].median if "reference srigl" in t else None
            for name, timing in t.items():
                speedup = (f"{reference_t / timing.median:.0f}x" if reference_t and
                           name.startswith("srigl") else "")
                print(f"| {shape[0]}x{shape[1]} | {s} | {name} | {fmt_timing(timing)} | "
                      f"{timing.median / base:.2f} | {speedup} |", flush=True)
    print(f"(partition median of the last layer: {fmt_seconds(base)})")


if __name__ == "__main__":
    main()
