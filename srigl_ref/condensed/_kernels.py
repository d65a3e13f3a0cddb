"""Numba kernels of the condensed (constant fan-in) layer: forward and backward, and of
the condensed convolution being trained (``conv_rows``, ``conv_backward_rows``).

Every kernel trusts its inputs (validated by ``matmul.py`` or the training layers of
``train/condensed_engine.py``): C-contiguous arrays, one float dtype throughout (float32
or float64), indices in range. Numba does not bounds-check, so a bad index here reads or
writes arbitrary memory.

Layouts (docs/algorithm.md §9):

- row-major (training, backward): ``values [n, k]``; ``index [n, k]`` unsigned (uint16
  when ``in <= 65536``, else uint32);
- lanes (``CondensedLinear``'s forward, ``matmul.lanes_layout``): the rows in blocks of
  ``LANES`` = 16, each block stored position-major, ``slab_values [n_blocks, k, LANES]`` and
  ``slab_index [n_blocks, k, LANES]`` (uint16/uint32), so ``slab_values[b, j, l] =
  values[LANES * b + l, j]``. Rows past ``n`` in the last block are padding (value 0, index
  0); a kernel writing ``[n_pad]`` computes them, the caller drops them;
- window (``matmul.window_layout``, batch 1 on AVX-512 CPUs): the rows in blocks of
  ``LANES`` and the blocks in groups of ``GROUP`` = 4; a group runs a sequence of steps,
  each over a window of ``WINDOW`` = 31 inputs starting anywhere (``step_input``), in
  which each row takes its next nonzero or pads; a unit (one step of one block) is 16
  byte offsets into the window, padding at ``PAD_OFFSET``, a slot that holds 0; the
  values, unpadded, are one stream of the ``n k`` nonzeros in unit and lane order;
- activations of a batch are feature-major, ``xT [in, B]``, so each gathered input is one
  contiguous row of ``B`` floats.

Floating point: ``fastmath={"contract"}`` only (a*b+c may become one FMA, which changes
the last bit, well inside every test tolerance); no reassociation, so every row is summed
in the order ``j = 0, 1, ..., k - 1`` unless a docstring says otherwise. Serial and parallel
builds inline the same per-row or per-block code, hence agree bit for bit (tested).

Kernel shapes (why each is built so, with the measurements, in bench/README.md,
"## condensed_matmul"):

- batch 1, and batches of up to ``matmul.SMALL_BATCH`` examples one at a time:
  - lanes (``_lanes_dot``, LLVM IR): the 16 rows of a block advance in lockstep, one
    position ``j`` a step: one vector load of 16 values, 16 scalar loads of the gathered
    ``x`` assembled into a vector, one vector multiply-add. Indices are read four (uint16)
    or two (uint32) per 64-bit integer load and split with shifts (a vector-to-integer move
    per index is slower); values are prefetched ``PREFETCH_STEPS`` ahead. Constant fan-in
    makes the rows of a block equally long: no horizontal sum, no remainder loop;
  - window (``_window_dot``, LLVM IR, AVX-512): the window's inputs sit in two registers,
    so a step gathers its 16 inputs with one two-source permute (``vpermi2ps``) instead of
    16 loads, and the ``GROUP`` blocks of a group, sharing steps, keep four independent
    multiply-add chains in flight. The values are stored without padding (an expanding
    load, ``vexpandps``, puts them in their lanes); a padded lane costs a multiply-add and
    an offset byte, so the kernel pays where a row has about one nonzero per window or
    more (``matmul.use_windows``);
- batched: four nonzeros per pass over the ``B`` lanes (one load and one store of the
  output row per four FMAs; the loop vectorises over contiguous rows); in the lanes
  layout the 16 rows of a block take turns every four nonzeros, so the four value and
  index lines in use serve all of them.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

FASTMATH = {"contract"}
LANES = 16                       # rows per block of the lanes layout (one 64 B line of f32)
PREFETCH_STEPS = 32              # _lanes_dot prefetches the values this many steps ahead
WINDOW = 31                      # inputs per window of the window layout (+ one zero slot)
PAD_OFFSET = WINDOW              # the zero slot: padded lanes read 0, never an input
GROUP = 4                        # blocks of the window layout sharing steps
WINDOW_PREFETCH = 2048           # window_dot_loop prefetches values this many ahead


def _gather_vector(builder, x_ptr, index_ptr, fty, bits):
    """LLVM IR (code generation helper, not a kernel): the vector
    ``<LANES x fty> [x[index[0]], ..., x[index[LANES - 1]]]``.

    ``index_ptr`` points at ``LANES`` unsigned ``bits``-bit indices (16 or 32), read
    ``64 // bits`` at a time as one 64-bit integer load (unaligned loads are fine on x86 and
    AArch64) and split with shifts; each ``x`` is a scalar load inserted into its lane.
    """
    i64, i32 = ir.IntType(64), ir.IntType(32)
    per_word = 64 // bits                                  # indices per 64-bit load
    words = builder.bitcast(index_ptr, i64.as_pointer())
    vector = ir.Constant(ir.VectorType(fty, LANES), ir.Undefined)
    for q in range(LANES // per_word):
        word = builder.load(builder.gep(words, [ir.Constant(i64, q)]), align=bits // 8)
        for lane in range(per_word):
            shift = bits * (lane if np.little_endian else per_word - 1 - lane)
            col = builder.and_(builder.lshr(word, ir.Constant(i64, shift)),
                               ir.Constant(i64, (1 << bits) - 1))
            xv = builder.load(builder.gep(x_ptr, [col]), align=_fty_bytes(fty))
            vector = builder.insert_element(vector, xv, ir.Constant(i32, per_word * q + lane))
    return vector


def _fty_bytes(fty) -> int:
    """Bytes of the LLVM float type ``fty`` (float or double)."""
    return 8 if isinstance(fty, ir.DoubleType) else 4


def lanes_dot_loop(builder, x_ptr, v_ptr, i_ptr, n_steps, fty, bits):
    """LLVM IR (code generation helper, not a kernel): the ``<LANES x fty>`` vector whose
    lane ``l`` is ``sum_{j < n_steps} v[LANES j + l] * x[i[LANES j + l]]``, summed in order
    ``j = 0, 1, ...`` from +0.0 with ``llvm.fmuladd`` (fused where the CPU has FMA, like
    ``contract``); all zeros when ``n_steps <= 0``. ``v`` is prefetched ``PREFETCH_STEPS``
    steps ahead. ``n_steps`` is an i64 value; ``i`` holds ``bits``-bit unsigned indices.
    """
    i64, i32, i8p = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
    vty = ir.VectorType(fty, LANES)
    fmuladd = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty, vty, vty]),
        f"llvm.fmuladd.v{LANES}f{8 * _fty_bytes(fty)}")
    prefetch = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
        "llvm.prefetch.p0")                         # never faults, even past the end
    read, locality, data_cache = (ir.Constant(i32, c) for c in (0, 3, 1))
    zero = ir.Constant(vty, [0.0] * LANES)
    entry = builder.block
    loop = builder.append_basic_block("lanes_dot.loop")
    done = builder.append_basic_block("lanes_dot.done")
    builder.cbranch(builder.icmp_signed(">", n_steps, ir.Constant(i64, 0)), loop, done)

    builder.position_at_end(loop)
    j = builder.phi(i64)
    acc = builder.phi(vty)
    start = builder.mul(j, ir.Constant(i64, LANES))
    ahead = builder.gep(v_ptr, [builder.add(start, ir.Constant(i64, LANES * PREFETCH_STEPS))])
    builder.call(prefetch, [builder.bitcast(ahead, i8p), read, locality, data_cache])
    v = builder.load(builder.bitcast(builder.gep(v_ptr, [start]), vty.as_pointer()),
                     align=_fty_bytes(fty))
    gathered = _gather_vector(builder, x_ptr, builder.gep(i_ptr, [start]), fty, bits)
    acc_next = builder.call(fmuladd, [v, gathered, acc])
    j_next = builder.add(j, ir.Constant(i64, 1))
    j.add_incoming(ir.Constant(i64, 0), entry)
    j.add_incoming(j_next, loop)
    acc.add_incoming(zero, entry)
    acc.add_incoming(acc_next, loop)
    builder.cbranch(builder.icmp_signed("<", j_next, n_steps), loop, done)

    builder.position_at_end(done)
    total = builder.phi(vty)
    total.add_incoming(zero, entry)
    total.add_incoming(acc_next, loop)
    return total


@intrinsic
def _lanes_dot(typingctx, x, values, index, offset, k, out, out_offset):
    """One block of the lanes layout: for ``l < LANES``, with ``p = offset + LANES j + l``,
    ``out[out_offset + l] = sum_{j < k} values[p] * x[index[p]]`` (``lanes_dot_loop``).

    x : [in] float; values : flat float slab; index : flat uint16/uint32 slab (``offset``
    a multiple of ``LANES``); out : [>= out_offset + LANES] float, one dtype throughout.
    ``k == 0`` writes zeros. No bounds checks.
    """
    arrays = (x, values, index, out)
    if not (all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                for a in arrays)
            and x.dtype == values.dtype == out.dtype and x.dtype in (types.float32,
                                                                       types.float64)
            and index.dtype in (types.uint16, types.uint32)):
        return None
    sig = types.void(x, values, index, types.intp, types.intp, out, types.intp)

    def codegen(context, builder, signature, args):
        xa, va, ia, off, k_steps, oa, ooff = args
        x_ptr = context.make_array(x)(context, builder, xa).data
        v_ptr = builder.gep(context.make_array(values)(context, builder, va).data, [off])
        i_ptr = builder.gep(context.make_array(index)(context, builder, ia).data, [off])
        o_ptr = builder.gep(context.make_array(out)(context, builder, oa).data, [ooff])
        fty = context.get_value_type(x.dtype)
        total = lanes_dot_loop(builder, x_ptr, v_ptr, i_ptr, k_steps, fty,
                               index.dtype.bitwidth)
        builder.store(total, builder.bitcast(o_ptr, total.type.as_pointer()),
                      align=_fty_bytes(fty))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _block_matvec(x, flat_values, flat_index, bias, y, b, k):
    """Block ``b``: ``y[r] = bias[r] + sum_j ...`` for its ``LANES`` rows ``r`` (padded)."""
    r0 = b * LANES
    _lanes_dot(x, flat_values, flat_index, r0 * k, k, y, r0)
    for r in range(r0, r0 + LANES):
        y[r] += bias[r]


@njit(cache=True, fastmath=FASTMATH)
def matvec_lanes(x, slab_values, slab_index, bias, y):
    """Batch 1 (or a few examples, one at a time):
    ``y[t, r] = sum_j values[r, j] * x[t, index[r, j]] + bias[r]``, serial.

    x : [B, in]; slab_values : [n_blocks, k, LANES]; slab_index : [n_blocks, k, LANES]
    uint16/uint32; bias : [n_blocks * LANES]; y : [B, n_blocks * LANES] (padded; written).
    Block by block, each block for every example while its values are in cache. Slow
    twin: ``tests/condensed/naive_condensed.py::forward``.
    """
    k = slab_values.shape[1]
    flat_values, flat_index = slab_values.reshape(-1), slab_index.reshape(-1)
    for b in range(slab_values.shape[0]):
        for t in range(x.shape[0]):
            _block_matvec(x[t], flat_values, flat_index, bias, y[t], b, k)


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def matvec_lanes_parallel(x, slab_values, slab_index, bias, y):
    """``matvec_lanes`` with the blocks split across threads (same per-block code)."""
    k = slab_values.shape[1]
    flat_values, flat_index = slab_values.reshape(-1), slab_index.reshape(-1)
    for b in prange(slab_values.shape[0]):
        for t in range(x.shape[0]):
            _block_matvec(x[t], flat_values, flat_index, bias, y[t], b, k)


def window_dot_loop(builder, x_ptr, n_in, v_ptr, o_ptr, s_ptr, n_steps, start, n_acc):
    """LLVM IR (code generation helper, not a kernel): ``n_steps`` steps of one group of
    ``n_acc`` blocks of the window layout; returns the ``n_acc`` accumulators.

    Step ``i`` works in the window of ``WINDOW`` inputs from ``s = s_ptr[i]`` (int32,
    ``s + WINDOW <= n_in`` unless ``s == 0``): ``x[s + o]``, ``o < WINDOW``, in two
    ``<16 x float>`` registers whose last slot (``PAD_OFFSET``) holds 0; then, for each of
    the ``n_acc`` blocks, one unit of the offset stream: 16 byte offsets, widened to i32,
    pick the 16 inputs from the two registers (one two-source permute); the lanes whose
    offset is not ``PAD_OFFSET`` take the next values of the value stream in turn (an
    expanding load, ``vexpandps``; the others 0), and one ``llvm.fmuladd`` adds the
    products. One flat loop over the steps: a new window costs two loads from ``x`` (in
    L1), not a branch. Both loads are masked to the inputs below ``n_in`` (all of a window
    when ``n_in >= WINDOW``), so ``x`` is read in place. Each unit prefetches the values
    ``WINDOW_PREFETCH`` past its own (a unit takes ~10 values, so every 64-byte line is
    prefetched): a value's address depends on the offsets before it, so without the
    prefetch the two streams' cache misses queue one behind the other. Units
    run from ``start`` (i64, in units of ``LANES``), values from ``v_ptr``; ``n_in`` and
    ``n_steps`` are i64. Each accumulator lane sums its row in stream order from +0.0.
    """
    i1, i8, i16, i32, i64 = (ir.IntType(b) for b in (1, 8, 16, 32, 64))
    f32 = ir.FloatType()
    vty, ity = ir.VectorType(f32, LANES), ir.VectorType(i32, LANES)
    bty, mty = ir.VectorType(i8, LANES), ir.VectorType(i1, LANES)
    mod = builder.module
    fmuladd = cgutils.get_or_insert_function(mod, ir.FunctionType(vty, [vty, vty, vty]),
                                             f"llvm.fmuladd.v{LANES}f32")
    permute = cgutils.get_or_insert_function(mod, ir.FunctionType(vty, [vty, ity, vty]),
                                             "llvm.x86.avx512.vpermi2var.ps.512")
    masked_load = cgutils.get_or_insert_function(
        mod, ir.FunctionType(vty, [f32.as_pointer(), i32, mty, vty]),
        f"llvm.masked.load.v{LANES}f32.p0")
    expand_load = cgutils.get_or_insert_function(
        mod, ir.FunctionType(vty, [f32.as_pointer(), mty, vty]),
        f"llvm.masked.expandload.v{LANES}f32")
    popcount = cgutils.get_or_insert_function(mod, ir.FunctionType(i16, [i16]),
                                              "llvm.ctpop.i16")
    i8p = i8.as_pointer()
    prefetch = cgutils.get_or_insert_function(
        mod, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
    read, locality, data_cache = (ir.Constant(i32, c) for c in (0, 3, 1))
    zero = ir.Constant(vty, [0.0] * LANES)
    pad = ir.Constant(bty, [PAD_OFFSET] * LANES)
    align = ir.Constant(i32, 4)

    def c(value):
        return ir.Constant(i64, value)

    def low_lanes(count):                                            # count in 0 .. LANES
        bits = builder.sub(builder.shl(c(1), count), c(1))
        return builder.bitcast(builder.trunc(bits, i16), mty)

    lo_n = _min(builder, n_in, c(LANES))
    hi_n = _min(builder, builder.sub(n_in, lo_n), c(WINDOW - LANES))  # slot PAD_OFFSET: 0
    lo_mask, hi_mask = low_lanes(lo_n), low_lanes(hi_n)

    entry = builder.block
    loop = builder.append_basic_block("window.step")
    done = builder.append_basic_block("window.done")
    builder.cbranch(builder.icmp_signed(">", n_steps, c(0)), loop, done)

    builder.position_at_end(loop)
    i, q, p = builder.phi(i64), builder.phi(i64), builder.phi(i64)    # step, unit, value
    accs = [builder.phi(vty) for _ in range(n_acc)]
    base = builder.gep(x_ptr, [builder.sext(builder.load(builder.gep(s_ptr, [i])), i64)])
    lo = builder.call(masked_load, [base, align, lo_mask, zero])
    hi = builder.call(masked_load, [builder.gep(base, [c(LANES)]), align, hi_mask, zero])
    new_accs, p_next = [], p
    for g, acc in enumerate(accs):
        unit = builder.mul(builder.add(q, c(g)), c(LANES))
        offsets = builder.load(builder.bitcast(builder.gep(o_ptr, [unit]), bty.as_pointer()),
                               align=1)
        picked = builder.call(permute, [lo, builder.zext(offsets, ity), hi])
        real = builder.icmp_unsigned("!=", offsets, pad)                 # <16 x i1>
        ahead = builder.gep(v_ptr, [builder.add(p_next, c(WINDOW_PREFETCH))])
        builder.call(prefetch, [builder.bitcast(ahead, i8p), read, locality, data_cache])
        v = builder.call(expand_load, [builder.gep(v_ptr, [p_next]), real, zero])
        taken = builder.call(popcount, [builder.bitcast(real, i16)])
        p_next = builder.add(p_next, builder.zext(taken, i64))
        new_accs.append(builder.call(fmuladd, [v, picked, acc]))
    i_next, q_next = builder.add(i, c(1)), builder.add(q, c(n_acc))
    builder.cbranch(builder.icmp_signed("<", i_next, n_steps), loop, done)
    i.add_incoming(c(0), entry)
    i.add_incoming(i_next, loop)
    q.add_incoming(start, entry)
    q.add_incoming(q_next, loop)
    p.add_incoming(c(0), entry)
    p.add_incoming(p_next, loop)
    for acc, new in zip(accs, new_accs):
        acc.add_incoming(zero, entry)
        acc.add_incoming(new, loop)

    builder.position_at_end(done)
    totals = []
    for new in new_accs:
        total = builder.phi(vty)
        total.add_incoming(zero, entry)
        total.add_incoming(new, loop)
        totals.append(total)
    return totals


def _min(builder, a, b):
    """LLVM IR: the smaller of the i64 values ``a`` and ``b`` (signed)."""
    return builder.select(builder.icmp_signed("<", a, b), a, b)


@intrinsic(prefer_literal=True)
def _window_dot(typingctx, x, values, offsets, step_input, steps_start, n_steps, start,
                value_start, n_acc, bias, out, row0):
    """One group of ``n_acc`` blocks of the window layout (``window_dot_loop``): for the
    group's rows ``r = row0 + LANES g + l`` below ``out.shape[0]``, ``out[r] = (sum of the
    row) + bias[r]``.

    x : [in] float32; values : flat float32 stream; offsets : flat uint8 stream (unit
    ``u`` at ``LANES u``); step_input : int32, the first input of each step, the group's
    ``n_steps`` from ``steps_start``; start : the group's first unit; value_start : its
    first value; n_acc : literal 1..4;
    bias : [>= row0 + LANES n_acc] float32 (padded); out : [n] float32 (rows past ``n`` are
    not stored). Needs AVX-512 (``vpermi2ps``). No bounds checks.
    """
    arrays = (x, values, offsets, step_input, bias, out)
    if not (isinstance(n_acc, types.IntegerLiteral) and 1 <= n_acc.literal_value <= 4
            and all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                    for a in arrays)
            and x.dtype == values.dtype == bias.dtype == out.dtype == types.float32
            and offsets.dtype == types.uint8 and step_input.dtype == types.int32):
        return None
    sig = types.void(x, values, offsets, step_input, types.intp, types.intp, types.intp,
                     types.intp, n_acc, bias, out, types.intp)

    def codegen(context, builder, signature, args):
        xa, va, oa, wa, s0, ns, u0, v0, _, ba, ya, r0 = args
        i16, i64 = ir.IntType(16), ir.IntType(64)

        def arr(aty, value):
            return _data(context, builder, aty, value)

        n_in = context.make_array(x)(context, builder, xa).nitems
        n_out = context.make_array(out)(context, builder, ya).nitems
        totals = window_dot_loop(
            builder, arr(x, xa), n_in, builder.gep(arr(values, va), [v0]), arr(offsets, oa),
            builder.gep(arr(step_input, wa), [s0]), ns, u0, n_acc.literal_value)
        vty = totals[0].type
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vty, vty.element.as_pointer(),
                                                            ir.IntType(32), _mask_type()]),
            f"llvm.masked.store.v{LANES}f32.p0")
        for g, total in enumerate(totals):
            first = builder.add(r0, ir.Constant(i64, LANES * g))
            b = builder.load(builder.bitcast(builder.gep(arr(bias, ba), [first]),
                                             vty.as_pointer()), align=4)
            kept = _min(builder, builder.sub(n_out, first), ir.Constant(i64, LANES))
            bits = builder.sub(builder.shl(ir.Constant(i64, 1), kept), ir.Constant(i64, 1))
            mask = builder.bitcast(builder.trunc(bits, i16), _mask_type())
            builder.call(store, [builder.fadd(total, b),
                                 builder.gep(arr(out, ya), [first]),
                                 ir.Constant(ir.IntType(32), 4), mask])
        return context.get_dummy_value()

    return sig, codegen


def _mask_type():
    """LLVM IR: the ``<LANES x i1>`` lane mask type."""
    return ir.VectorType(ir.IntType(1), LANES)


def _data(context, builder, aty, value):
    """LLVM IR: the data pointer of the Numba array ``value`` of type ``aty``."""
    return context.make_array(aty)(context, builder, value).data


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _group_dot(x, values, offsets, step_input, step_start, group_start, n_blocks, k, bias,
               y, q):
    """Group ``q`` (of ``GROUP`` blocks; fewer in the last) of a layer of fan-in ``k`` in
    the window layout into ``y`` (``_window_dot``); its values start at its first row's."""
    g = min(GROUP, n_blocks - q * GROUP)
    s0, u0, r0 = step_start[q], group_start[q], q * GROUP * LANES
    n_steps, v0 = step_start[q + 1] - s0, r0 * k
    if g == 4:
        _window_dot(x, values, offsets, step_input, s0, n_steps, u0, v0, 4, bias, y, r0)
    elif g == 3:
        _window_dot(x, values, offsets, step_input, s0, n_steps, u0, v0, 3, bias, y, r0)
    elif g == 2:
        _window_dot(x, values, offsets, step_input, s0, n_steps, u0, v0, 2, bias, y, r0)
    else:
        _window_dot(x, values, offsets, step_input, s0, n_steps, u0, v0, 1, bias, y, r0)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _group_matvec(x, values, offsets, step_input, step_start, group_start, bias, y, q):
    """Group ``q`` of ``matvec_windows`` for every example of ``x [B, in]`` into ``y``."""
    flat_offsets = offsets.reshape(-1)
    n_blocks, k = bias.shape[0] // LANES, values.shape[0] // y.shape[1]
    for t in range(x.shape[0]):
        _group_dot(x[t], values, flat_offsets, step_input, step_start, group_start,
                   n_blocks, k, bias, y[t], q)


