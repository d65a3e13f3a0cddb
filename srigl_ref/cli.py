"""Command line: ``srigl-ref <subcommand>``.

The only module that prints errors and exits: bad arguments or data give a one-line
``srigl-ref: error: ...`` on stderr and exit code 2, a diverging training run (non-finite
loss) a one-line error and exit code 1, never a traceback.
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
                     "(constant fan-in dynamic sparse training with neuron ablation).",
                     epilog="Documentation in the source repository: docs/algorithm.md (the "
                     "algorithm, step by step), docs/api.md (the Python API, the commands "
                     "and their files), docs/interchange.md (case files), "
                     "docs/cross-validation.md (checking another implementation).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")
    _add_train(sub)
    p = sub.add_parser("plot", help="draw a finished run: learning curves, topology updates, "
                       "fan-in, ITOP, first-layer masks (PNGs in RUN_DIR/plots/)",
                       description="Writes PNG figures of a run into RUN_DIR/plots/ (needs "
                       "matplotlib: pip install 'srigl-ref[plot]').")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by srigl-ref train")
    p.add_argument("--out", default=None, help="folder for the PNGs (default RUN_DIR/plots)")
    p.set_defaults(run=_plot)
    demo = sub.add_parser("demo", help="one SRigL update of a small random layer, stage by "
                          "stage, masks drawn as text",
                          description="Walks through one SRigL update (docs/algorithm.md "
                          "§6): counts, salient positions, ablation, k, keep set with the "
                          "cap, per-row regrowth; every stage is a step function of "
                          "srigl_ref.dst.reference.")
    demo.add_argument("--shape", default="8x16", help="OUTxIN, at most 64x96 (default "
                      "%(default)s)")
    demo.add_argument("--sparsity", type=float, default=0.75, help="default %(default)s")
    demo.add_argument("--drop-fraction", type=float, default=0.3, help="default %(default)s")
    demo.add_argument("--gamma-sal", type=float, default=0.3, help="default %(default)s")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    _add_interchange(sub)
    _add_condense(sub)
    return parser


def _add_train(sub) -> None:
    from .train import ENGINES, METHODS, TrainConfig
    from .data import DATASETS
    from .nn.models import DENSE_INITS, MODELS, SPARSE_INITS
    d = TrainConfig()
    p = sub.add_parser("train", help="train a sparse network (default: SRigL, LeNet-300-100, "
                       "Fashion-MNIST, density 0.1, ERK)",
                       description="Train with dense, static, SET, RigL or SRigL. Writes "
                       "DIR/summary.json, DIR/metrics.jsonl and DIR/model.npz.")
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    p.add_argument("--model", choices=MODELS, default=d.model)
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--density", type=float, default=d.density,
                   help="global density in (0, 1] (default %(default)s)")
    p.add_argument("--distribution", choices=("erk", "uniform", "er"), default=d.distribution)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: the model's, see README)")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--warmup-epochs", type=int, default=None,
                   help="linear learning-rate warm-up (default: the model's, see README)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--delta", type=int, default=d.delta, help="steps between topology updates")
    p.add_argument("--alpha", type=float, default=d.alpha, help="initial drop fraction")
    p.add_argument("--t-end-fraction", type=float, default=d.t_end_fraction)
    p.add_argument("--grad-accumulation-n", type=int, default=d.grad_accumulation_n)
    p.add_argument("--gamma-sal", type=float, default=d.gamma_sal)
    p.add_argument("--no-ablation", action="store_true", help="SRigL without neuron ablation")
    p.add_argument("--init", choices=DENSE_INITS, default=None,
                   help="dense init of conv/linear layers (default: the model's, see README)")
    p.add_argument("--sparse-init", choices=SPARSE_INITS, default=d.sparse_init,
                   help="sparse weights re-drawn at the active fan-in, the authors' "
                   "'official' scale, or the dense init masked (default %(default)s)")
    p.add_argument("--dense-first-layer", action="store_true")
    p.add_argument("--n-train", type=int, default=None,
                   help="use only the first N training examples (quick runs)")
    p.add_argument("--engine", choices=ENGINES, default=d.engine,
                   help="masked: dense weights times masks (the reference); condensed: "
                   "srigl's sparse linear and conv layers train as values/indices (faster "
                   "at low density; models without BatchNorm) (default %(default)s)")
    p.add_argument("--hidden", type=int, nargs="+", metavar="WIDTH", default=None,
                   help="mlp hidden widths, e.g. --hidden 2048 2048 (default: 300 100)")
    p.add_argument("--out", default=None, help="output folder (default runs/<method>_<model>_"
                   "<dataset>_d<density>_s<seed>)")
    p.add_argument("--trace", metavar="DIR", default=None,
                   help="write every topology update of every layer as a replayable case "
                   "file into DIR (see `srigl-ref replay`)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its last checkpoint (other options "
                   "are taken from that checkpoint)")
    p.set_defaults(run=_train)


def _train(args) -> int:
    from pathlib import Path

    from . import checkpoint
    from .train import TrainConfig, Trainer, TrainingDiverged
    if args.resume:
        out = Path(args.resume)
        config = TrainConfig.from_dict(checkpoint.load_checkpoint(out / "model.npz").config)
    else:
        config = TrainConfig(
            dataset=args.dataset, data_dir=args.data_dir, model=args.model, method=args.method,
            density=args.density, distribution=args.distribution, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
            weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
            warmup_epochs=args.warmup_epochs,
            seed=args.seed, delta=args.delta, alpha=args.alpha,
            t_end_fraction=args.t_end_fraction, grad_accumulation_n=args.grad_accumulation_n,
            gamma_sal=args.gamma_sal, ablation=not args.no_ablation, init=args.init,
            sparse_init=args.sparse_init,
            dense_layers=(0,) if args.dense_first_layer else (), n_train=args.n_train,
            engine=args.engine, hidden=None if args.hidden is None else tuple(args.hidden))
        out = Path(args.out or f"runs/{config.method}_{config.model}_{config.dataset}_"
                   f"d{config.density}_s{config.seed}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = Trainer(config, out, trace_dir=args.trace).run(resume=bool(args.resume))
    except TrainingDiverged as e:
        kept = "model.npz keeps the last completed epoch" if (out / "model.npz").exists() \
            else "no epoch completed, no model.npz"
        print(f"srigl-ref: error: {e}; {kept}; {out / 'summary.json'} says \"diverged\"",
              file=sys.stderr)
        return 1
    _print_summary(summary, out)
    return 0


def _print_summary(summary: dict, out) -> None:
    print(f"\n{summary['method']} on {summary['config']['dataset']} "
          f"({summary['config']['model']}), seed {summary['config']['seed']}")
    print(f"  test accuracy   {summary['test_accuracy']:.4f}")
    if summary["status"] != "ok":
        print(f"  status          {summary['status'].upper()}: {summary['message']}")
    print(f"  density         {summary['density']:.4f} (target {summary['target_density']})")
    print(f"  ITOP rate       {summary['itop_rate']:.4f}")
    print(f"  time            {summary['seconds']:.1f} s")
    print(f"  {'layer':<14} {'shape':<16} {'sparsity':>8} {'fan-in':>7} {'active':>7} "
          f"{'ablated':>7}")
    for layer in summary["layers"]:
        shape = "x".join(map(str, layer["shape"]))
        print(f"  {layer['name']:<14} {shape:<16} {layer['sparsity']:>8.4f} "
              f"{layer['fan_in']:>7} {layer['n_active_neurons']:>7} {layer['n_ablated']:>7}")
    print(f"  files in {out}/: summary.json, metrics.jsonl, model.npz")


def _plot(args) -> None:
    from .plot import plot_run
    for path in plot_run(args.run_dir, args.out):
        print(f"wrote {path}")


def _demo(args) -> None:
    from .demo import demo
    print(demo(args.shape, args.sparsity, args.drop_fraction, args.gamma_sal, args.seed))


def _add_interchange(sub) -> None:
    """``replay``, ``inspect`` and ``export`` (srigl_ref/interchange, docs/interchange.md)."""
    p = sub.add_parser("replay", help="run one topology update from a case file (or every "
                       "case in a folder) and compare with its stored outputs",
                       description="Replay golden-vector-schema cases (docs/interchange.md). "
                       "Exit code 0: done / all match; 1: a mismatch (the first is "
                       "explained); 2: bad input.")
    p.add_argument("case", metavar="CASE", help="a case .npz, or a folder of them (a "
                   "training trace, tests/golden/srigl, ...)")
    p.add_argument("--out", default=None, help="write our result (inputs + our outputs) "
                   "there: a file for a case, a folder for a folder")
    p.add_argument("--tie-break", choices=("stable", "torch_cpu"), default=None,
                   help="default: the case's tie_break key, else torch_cpu (golden files)")
    p.add_argument("--expect", action="store_true",
                   help="compare with the stored outputs (mask, weights, momentum, k, the "
                   "set of ablated neurons); diagnose a difference stage by stage")
    p.add_argument("--strict", action="store_true",
                   help="also compare the ablated order, the salient threshold and the keep "
                   "set (what only the authors' code and ours record)")
    p.add_argument("--explain", action="store_true",
                   help="for a differing case, name the deviations of the reference "
                   "(srigl_ref.dst.reference) that reproduce it")
    p.set_defaults(run=_replay)
    p = sub.add_parser("xcheck", help="differential testing: run MODULE:FUNCTION against "
                       "srigl-ref on generated layer states (needs hypothesis)",
                       description="Exit code 0: agree on every generated state; 1: a "
                       "disagreement (shrunk, diagnosed and explained); 2: bad arguments. "
                       "See docs/cross-validation.md.")
    p.add_argument("function", metavar="MODULE:FUNCTION",
                   help="an importable update function fn(weight, mask, grad, *, sparsity, "
                   "drop_fraction, gamma_sal, momentum, ...)")
    p.add_argument("--method", choices=("srigl", "rigl"), default="srigl")
    p.add_argument("--max-examples", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tie-break", choices=("stable", "torch_cpu"), default="stable",
                   help="srigl-ref's tie-break to compare with (default stable)")
    p.add_argument("--ties", action="store_true",
                   help="generate tied magnitudes (then the tie-break matters)")
    p.set_defaults(run=_xcheck)
    p = sub.add_parser("inspect", help="per-layer density, constant fan-in and ablated "
                       "neurons of a run (model.npz), a torch.save file or .safetensors")
    p.add_argument("file", metavar="FILE", help="a file, or a run folder (its model.npz)")
    p.set_defaults(run=_inspect)
    p = sub.add_parser("export", help="write a trained model for PyTorch users")
    p.add_argument("dir", metavar="DIR", help="a run folder holding model.npz (or the file)")
    p.add_argument("--format", choices=("safetensors", "pt-compatible-npz"), required=True)
    p.add_argument("--out", default=None, help="output file (default DIR/model.safetensors "
                   "or DIR/model_pt.npz)")
    p.set_defaults(run=_export)


def _replay(args) -> int:
    from pathlib import Path

    from .interchange import explain, replay
    path = Path(args.case)
    kw = dict(tie_break=args.tie_break, expect=args.expect or args.strict or args.explain,
              out=args.out, strict=args.strict)
    if not path.is_dir():
        r = replay.replay_file(path, **kw)
        print(r.summary())
        if r.mismatch and args.explain:
            print(explain.explain(r.case).text)
        return 1 if r.mismatch else 0
    n, stages, first = 0, {}, None
    for r in replay.replay_dir(path, **kw):
        n += 1
        stage = f" stage {r.mismatch.stage}: {r.mismatch.headline}" if r.mismatch else ""
        print(f"{r.where}: {r.verdict}{stage}")
        if r.mismatch:
            stages[r.mismatch.stage] = stages.get(r.mismatch.stage, 0) + 1
            if args.explain:
                print(f"  {explain.explain(r.case).text}")
            first = first or r
    if first is not None:
        bad = sum(stages.values())
        by_stage = ", ".join(f"{c} at stage {s}" for s, c in stages.items())
        print(f"{path}: first diverging update: {first.summary()}")
        print(f"{path}: {n} case(s): {n - bad} match, {bad} differ ({by_stage})")
        return 1
    done = f"all {n} case(s) match" if kw["expect"] else f"replayed {n} case(s)"
    print(f"{path}: {done}" + (f"; results in {args.out}" if args.out else ""))
    return 0


def _xcheck(args) -> int:
    import importlib
    import os

    from . import testing
    module, _, name = args.function.partition(":")
    if not module or not name:
        raise ValueError(f"MODULE:FUNCTION == {args.function!r}, must name a module and a "
                         f"function, e.g. mypkg.sparsity:srigl_step")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())      # as `python -m`: modules in the current folder
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"MODULE:FUNCTION == {args.function!r} cannot be imported ({e})") \
            from None
    report = testing.check_update(fn, method=args.method, max_examples=args.max_examples,
                                  seed=args.seed, tie_break=args.tie_break, ties=args.ties)
    print(report.describe())
    return 0 if report.ok else 1


def _inspect(args) -> None:
    from .checkpoint import run_file
    from .interchange.inspect import format_reports, inspect_file
    path = run_file(args.file, "model.npz")
    fmt, reports = inspect_file(path)
    print(format_reports(path, fmt, reports))


def _export(args) -> None:
    from .interchange.export import export_model
    out = export_model(args.dir, args.out, format=args.format)
    print(f"wrote {out} ({args.format})")


def _add_condense(sub) -> None:
    """``condense``: whole-model condensed inference of a run (srigl_ref/condensed/model.py)."""
    from .condensed.model import CONV_STRATEGIES, DEFAULT_CONV
    p = sub.add_parser("condense", help="condense a trained run for inference: write "
                       "DIR/condensed.npz, print the per-layer table and the prediction "
                       "check (batch-1 latency: bench/condensed_model.py)",
                       description="Reads DIR/model.npz, writes DIR/condensed.npz. Exit code "
                       "0: predictions agree; 1: some differ (the count is printed); 2: bad "
                       "input.")
    p.add_argument("dir", metavar="DIR", help="a run folder holding model.npz (or the file)")
    p.add_argument("--n-check", type=int, default=None, metavar="N",
                   help="check predictions on the first N test examples (default: all)")
    p.add_argument("--conv", choices=CONV_STRATEGIES, default=DEFAULT_CONV,
                   help="sparse conv layers as condensed im2col or dense over the kept "
                   "channels (default %(default)s)")
    p.set_defaults(run=_condense)


def _condense(args) -> int:
    from pathlib import Path

    from . import checkpoint
    from ._validate import check_int
    from .condensed import condense_model, load_condensed, model_from_checkpoint
    from .train import TrainConfig, run_dataset
    if args.n_check is not None:
        check_int("--n-check", args.n_check, low=1)
    model_file = checkpoint.run_file(args.dir, "model.npz")         # a run folder or its file
    run_dir = model_file.parent
    ckpt = checkpoint.load_checkpoint(model_file)
    config = TrainConfig.from_dict(ckpt.config)
    dataset = run_dataset(config, progress=sys.stderr)               # the run's test set
    model = model_from_checkpoint(ckpt, dataset.input_shape)
    out = run_dir / "condensed.npz"
    checkpoint.atomic_write(out, condense_model(model, ckpt.masks, conv=args.conv).write)
    cmodel = load_condensed(out)                                     # what was written
    print(f"{run_dir / 'model.npz'} ({config.model}, {config.method}, {config.dataset}) -> "
          f"{out} (conv: {args.conv})")
    print(f"  {'layer':<14} {'shape':<14} {'format':<10} {'k':>5} {'k_eff':>5} {'active':>6} "
          f"{'ablated':>7} {'in-drop':>7} {'dense B':>10} {'cond. B':>10} {'ratio':>6}")
    for r in cmodel.report:
        print(f"  {r.name:<14} {'x'.join(map(str, r.shape)):<14} {r.format:<10} {r.k:>5} "
              f"{r.k_eff:>5} {r.n_active:>6} {r.n_ablated:>7} {r.n_inputs_dropped:>7} "
              f"{r.bytes_dense:>10,} {r.bytes_condensed:>10,} "
              f"{r.bytes_dense / r.bytes_condensed:>5.2f}x")
    dense_b = sum(r.bytes_dense for r in cmodel.report)
    cond_b = sum(r.bytes_condensed for r in cmodel.report)
    print(f"  {'total':<14} {'':<14} {'':<10} {'':>5} {'':>5} {'':>6} {'':>7} {'':>7} "
          f"{dense_b:>10,} {cond_b:>10,} {dense_b / cond_b:>5.2f}x")

    x, y = dataset.x_test, dataset.y_test
    if args.n_check is not None:
        x, y = x[:args.n_check], y[:args.n_check]
    ref = np.concatenate([model.forward(x[lo:lo + 1000], train=False)[0]
                          for lo in range(0, len(x), 1000)])
    got = cmodel(x)
    n_diff = int((ref.argmax(axis=1) != got.argmax(axis=1)).sum())
    rel = float(np.abs(got - ref).max() / max(np.abs(ref).max(), np.finfo(np.float32).tiny))
    print(f"predictions (argmax, {len(x)} test examples of {config.dataset}): "
          f"{len(x) - n_diff} agree, {n_diff} differ; max |logit diff| / max |logit| = "
          f"{rel:.2e}; accuracy dense {float((ref.argmax(axis=1) == y).mean()):.4f}, "
          f"condensed {float((got.argmax(axis=1) == y).mean()):.4f}")
    return 1 if n_diff else 0


def _one_line(message: str) -> str:
    """A multi-line message (e.g. every place a dataset was looked for) on one line."""
    lines = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()]
    return "; ".join(lines)


def main(argv=None) -> int:
    """Entry point of ``srigl-ref``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"srigl-ref: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0
