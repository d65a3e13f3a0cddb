"""How long does one training step take in srigl-ref, side by side with PyTorch?

A step is forward + softmax cross-entropy + backward + SGD (Nesterov momentum 0.9, weight
decay 5e-4, lr 0.01) on one float32 batch of 128 synthetic 1x28x28 images, for ``lenet5``,
``mlp`` (LeNet-300-100: 784-300-100-10), ``cnn`` (the default small VGG net) and
``resnet20`` (BatchNorm in training mode), with SRigL's sparse init at density 0.1 (ERK)
and masked SGD (the masked-dense path does the dense amount of work whatever the
density).

When ``torch`` is importable (it is no dependency of the package) the same architectures run
in PyTorch in the same process, their weights copied from srigl-ref's model (the first
step's losses are checked to agree), with a dense ``torch.optim.SGD`` of the same
hyper-parameters; without torch the script says it skipped the peer. As a yardstick that
does not depend on either implementation, a float32 ``n x n @ n x n`` matmul (NumPy's BLAS)
with ``2 n^3`` equal to the step's FLOPs, counted as 3 x the forward's multiply-adds x 2
(forward, weight gradient, input gradient of the conv and linear layers).

Everything runs in one worker subprocess with 1 thread (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` set before NumPy loads;
``torch.set_num_threads(1)``), competitors interleaved in every repeat
(``bench.harness``). Per model the table gives each median [IQR], the ratio of the
medians and the median [IQR] of the per-repeat ratios (paired samples, robust to drift).

    python bench/train_step.py                    # the table (~3 min)
    python bench/train_step.py --quick            # a smoke run
    python bench/train_step.py --threads 2        # another thread count

``--conv-rule`` answers the question behind ``Conv2d``'s choice between its direct kernels
and im2col + GEMM (``srigl_ref.nn.layers.DIRECT_MAX_CHANNEL_PRODUCT``): forward + backward
of one layer by each, over stride-1 shapes of the models (3x3 and 5x5, 1 to 64 channels,
batch 128), interleaved; also the im2col and col2im kernels against strided-NumPy twins.

    python bench/train_step.py --conv-rule

``--engines`` answers another question: how much faster does SRigL train with the condensed
engine (``TrainConfig(engine="condensed")``) than with the masked one? For LeNet-300-100 at
density 0.1, a wide MLP (784-2048-2048-10) at densities 0.1, 0.05 and 0.01 and the ``cnn``
at densities 0.05 and 0.1 (ERK, synthetic 1x28x28 data, batch 128): the time of one plain
step (no update due) and of one whole training epoch (the 4096 synthetic examples: 32
steps) that includes one topology update (delta = 32, a third of the default 100, so
updates weigh 3x more than in a default run: the update step's dense gradient,
``srigl_update`` of every layer and, for the condensed engine, the dense view and the
rebuild). Evaluation and checkpoint writing are not timed. Masked and condensed are
interleaved in every repeat, and checked to agree on the first step's loss. Run with 1 and
2 threads (``--threads N``: only N), all configurations or those named by ``--only``.

    python bench/train_step.py --engines --rounds 1   # ~2 min on an idle machine (MLPs)
    python bench/train_step.py --engines --only cnn --threads 1
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
MODELS = ("lenet5", "mlp", "cnn", "resnet20")
THREADS = (1, 2)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS")
HYPER = dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def _worker(repeats: int, min_seconds: float) -> dict:
    """Steps of every model in srigl-ref, in PyTorch (if importable) and the sgemm
    yardstick, timed interleaved in this process (threads fixed by the environment)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bench.harness import environment, time_interleaved
    from srigl_ref.dst.sparsity import layer_sparsities
    from srigl_ref.nn import SGD, build_model, softmax_cross_entropy, sparse_init

    torch = _import_torch()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    competitors, flops, first_losses = {}, {}, {}
    for name in MODELS:
        model = build_model(name, (1, 28, 28), 10, rng=rng)
        shapes = [model.params[n].shape for n in model.sparse_names]
        masks = sparse_init(model, layer_sparsities(shapes, 0.1, "erk"), rng)
        flops[name] = 3 * 2 * _forward_macs(model)
        net = _torch_net(torch, name, model) if torch else None
        opt = SGD(model.params, **HYPER)
        logits, cache = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        grads = model.backward(dlogits, cache)

        def step(model=model, opt=opt, masks=masks):
            logits, cache = model.forward(x)
            opt.step(model.backward(softmax_cross_entropy(logits, y)[1], cache), masks)

        competitors[f"{name} | srigl-ref"] = step
        competitors[f"{name} | srigl-ref forward"] = lambda model=model: model.forward(x)
        competitors[f"{name} | srigl-ref backward"] = (lambda model=model, cache=cache,
                                                       d=dlogits: model.backward(d, cache))
        drift = SGD(model.copy().params, **HYPER)           # on a copy: fixed grads drift
        competitors[f"{name} | srigl-ref sgd"] = (lambda opt=drift, grads=grads, masks=masks:
                                                  opt.step(grads, masks))
        n = round((flops[name] * BATCH / 2) ** (1 / 3))
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        competitors[f"{name} | sgemm {n}^3"] = lambda a=a, b=b: a @ b
        if net is not None:
            first_losses[name] = {"srigl-ref": float(loss),
                                  "torch": _torch_loss(torch, net, x, y)}
            assert abs(first_losses[name]["srigl-ref"] - first_losses[name]["torch"]) \
                <= 1e-4 * abs(first_losses[name]["srigl-ref"]), first_losses[name]
            competitors[f"{name} | torch"] = _torch_step(torch, net, x, y)
    timings = time_interleaved(competitors, repeats=repeats, min_seconds=min_seconds)
    env = environment()
    env["torch"] = (f"{torch.__version__}, {torch.get_num_threads()} thread(s)" if torch
                    else "not importable, peer skipped")
    return {"environment": env, "flops_per_image": flops, "first_losses": first_losses,
            "samples": {n: t.samples.tolist() for n, t in timings.items()}}


