"""How much faster is a condensed constant fan-in layer than dense BLAS and CSR?

Competitors, timed interleaved in one run (bench/harness.py), each with the bias add:

- ``condensed``: ``CondensedLinear.__call__`` (srigl_ref.condensed): at batch <= 8 the
  window-permute kernel on AVX-512 CPUs (``matmul.WINDOW_KERNEL``), else the lanes kernel;
- ``condensed_lanes`` (batch <= 8): the same call through the lanes kernel (what CPUs
  without AVX-512 run, and what every CPU ran before the window kernel);
- ``windows_kernel`` (batch 1, AVX-512): the window kernel called directly on
  preallocated arrays, so ``condensed - windows_kernel`` is the Python wrapper's cost;
- ``dense``: NumPy ``W @ x + b`` (OpenBLAS sgemv / sgemm);
- ``scipy_csr``: ``scipy.sparse.csr_array @ x + b`` (single-threaded);
- ``numba_csr``: a Numba CSR kernel written with the same care as the condensed one (below:
  uint16 column indices; at batch 1 the same vector code, ``_kernels.lanes_dot_loop``, run
  along each row, 16 nonzeros a step, then a horizontal sum and a scalar tail; four
  nonzeros per pass over a feature-major batch; the same parallel rule). What it lacks is
  only what CSR lacks: rows of one length, which let the condensed kernel run 16 rows in
  lockstep with no horizontal sum, no tail and no row pointer;
- ``numba_csr_scalar`` (batch 1 only): the plain-Numba CSR row loop (four partial sums,
  eight nonzeros a step), the condensed kernel's design before the vector code;
- ``condensed_c`` (batch > 1 only): ``condensed`` given a C-ordered ``x [B, in]``, i.e.
  paying the transpose to feature-major that a chain of condensed layers avoids.

Batched activations are given to every competitor feature-major (``x`` as an F-ordered
``[B, in]``; ``[in, B]`` C-ordered for the CSR products), as a previous condensed layer
returns them. Two cache regimes: ``hot`` calls the same layer again and again (as the SRigL
authors measured); ``cold`` rotates through copies of the layer totalling >= 96 MiB per
competitor, so the weights stream from memory as in whole-model inference (``x`` stays hot).

Each thread count runs in its own subprocess, with NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS
and OMP_NUM_THREADS set before NumPy and Numba load. Results: a markdown table on stdout,
JSON with ``--json``, a PNG with ``--plot`` when matplotlib is importable.

    python bench/condensed_matmul.py --quick                  # CI smoke run
    python bench/condensed_matmul.py --shapes 3072x768 --sparsities 0.9 --batches 1 256
    python bench/condensed_matmul.py --threshold              # serial vs parallel crossover
    python bench/condensed_matmul.py --small-batch            # per-example vs feature-major
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np
import scipy.sparse
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import srigl_ref  # noqa: E402
from bench.harness import (environment, fmt_seconds, fmt_timing,  # noqa: E402
                           time_interleaved)
from srigl_ref.condensed import _kernels as K  # noqa: E402
from srigl_ref.condensed import condense, matmul  # noqa: E402

SHAPES = ("3072x768", "768x3072", "768x768", "4096x4096")   # in x out, ViT-B/16 MLP first
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
BATCHES = (1, 16, 256)
THREADS = (1, 2)
REGIMES = ("hot", "cold")
COLD_BYTES = 96 * 2**20
CONDENSED = ("condensed", "condensed_c", "condensed_lanes")
COMPETITORS = ("condensed", "condensed_lanes", "windows_kernel", "dense", "scipy_csr",
               "numba_csr", "numba_csr_scalar", "condensed_c")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", default=SHAPES, metavar="INxOUT",
                   help="layer shapes as in_features x out_features (default: %(default)s)")
    p.add_argument("--sparsities", nargs="+", type=float, default=SPARSITIES)
    p.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    p.add_argument("--threads", nargs="+", type=int, default=THREADS)
    p.add_argument("--regimes", nargs="+", choices=REGIMES, default=REGIMES)
    p.add_argument("--repeats", type=int, default=15, help="samples per competitor")
    p.add_argument("--min-seconds", type=float, default=0.02, help="length of one sample")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: 768x768, s=0.9, batches 1 and 16, 1 thread, "
                        "hot, 3 repeats")
    p.add_argument("--small-batch", action="store_true",
                   help="measure the batch-1 kernel once per example vs the feature-major "
                        "kernel (1 thread) instead")
    p.add_argument("--threshold", action="store_true",
                   help="measure serial vs parallel condensed kernels (2 threads) instead")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--plot", type=Path, help="write a PNG here (needs matplotlib)")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.shapes, args.sparsities, args.batches = ["768x768"], [0.9], [1, 16]
        args.threads, args.regimes, args.repeats, args.min_seconds = [1], ["hot"], 3, 0.005
    return args


# ---- competitors ------------------------------------------------------------------------

def make_layer(n_in, n_out, sparsity, rng):
    """A random constant fan-in layer: weight, mask (k = int(N (1 - S)) // out), bias."""
    shape = (n_out, n_in)
    mask = srigl_ref.random_fan_in_mask(shape, srigl_ref.constant_fan_in(shape, sparsity), rng)
    weight = (rng.standard_normal((n_out, n_in)) * mask).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    return weight, mask, bias


def build(weight, mask, bias):
    """Every competitor's layer object."""
    layer = condense(weight, mask, bias)
    csr = scipy.sparse.csr_array(np.where(mask, weight, np.float32(0)))
    csr.sort_indices()
    narrow = np.uint16 if weight.shape[1] <= 1 << 16 else np.uint32
    indptr = csr.indptr.astype(np.int64)
    return {"condensed": layer, "condensed_c": layer, "condensed_lanes": layer,
            "windows_kernel": (layer, np.empty((1, layer.n_active), np.float32)),
            "dense": (weight, bias),
            "scipy_csr": (csr, bias[:, None], bias),
            "numba_csr": (csr.data, csr.indices.astype(narrow), indptr, bias),
            "numba_csr_scalar": (csr.data, csr.indices.astype(narrow), indptr, bias)}


def call(name, obj, x, xT, xc):
    """One forward of competitor ``name`` with layer ``obj``.

    ``x``: ``[in]``, or a batch as an F-ordered ``[B, in]``; then ``xT`` is its C-ordered
    ``[in, B]`` view and ``xc`` a C-ordered copy (both ``None`` at batch 1).
    """
    batched = x.ndim == 2
    if name == "condensed":
        return obj(x)
    if name == "condensed_lanes":
        xs = matmul.check_activations("x", x, obj.in_features)
        return matmul.forward(xs, obj._slab_values, obj._slab_index, obj._bias, obj.n_active)
    if name == "windows_kernel":
        layer, y = obj                                  # y: [1, n], preallocated
        K.matvec_windows(x.reshape(1, -1), *layer._windows, layer._bias, y)
        return y[0]
    if name == "condensed_c":
        return obj(xc)
    if name == "dense":
        weight, bias = obj
        return (x @ weight.T if batched else weight @ x) + bias
    if name == "scipy_csr":
        csr, bias_col, bias = obj
        return (csr @ xT + bias_col).T if batched else csr @ x + bias
    data, indices, indptr, bias = obj
    return numba_csr(xT if batched else x, data, indices, indptr, bias,
                     vector=name == "numba_csr")


# The Numba CSR competitor. Rows are sliced so every loop index starts at 0 and is known
# non-negative: indexing with ``p`` from ``range(indptr[r], ...)`` makes Numba emit
# negative-index wraparound code on every access (measured 1.75x slower at 3072->768,
# s=0.9, batch 1). The row helpers are inlined, as the condensed ones are.
FM = {"contract"}


@intrinsic
def csr_row_dot_vector(typingctx, x, data, indices, start, m):
    """``sum_{p < m - m % LANES} data[start + p] * x[indices[start + p]]``: ``LANES``
    nonzeros a step into one vector by the condensed kernel's own loop
    (``_kernels.lanes_dot_loop``: same gather, same prefetch), then a horizontal sum.
    x, data : 1-D C float32; indices : 1-D C uint16/uint32."""
    if not (all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                for a in (x, data, indices))
            and x.dtype == data.dtype == types.float32
            and indices.dtype in (types.uint16, types.uint32)):
        return None
    sig = types.float32(x, data, indices, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        xa, da, ia, start, m = args
        i64, f32 = ir.IntType(64), ir.FloatType()
        x_ptr = context.make_array(x)(context, builder, xa).data
        d_ptr = builder.gep(context.make_array(data)(context, builder, da).data, [start])
        i_ptr = builder.gep(context.make_array(indices)(context, builder, ia).data, [start])
        n_steps = builder.sdiv(m, ir.Constant(i64, K.LANES))
        total = K.lanes_dot_loop(builder, x_ptr, d_ptr, i_ptr, n_steps, f32,
                                 indices.dtype.bitwidth)
        reduce = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f32, [f32, total.type]),
            f"llvm.vector.reduce.fadd.v{K.LANES}f32")
        return builder.call(reduce, [ir.Constant(f32, 0.0), total], fastmath=("reassoc",))

    return sig, codegen