@njit(cache=True, fastmath=FASTMATH)
def matvec_windows(x, values, offsets, step_input, step_start, group_start, bias, y):
    """Batch 1 (or a few examples, one at a time) in the window layout, serial:
    ``y[t, r] = sum_j values[r, j] * x[t, index[r, j]] + bias[r]``, bit for bit
    ``matvec_lanes``. Needs AVX-512.

    x : [B, in] or [in] float32; values : [n k] float32 (the nonzeros in stream order);
    offsets : [n_units, LANES] uint8; step_input : [n_steps] int32; step_start,
    group_start : [n_groups + 1] int64 (``matmul.window_layout``); bias : [n_blocks * LANES]
    float32 (padded); y : [B, n] or [n] float32 as ``x`` (written; exactly ``n`` columns,
    as ``k`` is taken to be ``values.size // n``). Group by group, each group for every
    example while its values are in cache. Slow twin:
    ``tests/condensed/naive_condensed.py::forward``.
    """
    rows, out = x.reshape((-1, x.shape[-1])), y.reshape((-1, y.shape[-1]))
    for q in range(group_start.shape[0] - 1):
        _group_matvec(rows, values, offsets, step_input, step_start, group_start, bias,
                      out, q)


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def matvec_windows_parallel(x, values, offsets, step_input, step_start, group_start, bias,
                            y):
    """``matvec_windows`` with the groups split across threads (same per-group code)."""
    rows, out = x.reshape((-1, x.shape[-1])), y.reshape((-1, y.shape[-1]))
    for q in prange(group_start.shape[0] - 1):
        _group_matvec(rows, values, offsets, step_input, step_start, group_start, bias,
                      out, q)