def _forward_macs(model) -> int:
    """Multiply-adds per image of the forward's conv and linear layers (those inside
    residual blocks included)."""
    from srigl_ref.nn import BasicBlock, BiasFreeConv2d, Conv2d, Linear

    def conv_macs(layer, shape):
        out = layer.output_shape(shape)
        return out[0] * out[1] * out[2] * layer.in_channels * layer.kernel_size ** 2

    macs, shape = 0, model.input_shape
    for _, layer in model.layers:
        out = layer.output_shape(shape)
        if isinstance(layer, (Conv2d, BiasFreeConv2d)):
            macs += conv_macs(layer, shape)
        elif isinstance(layer, BasicBlock):
            subs = dict(layer.sublayers)
            macs += conv_macs(subs["conv1"], shape) + conv_macs(subs["conv2"], out)
            macs += conv_macs(subs["shortcut.0"], shape) if layer.projection else 0
        elif isinstance(layer, Linear):
            macs += layer.in_features * layer.out_features
        shape = out
    return macs


def _import_torch():
    """``torch`` with 1 intra-op thread per ``OMP_NUM_THREADS``, or None if not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch


def _torch_net(torch, name, model):
    """The PyTorch twin of srigl-ref ``model`` (same layers in the same order), with the
    model's current parameters copied in."""
    nn = torch.nn
    if name == "mlp":
        layers = [nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                  nn.Linear(100, 10)]
    elif name == "lenet5":
        layers = [nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                  nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                  nn.Linear(84, 10)]
    elif name == "resnet20":
        layers = [nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        c_in = 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(3):
                layers.append(_torch_block(torch, c_in, c_out, 2 if stage and not i else 1))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    else:
        layers = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                  nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                  nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 128), nn.ReLU(),
                  nn.Linear(128, 10)]
    net = nn.Sequential(*layers)
    theirs = list(net.parameters())
    assert [tuple(p.shape) for p in theirs] == [p.shape for p in model.params.values()], name
    with torch.no_grad():
        for p, ours in zip(theirs, model.params.values()):
            p.copy_(torch.from_numpy(ours))
    return net