# Not cached: the intrinsic's code comes from another file (_kernels.lanes_dot_loop), whose
# changes Numba's cache would not notice.
@njit(fastmath=FM, inline="always")
def csr_row_vector(x, data, indices, start, stop):
    """``sum_p data[p] * x[indices[p]]`` over one row: vector steps, then a scalar tail."""
    m = stop - start
    s = csr_row_dot_vector(x, data, indices, start, m)
    d, ii = data[stop - m % K.LANES:stop], indices[stop - m % K.LANES:stop]
    for p in range(d.size):
        s += d[p] * x[ii[p]]
    return s


@njit(fastmath=FM)
def csr_matvec_vector(x, data, indices, indptr, bias, y):
    for r in range(y.size):
        y[r] = csr_row_vector(x, data, indices, indptr[r], indptr[r + 1]) + bias[r]


@njit(fastmath=FM, parallel=True)
def csr_matvec_vector_parallel(x, data, indices, indptr, bias, y):
    for r in prange(y.size):
        y[r] = csr_row_vector(x, data, indices, indptr[r], indptr[r + 1]) + bias[r]


@njit(cache=True, fastmath=FM, inline="always")
def csr_row_dot(x, data, indices, start, stop):
    """``sum_p data[p] * x[indices[p]]`` over one row, four partial sums, eight a step."""
    d, ii = data[start:stop], indices[start:stop]
    s0 = s1 = s2 = s3 = data.dtype.type(0)
    n8 = d.size - d.size % 8
    for p in range(0, n8, 8):
        s0 += d[p] * x[ii[p]]
        s1 += d[p + 1] * x[ii[p + 1]]
        s2 += d[p + 2] * x[ii[p + 2]]
        s3 += d[p + 3] * x[ii[p + 3]]
        s0 += d[p + 4] * x[ii[p + 4]]
        s1 += d[p + 5] * x[ii[p + 5]]
        s2 += d[p + 6] * x[ii[p + 6]]
        s3 += d[p + 7] * x[ii[p + 7]]
    for p in range(n8, d.size):
        s0 += d[p] * x[ii[p]]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, fastmath=FM)