@njit(cache=True, inline="always")
def _window_walk(index, values, in_features, r0, m, fill, u0, s0, out_values, out_offsets,
                 step_input):
    """The steps of the rows ``r0 .. r0 + m`` (one group); returns how many.

    Each step starts at the smallest next index of the group's rows (clamped so that its
    ``WINDOW`` inputs lie below ``in_features``, or at 0), and every row whose next index
    falls in the window takes it; the other rows pad. When ``fill``, step ``t`` is written
    to ``step_input[s0 + t]``, its units' offsets to ``out_offsets[u0 + ceil(m / LANES) t
    + ...]`` (padding left as the caller filled it) and the values it takes, unit by unit
    and lane by lane, to ``out_values`` from ``r0 k`` on. index : [n, k] int64;
    values : [n, k].
    """
    k = index.shape[1]
    blocks = (m + LANES - 1) // LANES
    last = max(in_features - WINDOW, 0)
    taken = np.zeros(m, np.int64)                                    # next j of each row
    p = r0 * k                                                       # next value
    t = 0
    while True:
        s = in_features
        for i in range(m):
            if taken[i] < k:
                s = min(s, index[r0 + i, taken[i]])
        if s == in_features:
            return t
        s = min(s, last)
        for i in range(m):
            j = taken[i]
            if j < k and index[r0 + i, j] - s < WINDOW:
                if fill:
                    out_offsets[u0 + t * blocks + i // LANES, i % LANES] = index[r0 + i, j] - s
                    out_values[p] = values[r0 + i, j]
                    p += 1
                taken[i] = j + 1
        if fill:
            step_input[s0 + t] = s
        t += 1


@njit(cache=True)
def window_steps(index, in_features, steps):
    """``steps[q]``: the number of steps of group ``q`` of ``GROUP LANES`` rows
    (``_window_walk``). index : [n, k] int64; steps : [n_groups] int64 (written)."""
    rows = GROUP * LANES
    for q in range(steps.shape[0]):
        m = min(rows, index.shape[0] - q * rows)
        steps[q] = _window_walk(index, np.empty((0, 0), np.float32), in_features, q * rows,
                                m, False, 0, 0, np.empty(0, np.float32),
                                np.empty((0, LANES), np.uint8), np.empty(0, np.int32))


@njit(cache=True)
def window_fill(index, values, in_features, step_start, group_start, out_values,
                out_offsets, step_input):
    """Write the window layout's streams (``matmul.window_layout``) group by group.

    index : [n, k] int64; values : [n, k] float32; step_start, group_start :
    [n_groups + 1] int64 (from ``window_steps``); out_values : [n k] float32 (written);
    out_offsets : [n_units, LANES] uint8, ``PAD_OFFSET``; step_input : [n_steps] int32
    (written).
    """
    rows = GROUP * LANES
    for q in range(step_start.shape[0] - 1):
        m = min(rows, index.shape[0] - q * rows)
        _window_walk(index, values, in_features, q * rows, m, True, group_start[q],
                     step_start[q], out_values, out_offsets, step_input)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _add4(yr, x0, x1, x2, x3, v0, v1, v2, v3):
    """``yr[:] = yr + v0 x0 + v1 x1 + v2 x2 + v3 x3`` (one load and store of ``yr``)."""
    for t in range(yr.shape[0]):
        yr[t] = yr[t] + v0 * x0[t] + v1 * x1[t] + v2 * x2[t] + v3 * x3[t]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _add1(yr, xj, vj):
    """``yr[:] += vj xj``."""
    for t in range(yr.shape[0]):
        yr[t] += vj * xj[t]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _row_matmat(xT, values_r, index_r, bias_r, yr):
    """``yr[:] = bias_r + sum_j values_r[j] * xT[index_r[j], :]``, four nonzeros a pass.

    values_r : [k]; index_r : [k]; yr : [B]. ``_block_matmat`` sums in the same order.
    """
    k = values_r.shape[0]
    yr[:] = bias_r
    k4 = k - k % 4
    for j in range(0, k4, 4):
        _add4(yr, xT[index_r[j]], xT[index_r[j + 1]], xT[index_r[j + 2]],
              xT[index_r[j + 3]], values_r[j], values_r[j + 1], values_r[j + 2],
              values_r[j + 3])
    for j in range(k4, k):
        _add1(yr, xT[index_r[j]], values_r[j])


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _block_matmat(xT, slab_values, slab_index, bias, yT, b):
    """The rows ``LANES b ..`` (below ``n``) of ``matmat_lanes``: each row as ``_row_matmat``
    sums it, but the block's rows take turns every four nonzeros, so the four value and
    index lines in use serve all of them and their output rows stay in L1."""
    k = slab_values.shape[1]
    r0 = b * LANES
    m = min(LANES, yT.shape[0] - r0)
    for lane in range(m):
        yT[r0 + lane, :] = bias[r0 + lane]
    k4 = k - k % 4
    for j in range(0, k4, 4):
        v, c = slab_values[b, j:j + 4], slab_index[b, j:j + 4]         # [4, LANES]
        for lane in range(m):
            _add4(yT[r0 + lane], xT[c[0, lane]], xT[c[1, lane]], xT[c[2, lane]],
                  xT[c[3, lane]], v[0, lane], v[1, lane], v[2, lane], v[3, lane])
    for j in range(k4, k):
        for lane in range(m):
            _add1(yT[r0 + lane], xT[slab_index[b, j, lane]], slab_values[b, j, lane])


@njit(cache=True, fastmath=FASTMATH)
def matmat_lanes(xT, slab_values, slab_index, bias, yT):
    """Batched, feature-major: ``yT[r, b] = bias[r] + sum_j values[r, j] * xT[index[r, j], b]``.

    xT : [in, B]; slab_values, slab_index : [n_blocks, k, LANES] (lanes layout); bias :
    [>= n]; yT : [n, B] (written; padding rows skipped). Serial. Bit for bit the row-major
    ``matmat_rows``. Slow twin: ``naive_condensed.forward``.
    """
    for b in range(slab_values.shape[0]):
        _block_matmat(xT, slab_values, slab_index, bias, yT, b)


@njit(cache=True, fastmath=FASTMATH, parallel=True)
def matmat_lanes_parallel(xT, slab_values, slab_index, bias, yT):
    """``matmat_lanes`` with the blocks split across threads (same per-block code)."""
    for b in prange(slab_values.shape[0]):
        _block_matmat(xT, slab_values, slab_index, bias, yT, b)


@njit(cache=True)
def transpose(x, xT):
    """``xT[:] = x.T`` in 32 x 32 tiles. x : [B, in]; xT : [in, B].

    Reads run along rows of ``x``; ``np.ascontiguousarray(x.T)`` reads with a stride of a
    whole row, which thrashes L1 sets at widths like 3072.
    """
    n0, n1 = x.shape
    for i0 in range(0, n0, 32):
        for j0 in range(0, n1, 32):
            for i in range(i0, min(i0 + 32, n0)):
                for j in range(j0, min(j0 + 32, n1)):
                    xT[j, i] = x[i, j]


@njit(cache=True, fastmath=FASTMATH)
def backward_dx(dyT, values, index, dxT):
    """Input gradient, scattered: ``dxT[index[r, j], :] += values[r, j] * dyT[r, :]``.

    dyT : [n, B]; values : [n, k]; index : [n, k]; dxT : [in, B], zeroed by the caller.
    Serial (rows scatter into shared inputs). Slow twin: ``naive_condensed.backward``.
    """
    k = values.shape[1]
    for r in range(values.shape[0]):
        dyr = dyT[r]
        for j in range(k):
            dxr = dxT[index[r, j]]
            vj = values[r, j]
            for t in range(dyr.shape[0]):
                dxr[t] += vj * dyr[t]


@njit(cache=True, fastmath=FASTMATH)
def backward_dvalues(dyT, xT, index, dvalues):
    """Value gradient: ``dvalues[r, j] = sum_b dyT[r, b] * xT[index[r, j], b]``.

    dyT : [n, B]; xT : [in, B]; index : [n, k]; dvalues : [n, k] (written).
    Slow twin: ``naive_condensed.backward``.
    """
    for r in range(dvalues.shape[0]):
        dyr = dyT[r]
        for j in range(dvalues.shape[1]):
            xr = xT[index[r, j]]
            s = dvalues.dtype.type(0)
            for t in range(dyr.shape[0]):
                s += dyr[t] * xr[t]
            dvalues[r, j] = s


# --------------------------------------------------------------------------------------
# Training in condensed form (``training.py``): full-width outputs, ablated rows = bias.
#
# A layer being trained keeps every neuron's output, ``yT [out, B]``: the ``n_active``
# active neurons ``rows[r]`` are computed, an ablated neuron outputs its bias (what the
# masked-dense layer computes for an all-zero row), so the next layer's inputs and the
# bias gradients equal the masked engine's. ``rows`` is ascending and duplicate-free, so
# the rows written by different ``r`` never overlap.
#
# The backward allows reassociation (``fastmath={"contract", "reassoc"}``) so that the
# dot product over the batch (``dvalues``) vectorises. The order is then the compiler's,
# fixed for a given build; results agree with the masked engine to rounding.
#
# Serial only: a parallel region on a shared machine waits for descheduled threads, and the
# backward's scatter into shared inputs does not split by rows (bench/README.md).

TRAIN_BACKWARD_FASTMATH = {"contract", "reassoc"}


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _fill_bias_rows(bias, yT, o):
    """``yT[o, :] = bias[o]``."""
    yo = yT[o]
    for t in range(yo.shape[0]):
        yo[t] = bias[o]


@njit(cache=True, fastmath=FASTMATH)
def matmat_rows(xT, values, index, rows, bias, yT):
    """Full-width batched forward: ``yT[o] = bias[o]`` for every neuron ``o``, and for the
    active ones ``yT[rows[r], b] = bias[rows[r]] + sum_j values[r, j] * xT[index[r, j], b]``.

    xT : [in, B]; values : [n_active, k]; index : [n_active, k] uint16/uint32;
    rows : [n_active] int64, ascending, in [0, out); bias : [out]; yT : [out, B] (written).
    Slow twin: ``tests/train/test_condensed_engine.py::naive_forward``.
    """
    for o in range(yT.shape[0]):
        _fill_bias_rows(bias, yT, o)
    for r in range(values.shape[0]):
        _row_matmat(xT, values[r], index[r], bias[rows[r]], yT[rows[r]])


@njit(cache=True, fastmath=TRAIN_BACKWARD_FASTMATH, inline="always")
def _dot_axpy(dyr, xr, vj, dxr, need_dx):
    """``sum_t dyr[t] * xr[t]`` over ``t < dyr.shape[0]`` and, if ``need_dx``, ``dxr[t] +=
    vj * dyr[t]`` in the same pass (``xr``, ``dxr`` at least as long as ``dyr``)."""
    s = dyr.dtype.type(0)
    if need_dx:
        for t in range(dyr.shape[0]):
            s += dyr[t] * xr[t]
            dxr[t] += vj * dyr[t]
    else:
        for t in range(dyr.shape[0]):
            s += dyr[t] * xr[t]
    return s


@njit(cache=True, fastmath=TRAIN_BACKWARD_FASTMATH, inline="always")
def _row_backward(dyT, xT, values, index, rows, r, dxT, dvalues, need_dx):
    """Row ``r``: ``dvalues[r, j] = sum_b dyT[rows[r], b] * xT[index[r, j], b]`` and, if
    ``need_dx``, ``dxT[index[r, j], :] += values[r, j] * dyT[rows[r], :]``, one pass per j."""
    dyr = dyT[rows[r]]
    for j in range(values.shape[1]):
        c = index[r, j]
        dvalues[r, j] = _dot_axpy(dyr, xT[c], values[r, j], dxT[c if need_dx else 0],
                                  need_dx)


@njit(cache=True, fastmath=TRAIN_BACKWARD_FASTMATH)
def backward_rows(dyT, xT, values, index, rows, dxT, dvalues, need_dx):
    """Backward of ``matmat_rows`` (without the bias gradient), serial.

    dyT : [out, B]; xT : [in, B]; values : [n_active, k]; index : [n_active, k];
    rows : [n_active]; dxT : [in, B], zeroed by the caller (untouched when ``need_dx`` is
    False); dvalues : [n_active, k] (written); need_dx : bool. Rows of ``dyT`` of ablated
    neurons are never read. Slow twin: ``tests/train/test_condensed_engine.py::naive_backward``.
    """
    for r in range(values.shape[0]):
        _row_backward(dyT, xT, values, index, rows, r, dxT, dvalues, need_dx)


# Condensed convolution (``CondensedTrainConv2d``), one image at a time like the direct
# kernels of ``nn/_kernels.py``. The zero-padded image ``x_pad [C, Hp, Wp]`` (``Hp = H + 2
# padding``) is split by the stride ``s`` into ``s * s`` phase images per channel, flat:
#
#     xph[((c * s + a) * s + d) * Hq * Wq + u * Wq + v] = x_pad[c, u * s + a, v * s + d]
#
# (``Hq = ceil(Hp / s)``, ``Wq = ceil(Wp / s)``, 0 off ``x_pad``), so the tap ``(c, p, q)``
# of output ``(i, j)``, ``x_pad[c, i * s + p, j * s + q]``, is ``xph[off + i * Wq + j]`` with
# the tap's offset
#
#     off = ((c * s + p % s) * s + q % s) * Hq * Wq + (p // s) * Wq + q // s.
#
# Outputs are computed on the "wide" grid ``t = i * Wq + j``, ``t < n_t = (oh - 1) * Wq +
# ow``: a tap is one contiguous vector ``xph[off:off + n_t]`` (inside its phase image), the
# inner loops run over ``t`` (long, unit stride, vectorised) and the columns ``j >= ow`` are
# computed and dropped (``dy`` is 0 there in the backward). With stride 1 the phase image
# is the padded image of the direct kernels. Each output element sums its taps in the
# order ``u = 0 .. k - 1`` (four a pass, as ``_row_matmat``); the backward's dot products
# over ``t`` are reassociated (vectorised) and summed image by image in batch order.
# Serial, as the linear training kernels.


@njit(cache=True, inline="always")
def _phase_copy(img, b, stride, padding, hq, wq, ph, into_phases):
    """Copy image ``img[b]`` [C, H, W] into its positions of the phase images ``ph``
    [C * s * s * Hq * Wq] (``into_phases``), or back from them into ``img[b]``; the other
    entries of ``ph`` are not touched. Stride 1 copies contiguous rows."""
    n_chan, height, width = img.shape[1], img.shape[2], img.shape[3]
    s, plane = stride, hq * wq
    for c in range(n_chan):
        for h in range(height):
            hp = h + padding
            row = (c * s + hp % s) * s * plane + (hp // s) * wq
            line = img[b, c, h]                         # [W]
            if s == 1:
                dst = ph[row + padding:]
                for w in range(width):
                    if into_phases:
                        dst[w] = line[w]
                    else:
                        line[w] = dst[w]
                continue
            for d in range(s):
                w0 = (d - padding) % s                  # first w with (w + padding) % s == d
                start = row + d * plane + (w0 + padding) // s
                for m in range((width - w0 + s - 1) // s):
                    if into_phases:
                        ph[start + m] = line[w0 + m * s]
                    else:
                        line[w0 + m * s] = ph[start + m]


@njit(cache=True, inline="always")
def _wide_copy(plane, wide, wq, to_wide):
    """Between an output plane ``plane`` [oh, ow] and its wide row ``wide`` [>= (oh - 1) *
    wq + ow] (``wide[i * wq + j] = plane[i, j]``): into ``wide`` if ``to_wide``, else out."""
    ow = plane.shape[1]
    for i in range(plane.shape[0]):
        line, w = plane[i], wide[i * wq:]
        for j in range(ow):
            if to_wide:
                w[j] = line[j]
            else:
                line[j] = w[j]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _row_taps(xph, values_r, offsets_r, bias_r, acc):
    """``acc[t] = bias_r + sum_u values_r[u] * xph[offsets_r[u] + t]`` for ``t <
    acc.shape[0]``, four taps a pass (``_row_matmat``'s order)."""
    n, k = acc.shape[0], values_r.shape[0]
    acc[:] = bias_r
    k4 = k - k % 4
    for j in range(0, k4, 4):
        o0, o1, o2, o3 = offsets_r[j], offsets_r[j + 1], offsets_r[j + 2], offsets_r[j + 3]
        _add4(acc, xph[o0:o0 + n], xph[o1:o1 + n], xph[o2:o2 + n], xph[o3:o3 + n],
              values_r[j], values_r[j + 1], values_r[j + 2], values_r[j + 3])
    for j in range(k4, k):
        _add1(acc, xph[offsets_r[j]:offsets_r[j] + n], values_r[j])


@njit(cache=True, fastmath=FASTMATH)
def conv_rows(x, values, offsets, rows, bias, stride, padding, hq, wq, y):
    """Full-width forward of a condensed convolution: for every image ``b`` and active
    channel ``o = rows[r]``, ``y[b, o, i, j] = bias[o] + sum_u values[r, u] * x_pad[b, c_u,
    i * s + p_u, j * s + q_u]`` (tap ``u`` at ``offsets[r, u]``, block comment above);
    ``y[b, o] = bias[o]`` for an ablated ``o``.

    x : [B, C, H, W]; values : [n_active, k]; offsets : [n_active, k] int64; rows :
    [n_active] int64, ascending; bias : [O]; stride, padding, hq, wq : int; y : [B, O, oh,
    ow] (written). Slow twin: ``tests/nn/naive_layers.py::conv2d`` of the scattered weight.
    """
    n_out, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    n_t = (oh - 1) * wq + ow
    xph = np.zeros(x.shape[1] * stride * stride * hq * wq, x.dtype)
    acc = np.empty(n_t, x.dtype)                      # one channel's wide output
    for b in range(x.shape[0]):
        _phase_copy(x, b, stride, padding, hq, wq, xph, True)
        r = 0
        for o in range(n_out):
            if r < rows.shape[0] and rows[r] == o:
                _row_taps(xph, values[r], offsets[r], bias[o], acc)
                _wide_copy(y[b, o], acc, wq, False)
                r += 1
            else:
                yo = y[b, o]
                for i in range(oh):
                    for j in range(ow):
                        yo[i, j] = bias[o]


@njit(cache=True, fastmath=TRAIN_BACKWARD_FASTMATH)
def conv_backward_rows(x, dy, values, offsets, rows, stride, padding, hq, wq, dx, dvalues,
                       need_dx):
    """Backward of ``conv_rows`` (without the bias gradient), serial: ``dvalues[r, u] =
    sum_{b, i, j} dy[b, rows[r], i, j] * x_pad[b, c_u, i * s + p_u, j * s + q_u]`` and, if
    ``need_dx``, ``dx[b, c, h, w]`` = the sum of ``values[r, u] * dy[b, rows[r], i, j]``
    over the taps ``u`` and outputs ``(i, j)`` that read ``x[b, c, h, w]``.

    x : [B, C, H, W]; dy : [B, O, oh, ow]; values, offsets, rows as ``conv_rows``; dx :
    [B, C, H, W] (written; untouched when ``need_dx`` is False); dvalues : [n_active, k]
    (written); need_dx : bool. Channels of ``dy`` of ablated rows are never read. Slow
    twin: ``tests/train/test_condensed_engine.py::naive_conv_backward``.
    """
    oh, ow = dy.shape[2], dy.shape[3]
    n_t = (oh - 1) * wq + ow
    size = x.shape[1] * stride * stride * hq * wq
    xph = np.zeros(size, x.dtype)
    dxph = np.zeros(size, x.dtype)
    dyw = np.zeros(n_t, x.dtype)                      # one channel's wide dy, 0 for j >= ow
    dvalues[:] = 0
    for b in range(x.shape[0]):
        _phase_copy(x, b, stride, padding, hq, wq, xph, True)
        if need_dx:
            dxph[:] = 0
        for r in range(rows.shape[0]):
            _wide_copy(dy[b, rows[r]], dyw, wq, True)
            for j in range(values.shape[1]):
                off = offsets[r, j]
                dvalues[r, j] += _dot_axpy(dyw, xph[off:off + n_t], values[r, j],
                                           dxph[off:off + n_t], need_dx)
        if need_dx:
            _phase_copy(dx, b, stride, padding, hq, wq, dxph, False)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _dense_matvec(params, buf, n, k, wo, bo, io, oo):
    """``buf[oo + r] = sum_j params[wo + r k + j] buf[io + j] + params[bo + r]``, ``r < n``:
    a dense layer of ``mlp_matvec_*`` (four partial sums)."""
    zero = params.dtype.type(0)
    for r in range(n):
        w0 = wo + r * k
        s0 = s1 = s2 = s3 = zero
        k4 = k - k % 4
        for j in range(0, k4, 4):
            s0 += params[w0 + j] * buf[io + j]
            s1 += params[w0 + j + 1] * buf[io + j + 1]
            s2 += params[w0 + j + 2] * buf[io + j + 2]
            s3 += params[w0 + j + 3] * buf[io + j + 3]
        for j in range(k4, k):
            s0 += params[w0 + j] * buf[io + j]
        buf[oo + r] = (s0 + s1) + (s2 + s3) + params[bo + r]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _relu(buf, start, stop):
    """``buf[start:stop] = max(buf[start:stop], 0)``."""
    zero = buf.dtype.type(0)
    for r in range(start, stop):
        if buf[r] < zero:
            buf[r] = zero


@njit(cache=True, fastmath=FASTMATH)
def mlp_matvec_lanes(x, params, index, layout, buf):
    """A whole chain of linear layers at batch 1, in one call (``condensed/model.py``).

    x : [n_in] float32, the input; params : float32, every layer's weights and biases
    flattened; index : uint16 or uint32, every condensed layer's ``slab_index`` flattened;
    buf : float32 scratch holding the input (at 0) and every layer's output; layout : int64
    [n_layers, >= 10], per layer ``kind`` (0 condensed, 1 dense), ``n`` (outputs), ``k``
    (condensed: fan-in; dense: inputs), ``n_blocks`` (condensed: lanes blocks, whose
    ``LANES * n_blocks`` padded outputs the layer's space in ``buf`` and its bias hold),
    the offsets of the slab values / dense weight ``[n, k]`` in ``params``, of the slab
    index in ``index``, of the bias in ``params``, ``relu`` (0/1), and the offsets of the
    layer's input and output in ``buf``.

    Condensed blocks run ``_block_matvec`` (bit for bit ``matvec_lanes``); dense rows sum
    in four partial sums. Slow twin: ``naive_condensed.forward`` layer by layer, relu
    between (``tests/condensed/test_model.py``).
    """
    buf[:x.shape[0]] = x
    for li in range(layout.shape[0]):
        kind, n, k, n_blocks = layout[li, 0], layout[li, 1], layout[li, 2], layout[li, 3]
        vo, wo, bo, relu = layout[li, 4], layout[li, 5], layout[li, 6], layout[li, 7]
        io, oo = layout[li, 8], layout[li, 9]
        if kind == 0:
            n_pad = n_blocks * LANES
            xin, y = buf[io:], buf[oo:oo + n_pad]
            flat_values = params[vo:vo + n_pad * k]
            flat_index = index[wo:wo + n_pad * k]
            bias = params[bo:bo + n_pad]
            for b in range(n_blocks):
                _block_matvec(xin, flat_values, flat_index, bias, y, b, k)
        else:
            _dense_matvec(params, buf, n, k, vo, bo, io, oo)
        if relu != 0:
            _relu(buf, oo, oo + n)


@njit(cache=True, fastmath=FASTMATH)
def mlp_matvec_windows(x, params, index, steps, layout, buf):
    """``mlp_matvec_lanes`` with the condensed layers in the window layout (AVX-512 CPUs),
    bit for bit the same.

    As ``mlp_matvec_lanes``, except: a condensed layer's values in ``params`` are its value
    stream (``matmul.window_layout``); ``index`` is uint8 and holds its offset stream (from
    ``layout[li, 5]``); steps : int32, holds from ``layout[li, 10]`` its ``group_start``
    and ``step_start`` (``n_groups + 1`` each, ``n_groups = ceil(n_blocks / GROUP)``), then
    its ``step_input``; ``layout[li, 11]`` is its number of inputs; its bias holds
    ``LANES * n_blocks`` entries (padded) but only ``n`` outputs are written.
    """
    buf[:x.shape[0]] = x
    for li in range(layout.shape[0]):
        kind, n, k, n_blocks = layout[li, 0], layout[li, 1], layout[li, 2], layout[li, 3]
        vo, wo, bo, relu = layout[li, 4], layout[li, 5], layout[li, 6], layout[li, 7]
        io, oo, so, n_in = layout[li, 8], layout[li, 9], layout[li, 10], layout[li, 11]
        if kind == 0:
            n_groups = (n_blocks + GROUP - 1) // GROUP
            group_start = steps[so:so + n_groups + 1]
            step_start = steps[so + n_groups + 1:so + 2 * n_groups + 2]
            step_input = steps[so + 2 * n_groups + 2:]
            bias = params[bo:bo + n_blocks * LANES]
            for q in range(n_groups):
                _group_dot(buf[io:io + n_in], params[vo:], index[wo:], step_input,
                           step_start, group_start, n_blocks, k, bias, buf[oo:oo + n], q)
        else:
            _dense_matvec(params, buf, n, k, vo, bo, io, oo)
        if relu != 0:
            _relu(buf, oo, oo + n)