def _torch_block(torch, c_in, c_out, stride):
    """``srigl_ref.nn.BasicBlock`` in PyTorch: parameters registered in its order (conv1,
    bn1, conv2, bn2, then the 1x1 projection shortcut and its BatchNorm if the shape
    changes)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                           nn.BatchNorm2d(c_out))
                             if stride != 1 or c_in != c_out else nn.Identity())

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))

    return Block()


def _torch_loss(torch, net, x, y) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(net(torch.from_numpy(x)),
                                                       torch.from_numpy(y)))


def _torch_step(torch, net, x, y):
    """One PyTorch training step of ``net`` on a copy of the net (the copy trains on)."""
    import copy
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), **HYPER)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(tx), ty).backward()
        opt.step()
    return step


def _print_steps(result: dict) -> None:
    """Per model: srigl-ref, PyTorch and sgemm medians [IQR] and the ratios."""
    import numpy as np

    from bench.harness import Timing, fmt_timing
    samples = {n: np.asarray(v) for n, v in result["samples"].items()}
    print(f"{'model':8} {'competitor':20} {'seconds/step median [IQR]':>32} {'images/s':>9}")
    for name in MODELS:
        for key in sorted(k for k in samples if k.startswith(f"{name} | ")):
            t = Timing(key, samples[key])
            per_s = f"{BATCH / t.median:9.0f}" if key.split(" | ")[1] in ("srigl-ref",
                                                                           "torch") else ""
            print(f"{name:8} {key.split(' | ')[1]:20} {fmt_timing(t):>32} {per_s:>9}")
    print(f"\n{'model':8} {'GFLOP/img':>9} {'ratio':24} {'of medians':>10} "
          f"{'per-repeat median [IQR]':>26}")
    for name in MODELS:
        ours = samples[f"{name} | srigl-ref"]
        sgemm = next(v for k, v in samples.items() if k.startswith(f"{name} | sgemm"))
        pairs = [("srigl-ref / sgemm", ours, sgemm)]
        if f"{name} | torch" in samples:
            theirs = samples[f"{name} | torch"]
            pairs = [("srigl-ref / torch", ours, theirs), *pairs,
                     ("torch / sgemm", theirs, sgemm)]
        for label, a, b in pairs:
            q1, med, q3 = np.percentile(a / b, [25, 50, 75])
            print(f"{name:8} {result['flops_per_image'][name] / 1e9:9.4f} {label:24} "
                  f"{np.median(a) / np.median(b):10.2f} {med:12.2f} [{q1:.2f}, {q3:.2f}]")
    if not any(k.endswith("| torch") for k in samples):
        print("\ntorch: not importable, skipped the PyTorch peer")


CONV_SHAPES = (  # (in_channels, out_channels, kernel, padding, image size): stride 1
    (1, 6, 5, 2, 28), (6, 16, 5, 0, 14),                       # lenet5 conv1, conv2
    (1, 32, 3, 1, 28), (32, 32, 3, 1, 28), (32, 64, 3, 1, 14), (64, 64, 3, 1, 14),  # cnn
    (16, 16, 3, 1, 32), (16, 32, 3, 1, 16), (32, 32, 3, 1, 16), (32, 64, 3, 1, 8),
    (64, 64, 3, 1, 8), (8, 16, 5, 2, 14), (16, 32, 5, 2, 14))


def _conv_rule_worker(repeats: int, min_seconds: float, quick: bool) -> dict:
    """Forward + backward of one Conv2d by the direct kernels and by im2col, per shape."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bench.harness import environment, time_interleaved
    from srigl_ref.nn import Conv2d

    rng = np.random.default_rng(0)
    batch = 16 if quick else BATCH
    samples = {}
    for c_in, c_out, k, pad, size in CONV_SHAPES[:3] if quick else CONV_SHAPES:
        layer = Conv2d(c_in, c_out, k, padding=pad)
        x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
        params = {"weight": rng.standard_normal((c_out, c_in, k, k)).astype(np.float32),
                  "bias": rng.standard_normal(c_out).astype(np.float32)}
        dy = rng.standard_normal((batch, *layer.output_shape(x.shape[1:]))).astype(np.float32)

        def fwd_bwd(direct, layer=layer, x=x, params=params, dy=dy):
            return layer.backward(dy, layer.forward(x, params, direct=direct)[1])

        np.testing.assert_allclose(fwd_bwd(True)[0], fwd_bwd(False)[0], rtol=1e-3, atol=1e-3)
        label = f"{c_in}->{c_out} k{k} p{pad} {size}x{size}"
        competitors = {f"{label} | direct": lambda f=fwd_bwd: f(True),
                       f"{label} | im2col": lambda f=fwd_bwd: f(False)}
        for key, t in time_interleaved(competitors, repeats=repeats,
                                       min_seconds=min_seconds).items():
            samples[key] = t.samples.tolist()
    unfold = time_interleaved(_unfold_competitors(rng, batch), repeats=repeats,
                              min_seconds=min_seconds)
    samples.update({f"{n} | unfold": t.samples.tolist() for n, t in unfold.items()})
    return {"environment": environment(), "samples": samples}