def csr_matvec(x, data, indices, indptr, bias, y):
    for r in range(y.size):
        y[r] = csr_row_dot(x, data, indices, indptr[r], indptr[r + 1]) + bias[r]


@njit(cache=True, fastmath=FM, parallel=True)
def csr_matvec_parallel(x, data, indices, indptr, bias, y):
    for r in prange(y.size):
        y[r] = csr_row_dot(x, data, indices, indptr[r], indptr[r + 1]) + bias[r]


@njit(cache=True, fastmath=FM, inline="always")
def csr_row_matmat(xT, data, indices, start, stop, bias_r, yr):
    """``yr[:] = bias_r + sum_p data[p] * xT[indices[p], :]``, four nonzeros a pass."""
    d, ii = data[start:stop], indices[start:stop]
    for t in range(yr.shape[0]):
        yr[t] = bias_r
    n4 = d.size - d.size % 4
    for p in range(0, n4, 4):
        x0, x1, x2, x3 = xT[ii[p]], xT[ii[p + 1]], xT[ii[p + 2]], xT[ii[p + 3]]
        v0, v1, v2, v3 = d[p], d[p + 1], d[p + 2], d[p + 3]
        for t in range(yr.shape[0]):
            yr[t] = yr[t] + v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]
    for p in range(n4, d.size):
        xp, vp = xT[ii[p]], d[p]
        for t in range(yr.shape[0]):
            yr[t] += vp * xp[t]


