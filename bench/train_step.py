"""How many images per second does one training step process, with 1 and 2 threads?

A step is forward + softmax cross-entropy + backward + masked SGD (momentum, weight decay) on
one float32 batch of 128, for ``mlp`` (784-300-100-10) and ``cnn`` (the default small VGG
net) on 1x28x28 inputs, with SRigL's sparse init at density 0.1 (ERK). The masked-dense
path does the dense amount of work whatever the density.

Thread counts are set through the environment before NumPy loads, so every thread count
runs in its own subprocess (``--worker``); the parent alternates the thread counts over
``--rounds`` rounds and pools the samples. Inside a worker the competitors (each model's
whole step and its parts: forward, backward, SGD) are timed interleaved
(``bench.harness``). Also in each worker, on cnn's ``conv2`` (the largest unfold): the
im2col and col2im kernels against strided-NumPy twins, the measurement that chose them.
PyTorch is timed too when importable.

    python bench/train_step.py            # the table (~2 min)
    python bench/train_step.py --quick    # a smoke run

``--engines`` answers another question instead (issue 8): how much faster does SRigL train
with the condensed engine (``TrainConfig(engine="condensed")``) than with the masked one?
For LeNet-300-100 at density 0.1 and a wide MLP (784-2048-2048-10) at densities 0.1, 0.05
and 0.01 (ERK, synthetic 1x28x28 data, batch 128): the time of one plain step (no update
due) and of one whole training epoch (the 4096 synthetic examples: 32 steps) that includes
one topology update (delta = 32, a third of the default 100, so updates weigh 3x more than
in a default run: the update step's dense gradient, ``srigl_update`` of every layer and,
for the condensed engine, the dense view and the rebuild). Evaluation and checkpoint
writing are not timed. Masked and condensed are interleaved in every repeat, and checked
to agree on the first step's loss.

    python bench/train_step.py --engines --rounds 1   # ~2 min on an idle machine
    python bench/train_step.py --engines --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 128
THREADS = (1, 2)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")


def _worker(repeats: int, min_seconds: float) -> dict:
    """Time every competitor in this process (threads fixed by the environment)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bench.harness import environment, time_interleaved
    from srigl_ref.dst.sparsity import layer_sparsities
    from srigl_ref.nn import SGD, build_model, softmax_cross_entropy, sparse_init

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    competitors = {}
    for name in ("mlp", "cnn"):
        model = build_model(name, (1, 28, 28), 10, rng=rng)
        shapes = [model.params[n].shape for n in model.sparse_names]
        masks = sparse_init(model, layer_sparsities(shapes, 0.1, "erk"), rng)
        opt = SGD(model.params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        logits, cache = model.forward(x)
        dlogits = softmax_cross_entropy(logits, y)[1]
        grads = model.backward(dlogits, cache)

        def step(model=model, opt=opt, masks=masks):
            logits, cache = model.forward(x)
            opt.step(model.backward(softmax_cross_entropy(logits, y)[1], cache), masks)

        competitors[f"{name} step"] = step
        competitors[f"{name} forward"] = lambda model=model: model.forward(x)
        competitors[f"{name} backward"] = (lambda model=model, cache=cache, d=dlogits:
                                           model.backward(d, cache))
        drift = SGD(model.copy().params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        competitors[f"{name} sgd"] = (lambda opt=drift, grads=grads, masks=masks:
                                      opt.step(grads, masks))   # on a copy: fixed grads drift

    competitors.update(_unfold_competitors(rng))
    competitors.update(_torch_competitors(x, y))
    timings = time_interleaved(competitors, repeats=repeats, min_seconds=min_seconds)
    return {"environment": environment(),
            "samples": {n: t.samples.tolist() for n, t in timings.items()}}


def _unfold_competitors(rng) -> dict:
    """cnn's conv2 (32 -> 32 channels, 28x28, batch 128): the package's im2col and col2im
    (Numba kernels) against strided-NumPy twins."""
    import numpy as np

    from srigl_ref.nn import _kernels
    from srigl_ref.nn.layers import _im2col
    x = np.maximum(rng.standard_normal((BATCH, 32, 28, 28)), 0).astype(np.float32)
    dcols = rng.standard_normal((32, 3, 3, BATCH, 28, 28)).astype(np.float32)

    def col2im_numba():
        dx = np.zeros(x.shape, np.float32)
        _kernels.col2im(dcols, 1, 1, dx)
        return dx

    out = {"im2col numba (used)": lambda: _im2col(x, 3, 1, 1),
           "im2col numpy (twin)": lambda: _im2col_numpy(x, 3, 1, 1),
           "col2im numba (used)": col2im_numba,
           "col2im numpy (twin)": lambda: _col2im_numpy(dcols, x.shape, 1, 1)}
    assert np.array_equal(out["im2col numba (used)"](), out["im2col numpy (twin)"]())
    np.testing.assert_allclose(col2im_numba(), _col2im_numpy(dcols, x.shape, 1, 1),
                               rtol=1e-5, atol=1e-4)
    return out


def _im2col_numpy(x, k, stride, padding):
    """The unfold as a strided view (``sliding_window_view``) and one transposing copy."""
    import numpy as np
    n_chan = x.shape[1]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]                # [B, C, oh, ow, k, k]
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(n_chan * k * k, -1)


def _col2im_numpy(dcols, x_shape, stride, padding):
    """The scatter-add as k*k strided NumPy additions into a padded buffer."""
    import numpy as np
    n_chan, k, _, n_batch, oh, ow = dcols.shape
    height, width = x_shape[2], x_shape[3]
    dxp = np.zeros((n_batch, n_chan, height + 2 * padding, width + 2 * padding), dcols.dtype)
    for p in range(k):
        for q in range(k):
            rows = slice(p, p + stride * (oh - 1) + 1, stride)
            cols = slice(q, q + stride * (ow - 1) + 1, stride)
            dxp[:, :, rows, cols] += dcols[:, p, q].transpose(1, 0, 2, 3)
    return dxp[:, :, padding:padding + height, padding:padding + width]


def _torch_competitors(x, y) -> dict:
    """The same two steps in PyTorch, if it is installed (it is no dependency)."""
    try:
        import torch
    except ImportError:
        return {}
    nets = {"mlp": torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(784, 300), torch.nn.ReLU(),
                torch.nn.Linear(300, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)),
            "cnn": torch.nn.Sequential(
                torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 128),
                torch.nn.ReLU(), torch.nn.Linear(128, 10))}
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    out = {}
    for name, net in nets.items():
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step(net=net, opt=opt):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tx), ty).backward()
            opt.step()

        out[f"{name} step torch"] = step
    return out