def _print_conv_rule(result: dict) -> None:
    import numpy as np

    from bench.harness import Timing, fmt_timing
    samples = {n: np.asarray(v) for n, v in result["samples"].items()}
    print(f"{'shape (stride 1)':28} {'C_in*C_out':>10} {'direct median [IQR]':>30} "
          f"{'im2col median [IQR]':>30} {'im2col/direct':>13}")
    for key in (k for k in samples if k.endswith("| direct")):
        shape = key.rsplit(" | ", 1)[0]
        c_in, c_out = (int(v) for v in shape.split()[0].split("->"))
        d, g = (Timing(shape, samples[f"{shape} | {w}"]) for w in ("direct", "im2col"))
        print(f"{shape:28} {c_in * c_out:>10} {fmt_timing(d):>30} {fmt_timing(g):>30} "
              f"{g.median / d.median:13.2f}")
    for key in (k for k in samples if k.endswith("| unfold")):
        print(f"{key.rsplit(' | ', 1)[0]:28} {fmt_timing(Timing(key, samples[key])):>30}")


def _unfold_competitors(rng, batch) -> dict:
    """cnn's conv2 (32 -> 32 channels, 28x28): the package's im2col and col2im (Numba
    kernels) against strided-NumPy twins, the measurement that chose the kernels."""
    import numpy as np

    from srigl_ref.nn import _kernels
    from srigl_ref.nn.layers import _im2col
    x = np.maximum(rng.standard_normal((batch, 32, 28, 28)), 0).astype(np.float32)
    dcols = rng.standard_normal((32, 3, 3, batch, 28, 28)).astype(np.float32)

    def col2im_numba():
        dx = np.zeros(x.shape, np.float32)
        _kernels.col2im(dcols, 1, 1, dx)
        return dx

    out = {"im2col conv2, Numba kernel (used)": lambda: _im2col(x, 3, 1, 1),
           "im2col conv2, strided NumPy twin": lambda: _im2col_numpy(x, 3, 1, 1),
           "col2im conv2, Numba kernel (used)": col2im_numba,
           "col2im conv2, strided NumPy twin": lambda: _col2im_numpy(dcols, x.shape, 1, 1)}
    assert np.array_equal(out["im2col conv2, Numba kernel (used)"](),
                          out["im2col conv2, strided NumPy twin"]())
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


ENGINE_CONFIGS = (  # (label, model, mlp hidden widths, density)
    ("lenet-300-100", "mlp", None, 0.1), ("mlp 2048x2048", "mlp", (2048, 2048), 0.1),
    ("mlp 2048x2048", "mlp", (2048, 2048), 0.05), ("mlp 2048x2048", "mlp", (2048, 2048), 0.01),
    ("cnn", "cnn", None, 0.05), ("cnn", "cnn", None, 0.1))


def _engine_configs(only) -> tuple:
    """The ``ENGINE_CONFIGS`` whose label is in ``only`` (all when ``only`` is empty)."""
    return tuple(c for c in ENGINE_CONFIGS if not only or c[0] in only)