@njit(cache=True, fastmath=FM)
def csr_matmat(xT, data, indices, indptr, bias, yT):
    for r in range(yT.shape[0]):
        csr_row_matmat(xT, data, indices, indptr[r], indptr[r + 1], bias[r], yT[r])


@njit(cache=True, fastmath=FM, parallel=True)
def csr_matmat_parallel(xT, data, indices, indptr, bias, yT):
    for r in prange(yT.shape[0]):
        csr_row_matmat(xT, data, indices, indptr[r], indptr[r + 1], bias[r], yT[r])


def numba_csr(x, data, indices, indptr, bias, vector=True):
    """Numba CSR forward: batch 1 on ``x [in]`` (the vector row kernel, or the scalar one
    with ``vector=False``), batched on ``xT [in, B]`` (-> ``[B, n]``)."""
    n = indptr.size - 1
    work = data.size * (x.shape[1] if x.ndim == 2 else 1)
    parallel = work >= matmul.PARALLEL_MIN_WORK and numba.get_num_threads() > 1
    if x.ndim == 1:
        y = np.empty(n, np.float32)
        kernel = ((csr_matvec_vector_parallel if parallel else csr_matvec_vector) if vector
                  else (csr_matvec_parallel if parallel else csr_matvec))
        kernel(x, data, indices, indptr, bias, y)
        return y
    yT = np.empty((n, x.shape[1]), np.float32)
    (csr_matmat_parallel if parallel else csr_matmat)(x, data, indices, indptr, bias, yT)
    return yT.T


# ---- one cell ---------------------------------------------------------------------------