ENGINE_CONFIGS = (("lenet-300-100", None, 0.1), ("mlp 2048x2048", (2048, 2048), 0.1),
                  ("mlp 2048x2048", (2048, 2048), 0.05), ("mlp 2048x2048", (2048, 2048), 0.01))


def _engine_worker(quick: bool) -> dict:
    """Masked vs condensed engine: step and epoch competitors, timed interleaved."""
    sys.path.insert(0, str(ROOT))
    import tempfile

    import numpy as np

    from bench.harness import environment, time_interleaved
    from srigl_ref.train import TrainConfig, Trainer

    tmp = tempfile.TemporaryDirectory()
    steps, epochs, checks = {}, {}, {}
    for label, hidden, density in ENGINE_CONFIGS:
        losses = {}
        for engine in ("masked", "condensed"):
            name = f"{label} d={density} {engine}"
            common = dict(dataset="synthetic", hidden=hidden, density=density,
                          batch_size=BATCH, engine=engine)
            # plain steps: no update is ever due (delta beyond the run)
            t = Trainer(TrainConfig(n_train=BATCH, epochs=10**6, delta=10**9, **common),
                        Path(tmp.name) / f"{name} step", progress=None)
            x = np.ascontiguousarray(t.data.x_train[:BATCH])
            y = t.data.y_train[:BATCH]
            losses[engine] = t.train_step(x, y)[0]
            steps[name] = lambda t=t, x=x, y=y: t.train_step(x, y)
            # whole epochs with delta = steps per epoch: one topology update in each
            n_train = BATCH * 10 if quick else None          # None: all 4096 (32 steps)
            cfg = TrainConfig(n_train=n_train, epochs=20, delta=10 if quick else 32, **common)
            t = Trainer(cfg, Path(tmp.name) / f"{name} epoch", progress=None)
            assert t.steps_per_epoch == cfg.delta, (t.steps_per_epoch, cfg.delta)
            epochs[name] = lambda t=t: _train_epoch(t)
        checks[f"{label} d={density}"] = losses
        assert abs(losses["masked"] - losses["condensed"]) <= 1e-5 * abs(losses["masked"]), \
            losses
    repeats = 3 if quick else 7
    step_t = time_interleaved(steps, repeats=repeats, min_seconds=0.01 if quick else 0.3)
    epoch_t = time_interleaved(epochs, repeats=2 if quick else 3, min_seconds=0.0)
    tmp.cleanup()
    return {"environment": environment(), "first_step_losses": checks,
            "samples": {**{f"{n} | step": t.samples.tolist() for n, t in step_t.items()},
                        **{f"{n} | epoch": t.samples.tolist() for n, t in epoch_t.items()}}}