def _engine_worker(quick: bool, only) -> dict:
    """Masked vs condensed engine: step and epoch competitors, timed interleaved."""
    sys.path.insert(0, str(ROOT))
    import tempfile

    import numpy as np

    from bench.harness import environment, time_interleaved
    from srigl_ref.train import TrainConfig, Trainer

    tmp = tempfile.TemporaryDirectory()
    steps, epochs, checks = {}, {}, {}
    for label, model, hidden, density in _engine_configs(only):
        losses = {}
        for engine in ("masked", "condensed"):
            name = f"{label} d={density} {engine}"
            common = dict(dataset="synthetic", model=model, hidden=hidden, density=density,
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


def _print_engine_table(pooled: dict, threads_list, only) -> None:
    """Masked vs condensed: medians [IQR] and ratios per configuration and thread count."""
    import numpy as np

    from bench.harness import Timing, fmt_timing
    print(f"{'configuration':26} {'threads':>7} {'what':>5} {'masked median [IQR]':>30} "
          f"{'condensed median [IQR]':>30} {'speed-up':>8}")
    for label, _, _, density in _engine_configs(only):
        for what in ("step", "epoch"):
            for threads in threads_list:
                t = {e: Timing(e, np.asarray(pooled[threads][f"{label} d={density} {e} | "
                                                            f"{what}"]))
                     for e in ("masked", "condensed")}
                print(f"{label + f' d={density}':26} {threads:>7} {what:>5} "
                      f"{fmt_timing(t['masked']):>30} {fmt_timing(t['condensed']):>30} "
                      f"{t['masked'].median / t['condensed'].median:7.2f}x")


def _run_worker(threads: int, quick: bool, mode: str, only=()) -> dict:
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARS})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode]
    cmd += ["--quick"] if quick else []
    cmd += ["--only", *only] if only else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"worker with {threads} thread(s) failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few, short samples")
    parser.add_argument("--threads", type=int, default=None, help="threads of the step "
                        "comparison and of --conv-rule (default 1); --engines: only this "
                        "thread count (default 1 and 2)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats")
    parser.add_argument("--conv-rule", action="store_true", help="instead: Conv2d direct "
                        "kernels against im2col + GEMM, per shape")
    parser.add_argument("--engines", action="store_true", help="instead: masked vs "
                        "condensed training engine, step and epoch times")
    parser.add_argument("--rounds", type=int, default=3, help="--engines: subprocess rounds "
                        "per thread count (alternating), samples pooled")
    parser.add_argument("--only", nargs="+", default=(), metavar="LABEL",
                        choices=sorted({c[0] for c in ENGINE_CONFIGS}),
                        help="--engines: only these configurations")
    parser.add_argument("--worker", choices=("steps", "conv-rule", "engines"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats, min_seconds = (3, 0.01) if args.quick else (args.repeats, 0.2)
    if args.worker:
        result = {"steps": lambda: _worker(repeats, min_seconds),
                  "conv-rule": lambda: _conv_rule_worker(repeats, min_seconds, args.quick),
                  "engines": lambda: _engine_worker(args.quick, args.only)}[args.worker]()
        print(json.dumps(result))
        return

    sys.path.insert(0, str(ROOT))
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    if args.engines:
        _main_engines(args)
        return
    threads = args.threads or 1
    result = _run_worker(threads, args.quick, "conv-rule" if args.conv_rule else "steps")
    print(f"environment ({threads}-thread worker):", json.dumps(result["environment"]))
    if args.conv_rule:
        _print_conv_rule(result)
    else:
        print("first-step losses (srigl-ref, torch on copied weights):",
              json.dumps(result["first_losses"]))
        _print_steps(result)


def _main_engines(args) -> None:
    import numpy as np
    rounds = 1 if args.quick else args.rounds
    threads_list = THREADS if args.threads is None else (args.threads,)
    pooled: dict[int, dict[str, list]] = {t: {} for t in threads_list}
    envs = {}
    for r in range(rounds):
        for threads in threads_list if r % 2 == 0 else threads_list[::-1]:
            print(f"round {r + 1}, {threads} thread(s): load average "
                  f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
            result = _run_worker(threads, args.quick, "engines", args.only)
            envs[threads] = result["environment"]
            for name, samples in result["samples"].items():
                pooled[threads].setdefault(name, []).extend(samples)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for threads in threads_list:
        print(f"environment ({threads}-thread workers):", json.dumps(envs[threads]))
    _print_engine_table({t: {n: np.asarray(v) for n, v in p.items()}
                         for t, p in pooled.items()}, threads_list, args.only)


if __name__ == "__main__":
    main()