def run_cell(n_in, n_out, sparsity, batch, regime, args, rng):
    """Check every competitor against float64, then time them; returns a result dict."""
    weight, mask, bias = make_layer(n_in, n_out, sparsity, rng)
    layers = build(weight, mask, bias)
    small = batch <= matmul.SMALL_BATCH
    names = [n for n in COMPETITORS
             if (n != "condensed_c" or batch > 1) and (n != "numba_csr_scalar" or batch == 1)
             and (n != "condensed_lanes" or small)
             and (n != "windows_kernel" or (batch == 1 and matmul.WINDOW_KERNEL))]
    x = rng.standard_normal(n_in if batch == 1 else (batch, n_in)).astype(np.float32)
    if batch > 1:
        x = np.asfortranarray(x)
    xT = x.T if batch > 1 else None                                      # [in, B] C-order
    xc = np.ascontiguousarray(x) if batch > 1 else None
    w64 = weight.astype(np.float64)
    ref = (x.astype(np.float64) @ w64.T if batch > 1 else w64 @ x) + bias
    scale = (np.abs(x) @ np.abs(w64.T) if batch > 1 else np.abs(w64) @ np.abs(x)) + np.abs(bias)
    for name in names:
        y = call(name, layers[name], x, xT, xc)
        err = np.abs(np.asarray(y, dtype=np.float64) - ref) / scale
        if y.shape != ref.shape or not err.max() <= 1e-5:
            raise AssertionError(f"{name} disagrees with the float64 reference "
                                 f"(shape {y.shape}, max relative error {err.max():.3g})")
    copies = {}
    for name in names:
        obj = layers[name]
        n_copies = 1 if regime == "hot" else -(-COLD_BYTES // layer_bytes(name, obj, batch))
        copies[name] = [obj] + [_copy(name, obj) for _ in range(n_copies - 1)]
        for copy in copies[name]:                     # build lazy layouts before timing
            call(name, copy, x, xT, xc)
    del layers
    competitors = {name: _rotating(name, copies[name], x, xT, xc) for name in names}
    timings = time_interleaved(competitors, repeats=args.repeats, min_seconds=args.min_seconds)
    out = {"in": n_in, "out": n_out, "sparsity": sparsity, "k": int(mask[0].sum()),
           "batch": batch, "regime": regime, "copies": {n: len(copies[n]) for n in names},
           "bytes": {n: int(layer_bytes(n, copies[n][0], batch)) for n in names}}
    out["seconds"] = {n: {"median": t.median, "q1": t.iqr[0], "q3": t.iqr[1],
                          "samples": t.samples.tolist()} for n, t in timings.items()}
    return out


def layer_bytes(name, obj, batch):
    """Bytes a call of competitor ``name`` streams (weights, indices, bias)."""
    windows = name == "windows_kernel" or (name == "condensed" and matmul.WINDOW_KERNEL
                                           and batch <= matmul.SMALL_BATCH)
    if windows:
        layer = obj[0] if name == "windows_kernel" else obj
        return sum(a.nbytes for a in layer._windows) + layer._bias.nbytes
    if name in ("condensed", "condensed_c", "condensed_lanes"):
        return obj._slab_values.nbytes + obj._slab_index.nbytes + obj._bias.nbytes
    if name == "scipy_csr":
        return obj[0].data.nbytes + obj[0].indices.nbytes + obj[0].indptr.nbytes
    return sum(a.nbytes for a in obj)


def _copy(name, obj):
    """An independent copy of a competitor's layer (its own memory)."""
    if name == "windows_kernel":
        return (_copy("condensed", obj[0]), obj[1].copy())
    if name in CONDENSED:
        return type(obj)(obj.values, obj.indices, obj.active_rows, obj.bias, obj.shape)
    if name == "scipy_csr":
        return (obj[0].copy(), obj[1].copy(), obj[2].copy())
    return tuple(a.copy() for a in obj)


def _rotating(name, objs, x, xT, xc):
    """A zero-argument callable that calls the next copy each time."""
    state = {"i": 0}

    def run():
        state["i"] = (state["i"] + 1) % len(objs)
        return call(name, objs[state["i"]], x, xT, xc)
    return run


# ---- parallel threshold -----------------------------------------------------------------

def _kernel_pair(layer, batch, rng, which):
    """Zero-argument calls on one layer: ``which`` is "threads" (serial vs parallel build
    of the kernel ``forward`` runs) or "small_batch" (the batch-1 kernel once per example,
    window and lanes, vs the feature-major kernel)."""
    n_in = layer.in_features
    v, idx, b = layer._slab_values, layer._slab_index, layer._bias
    x = rng.standard_normal((batch, n_in)).astype(np.float32)            # [B, in]
    xT = np.ascontiguousarray(x.T)                                        # [in, B]
    y = np.empty((batch, b.size), np.float32)                             # [B, n_pad]
    yw = np.empty((batch, layer.n_active), np.float32)                    # [B, n]
    yT = np.empty((layer.n_active, batch), np.float32)                    # [n, B]
    w = layer._windows if matmul.WINDOW_KERNEL else None
    if which == "small_batch":
        calls = {"per_example_lanes": lambda: K.matvec_lanes(x, v, idx, b, y),
                 "feature_major": lambda: K.matmat_lanes(xT, v, idx, b, yT)}
        if w is not None:
            calls["per_example"] = lambda: K.matvec_windows(x, *w, b, yw)
        return calls
    if batch <= matmul.SMALL_BATCH and w is not None:                     # what forward runs
        return {"serial": lambda: K.matvec_windows(x, *w, b, yw),
                "parallel": lambda: K.matvec_windows_parallel(x, *w, b, yw)}
    if batch <= matmul.SMALL_BATCH:
        return {"serial": lambda: K.matvec_lanes(x, v, idx, b, y),
                "parallel": lambda: K.matvec_lanes_parallel(x, v, idx, b, y)}
    return {"serial": lambda: K.matmat_lanes(xT, v, idx, b, yT),
            "parallel": lambda: K.matmat_lanes_parallel(xT, v, idx, b, yT)}


def run_threshold(args):
    """Serial vs parallel condensed kernels at the current thread count, over work sizes
    (``--threshold``), or the batch-1 kernel once per example vs the feature-major one
    (``--small-batch``)."""
    rng = np.random.default_rng(0)
    rows = []
    small = args.small_batch
    a, b = ("per_example", "feature_major") if small else ("serial", "parallel")
    for n_in, n_out in ((768, 64), (768, 256), (3072, 768), (3072, 3072)):
        for sparsity in (0.99, 0.9, 0.5):
            for batch in ((2, 4, 8, 12, 16, 32) if small else (1, 4, 16, 64)):
                layer = condense(*make_layer(n_in, n_out, sparsity, rng))
                comp = _kernel_pair(layer, batch, rng, "small_batch" if small else "threads")
                t = time_interleaved(comp, repeats=args.repeats, min_seconds=args.min_seconds)
                work = layer.values.size * batch
                first = a if a in t else "per_example_lanes"            # no AVX-512
                ratio = t[first].median / t[b].median
                rows.append({"in": n_in, "out": n_out, "sparsity": sparsity, "batch": batch,
                             "work": work, "speedup": ratio,
                             "seconds": {n: t[n].median for n in t}})
                lanes = (f"  per_example_lanes {fmt_timing(t['per_example_lanes']):>28}"
                         if small and first != "per_example_lanes" else "")
                print(f"work {work:>10}  {n_in}x{n_out} s={sparsity} B={batch:<3} {first} "
                      f"{fmt_timing(t[first]):>28}{lanes}  {b} {fmt_timing(t[b]):>28}"
                      f"  {b} speedup x{ratio:.2f}", flush=True)
    return rows


# ---- driver -----------------------------------------------------------------------------

def worker(args):
    """Run every selected cell at this process's thread count; write JSON to args.worker."""
    rng = np.random.default_rng(12345)
    env = environment()
    env.update({v: os.environ[v] for v in ("OPENBLAS_L2_SIZE",) if v in os.environ})
    result = {"environment": env, "cells": []}
    if args.threshold or args.small_batch:
        result["threshold"] = run_threshold(args)
    else:
        for shape in args.shapes:
            n_in, n_out = (int(s) for s in shape.split("x"))
            for sparsity in args.sparsities:
                for batch in args.batches:
                    for regime in args.regimes:
                        cell = run_cell(n_in, n_out, sparsity, batch, regime, args, rng)
                        cell["threads"] = result["environment"]["numba_threads"]
                        result["cells"].append(cell)
                        print(format_row(cell), flush=True)
    args.worker.write_text(json.dumps(result))


def spawn(threads, argv):
    """Run this script as a worker with ``threads`` threads everywhere; return its JSON."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        subprocess.run([sys.executable, __file__, *argv, "--worker", str(path)], env=env,
                       check=True)
        return json.loads(path.read_text())


# Table columns: (competitor, heading); ratios are competitor / condensed medians.
COLUMNS = (("condensed", "condensed"), ("condensed_lanes", "condensed, lanes kernel"),
           ("windows_kernel", "window kernel alone"), ("dense", "dense (BLAS)"),
           ("scipy_csr", "SciPy CSR"), ("numba_csr", "Numba CSR"),
           ("numba_csr_scalar", "Numba CSR scalar"), ("condensed_c", "condensed, C-order x"))
RATIOS = (("condensed_lanes", "lanes / cond."), ("dense", "dense / cond."),
          ("scipy_csr", "SciPy / cond."), ("numba_csr", "Numba CSR / cond."),
          ("numba_csr_scalar", "Numba CSR scalar / cond."))


def format_row(cell):
    """One markdown table row: medians [IQR] and ratios to condensed."""
    s = cell["seconds"]
    c = s["condensed"]["median"]

    def t(name):
        if name not in s:
            return "-"
        m = s[name]
        return f"{fmt_seconds(m['median'])} [{fmt_seconds(m['q1'])}, {fmt_seconds(m['q3'])}]"

    def r(name):
        return f"{s[name]['median'] / c:.2f}x" if name in s else "-"
    cells = ([f"{cell['in']}->{cell['out']}", str(cell["sparsity"]), str(cell["k"]),
              str(cell["batch"]), str(cell["threads"]), cell["regime"]]
             + [t(name) for name, _ in COLUMNS] + [r(name) for name, _ in RATIOS])
    return "| " + " | ".join(cells) + " |"


HEADING = (["layer in->out", "sparsity", "k", "batch", "threads", "cache"]
           + [h for _, h in COLUMNS] + [h for _, h in RATIOS])
HEADER = "| " + " | ".join(HEADING) + " |\n|" + "---|" * len(HEADING)


def plot(cells, path):
    """Speed-up over dense vs sparsity: a panel per layer, a line per batch/cache/threads."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib not importable: no plot written to {path}")
        return
    shapes = sorted({(c["in"], c["out"]) for c in cells})
    colors = {}                                                         # one per batch
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.5 * len(shapes), 4), squeeze=False)
    for ax, (n_in, n_out) in zip(axes[0], shapes):
        lines = {}
        for c in cells:
            if (c["in"], c["out"]) == (n_in, n_out):
                lines.setdefault((c["batch"], c["regime"], c["threads"]), []).append(c)
        for (batch, regime, threads), cs in sorted(lines.items()):
            cs.sort(key=lambda c: c["sparsity"])
            ax.plot([c["sparsity"] for c in cs],
                    [c["seconds"]["dense"]["median"] / c["seconds"]["condensed"]["median"]
                     for c in cs], marker="o" if threads == 1 else "s",
                    linestyle="-" if regime == "hot" else "--",
                    color=colors.setdefault(batch, f"C{len(colors)}"),
                    alpha=1.0 if threads == 1 else 0.5, label=f"B={batch} {regime} {threads}t")
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set(title=f"{n_in} -> {n_out}", xlabel="sparsity", yscale="log",
               ylabel="dense time / condensed time")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    results = []
    threads = [2] if args.threshold else [1] if args.small_batch else args.threads
    print("serial vs parallel condensed kernels, 2 threads" if args.threshold else
          "batch-1 kernel per example vs feature-major kernel, 1 thread" if args.small_batch
          else HEADER)
    for n in threads:
        results.append(spawn(n, argv))
    for res in results:
        print("environment:", json.dumps(res["environment"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot and not (args.threshold or args.small_batch):
        plot([c for res in results for c in res["cells"]], args.plot)


if __name__ == "__main__":
    main()
