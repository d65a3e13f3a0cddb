"""Command line: ``srigl-ref <subcommand>``.

The only module that prints errors and exits: bad arguments or data give a one-line
``srigl-ref: error: ...`` on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="srigl-ref", description="SRigL reference implementation "
                     "(constant fan-in dynamic sparse training with neuron ablation).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="one SRigL update of a random layer, explained")
    demo.add_argument("--out-features", type=int, default=64)
    demo.add_argument("--in-features", type=int, default=256)
    demo.add_argument("--sparsity", type=float, default=0.9)
    demo.add_argument("--drop-fraction", type=float, default=0.3)
    demo.add_argument("--gamma-sal", type=float, default=0.3)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def _demo(args) -> None:
    from . import dst
    rng = np.random.default_rng(args.seed)
    shape = (args.out_features, args.in_features)
    k = dst.constant_fan_in(shape, args.sparsity)
    mask = dst.random_fan_in_mask(shape, k, rng)
    # weights with a few nearly dead neurons, so that ablation has something to do
    scale = np.where(rng.random((shape[0], 1)) < 0.2, 1e-3, 1.0)
    weight = (rng.standard_normal(shape) * scale * mask).astype(np.float32)
    grad = (rng.standard_normal(shape) * scale).astype(np.float32)
    u = dst.srigl_update(weight, mask, grad, sparsity=args.sparsity,
                         drop_fraction=args.drop_fraction, gamma_sal=args.gamma_sal)
    print(f"layer {shape}, sparsity {args.sparsity}: budget B = "
          f"{dst.fan_in_budget(shape, args.sparsity)}, fan-in k = {k} before the update")
    print(f"SRigL update (drop fraction {args.drop_fraction}, gamma_sal {args.gamma_sal}): "
          f"{u.n_pruned} pruned, {u.n_grown} grown, {u.ablated.size} neurons ablated "
          f"(salient threshold {u.threshold}) -> fan-in k = {u.fan_in}")
    print(f"ablated neurons: {u.ablated.tolist()}")
    print(f"constant fan-in check: k = {dst.check_constant_fan_in(u.mask)}, "
          f"active = {int(u.mask.sum())} <= B")


def main(argv=None) -> int:
    """Entry point of ``srigl-ref``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"srigl-ref: error: {e}", file=sys.stderr)
        return 2
    return 0