def _train_epoch(t) -> None:
    """One epoch's training steps (``Trainer.run_epoch`` without evaluation and checkpoint)."""
    from srigl_ref.data import batches
    for x, y in batches(t.data.x_train, t.data.y_train, t.config.batch_size, rng=t.rng):
        t.train_step(x, y)


def _print_engine_table(pooled: dict, envs: dict) -> None:
    """Masked vs condensed: medians [IQR] and ratios per configuration and thread count."""
    import numpy as np

    from bench.harness import Timing, fmt_timing
    print(f"{'configuration':26} {'threads':>7} {'what':>5} {'masked median [IQR]':>30} "
          f"{'condensed median [IQR]':>30} {'speed-up':>8}")
    for label, _, density in ENGINE_CONFIGS:
        for what in ("step", "epoch"):
            for threads in THREADS:
                t = {e: Timing(e, np.asarray(pooled[threads][f"{label} d={density} {e} | "
                                                            f"{what}"]))
                     for e in ("masked", "condensed")}
                print(f"{label + f' d={density}':26} {threads:>7} {what:>5} "
                      f"{fmt_timing(t['masked']):>30} {fmt_timing(t['condensed']):>30} "
                      f"{t['masked'].median / t['condensed'].median:7.2f}x")


def _run_worker(threads: int, quick: bool, engines: bool = False) -> dict:
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARS})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    cmd += ["--quick"] if quick else []
    cmd += ["--engines"] if engines else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"worker with {threads} thread(s) failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few, short samples")
    parser.add_argument("--rounds", type=int, default=3, help="subprocess rounds per thread "
                        "count (alternating), samples pooled")
    parser.add_argument("--engines", action="store_true", help="instead: masked vs "
                        "condensed training engine, step and epoch times (issue 8)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats, min_seconds = (3, 0.01) if args.quick else (7, 0.2)
    if args.worker:
        print(json.dumps(_engine_worker(args.quick) if args.engines
                         else _worker(repeats, min_seconds)))
        return

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bench.harness import Timing, fmt_timing
    rounds = 1 if args.quick else args.rounds
    pooled: dict[int, dict[str, list]] = {t: {} for t in THREADS}
    envs = {}
    for r in range(rounds):
        for threads in THREADS if r % 2 == 0 else THREADS[::-1]:
            result = _run_worker(threads, args.quick, args.engines)
            envs[threads] = result["environment"]
            for name, samples in result["samples"].items():
                pooled[threads].setdefault(name, []).extend(samples)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    for threads in THREADS:
        print(f"environment ({threads}-thread workers):", json.dumps(envs[threads]))
    if args.engines:
        _print_engine_table(pooled, envs)
        return
    if not any("torch" in n for n in pooled[1]):
        print("torch: not importable, skipped")
    print(f"{'competitor':24} {'threads':>7} {'seconds/call median [IQR]':>32} {'images/s':>9}")
    for name in pooled[1]:
        for threads in THREADS:
            t = Timing(name, np.asarray(pooled[threads][name]))
            per_s = f"{BATCH / t.median:9.0f}" if "step" in name else ""
            print(f"{name:24} {threads:>7} {fmt_timing(t):>32} {per_s:>9}")


if __name__ == "__main__":
    main()
