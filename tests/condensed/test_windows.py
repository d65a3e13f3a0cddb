"""The window-permute batch-1 kernel: bit for bit the lanes kernel, IEEE propagation, layout."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srigl_ref.condensed import condense, matmul
from srigl_ref.condensed import _kernels as K

pytestmark = pytest.mark.skipif(
    not matmul.WINDOW_KERNEL,
    reason="Numba's target CPU lacks AVX-512 (AVX512F/VL): the window kernel cannot run")

# Window edges: 1 input, a window minus / exactly / plus one, not a multiple of WINDOW or of
# 32, the largest uint16 layer (65536 inputs) and a uint32 one.
EDGE_IN = (1, K.WINDOW - 1, K.WINDOW, K.WINDOW + 1, 32, 2 * K.WINDOW + 5, 1000, 65535, 65536,
           70001)


@st.composite
def window_layers(draw):
    """``(values, indices, bias, x)``: float32, rows ascending, x [B, in], B in 1..8.

    Row counts cover partial blocks and partial groups (1..3 blocks in the last group);
    narrow rows over wide inputs leave long stretches of inputs no row of a group reads.
    """
    n_in = draw(st.one_of(st.integers(1, 200), st.sampled_from(EDGE_IN)))
    n = draw(st.one_of(st.integers(1, 40), st.sampled_from(
        [K.LANES * b + d for b in range(1, 2 * K.GROUP + 1) for d in (-1, 0, 1)])))
    k = draw(st.integers(1, min(n_in, 64)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):                       # rows crowded into a few windows
        span = min(n_in, max(k, draw(st.integers(1, 3)) * K.WINDOW))
        lo = int(rng.integers(0, n_in - span + 1))
        indices = np.sort([lo + rng.choice(span, k, replace=False) for _ in range(n)], axis=1)
    else:
        indices = np.sort([rng.choice(n_in, k, replace=False) for _ in range(n)], axis=1)
    values = rng.standard_normal((n, k)).astype(np.float32)
    values[rng.random((n, k)) < 0.1] = 0.0                           # active zeros
    bias = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((draw(st.integers(1, matmul.SMALL_BATCH)), n_in)).astype(
        np.float32)
    return values, indices.astype(np.int64), bias, x


def lanes_and_windows(values, indices, bias, x, parallel=False):
    """``(y_lanes, y_windows)``, both [B, n], from the two batch-1 kernels."""
    n, n_in = values.shape[0], x.shape[1]
    slab_values, slab_index = matmul.lanes_layout(values, indices, n_in)
    windows = matmul.window_layout(values, indices, n_in)
    padded_bias = matmul.padded_rows(bias)
    y_lanes = np.empty((x.shape[0], padded_bias.size), np.float32)
    K.matvec_lanes(x, slab_values, slab_index, padded_bias, y_lanes)
    y_windows = np.full((x.shape[0], n), np.nan, np.float32)
    kernel = K.matvec_windows_parallel if parallel else K.matvec_windows
    kernel(x, *windows, padded_bias, y_windows)
    return y_lanes[:, :n], y_windows


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@settings(max_examples=150, deadline=None)
@given(window_layers())
def test_windows_kernel_bit_for_bit_lanes_kernel(layer):
    y_lanes, y_windows = lanes_and_windows(*layer)
    assert same_bits(y_lanes, y_windows)


@settings(max_examples=60, deadline=None)
@given(window_layers(), st.integers(0, 2**32 - 1))
def test_inf_and_nan_reach_exactly_the_rows_that_read_them(layer, seed):
    values, indices, bias, x = layer
    rng = np.random.default_rng(seed)
    bad = rng.choice(x.shape[1], size=min(3, x.shape[1]), replace=False)
    x = x.copy()
    x[:, bad] = np.array([np.inf, -np.inf, np.nan][:bad.size], np.float32)
    y_lanes, y_windows = lanes_and_windows(values, indices, bias, x)
    assert same_bits(y_lanes, y_windows)
    reads_bad = np.isin(indices, bad).any(axis=1)                    # [n]
    assert np.isfinite(y_windows[:, ~reads_bad]).all()
    assert not np.isfinite(y_windows[:, reads_bad]).any()


def test_rows_with_an_empty_window_next_to_an_inf():
    # block-mates fill window 0 while row 1 reads only window 1: its padded steps in
    # window 0 must not multiply 0 by the inf there
    n_in = 2 * K.WINDOW
    indices = np.array([[0, 1, 2], [K.WINDOW, K.WINDOW + 1, K.WINDOW + 2]] * 8)
    values = np.ones(indices.shape, np.float32)
    x = np.zeros((1, n_in), np.float32)
    x[0, :K.WINDOW] = np.inf
    y_lanes, y_windows = lanes_and_windows(values, indices, np.zeros(16, np.float32), x)
    assert same_bits(y_lanes, y_windows)
    np.testing.assert_array_equal(y_windows[0, 1::2], 0.0)
    assert np.isinf(y_windows[0, ::2]).all()


def test_last_window_moved_back_reads_no_input_for_the_rows_that_pad():
    # the last window starts at in - WINDOW, before the smallest next index (35): the
    # inf inputs it spans are taken by no row, and padded lanes read the zero slot
    n_in = 40
    indices = np.array([[35, 36, 39], [0, 37, 38]] * 8)
    values = np.ones(indices.shape, np.float32)
    x = np.ones((1, n_in), np.float32)
    x[0, 1:35] = np.inf
    w = matmul.window_layout(values, indices, n_in)
    assert list(w.step_input) == [0, n_in - K.WINDOW, n_in - K.WINDOW, n_in - K.WINDOW]
    y_lanes, y_windows = lanes_and_windows(values, indices, np.zeros(16, np.float32), x)
    assert same_bits(y_lanes, y_windows)
    np.testing.assert_array_equal(y_windows, 3.0)


@settings(max_examples=25, deadline=None)
@given(window_layers())
def test_parallel_build_equals_serial(layer):
    assert numba.get_num_threads() >= 1
    _, serial = lanes_and_windows(*layer)
    _, parallel = lanes_and_windows(*layer, parallel=True)
    assert same_bits(serial, parallel)


def sliding_steps(indices, n_in):
    """Per group, the greedy sliding-start schedule, step by step in plain Python:
    ``[(start, [(row, j) taken]), ...]``."""
    n, k = indices.shape
    rows = K.GROUP * K.LANES
    groups = []
    for r0 in range(0, n, rows):
        taken = dict.fromkeys(range(r0, min(n, r0 + rows)), 0)
        steps = []
        while any(j < k for j in taken.values()):
            s = min(int(indices[r, j]) for r, j in taken.items() if j < k)
            s = min(s, max(n_in - K.WINDOW, 0))
            took = [(r, j) for r, j in taken.items()
                    if j < k and s <= indices[r, j] < s + K.WINDOW]
            for r, j in took:
                taken[r] = j + 1
            steps.append((s, took))
        groups.append(steps)
    return groups


@settings(max_examples=40, deadline=None)
@given(window_layers(), st.booleans())
def test_window_layout_is_the_sliding_schedule(layer, shuffle):
    values, indices, _, x = layer
    if shuffle:                     # any order within a row: still taken in order j
        rng = np.random.default_rng(indices.size)
        perm = rng.permuted(np.tile(np.arange(indices.shape[1]), (indices.shape[0], 1)),
                            axis=1)
        values, indices = (np.take_along_axis(a, perm, axis=1) for a in (values, indices))
    n_in = x.shape[1]
    w = matmul.window_layout(values, indices, n_in)
    n_blocks = -(-values.shape[0] // K.LANES)
    want_values = np.zeros(w.offsets.shape, np.float32)
    want_offsets = np.full_like(w.offsets, K.PAD_OFFSET)
    for q, steps in enumerate(sliding_steps(indices, n_in)):
        blocks = min(K.GROUP, n_blocks - q * K.GROUP)
        assert w.step_start[q + 1] - w.step_start[q] == len(steps)
        assert w.group_start[q + 1] - w.group_start[q] == blocks * len(steps)
        starts = w.step_input[w.step_start[q]:w.step_start[q + 1]]
        np.testing.assert_array_equal(starts, [s for s, _ in steps])
        assert (starts >= 0).all() and ((starts + K.WINDOW <= n_in) | (starts == 0)).all()
        for t, (s, took) in enumerate(steps):
            for r, j in took:
                block, lane = divmod(r - q * K.GROUP * K.LANES, K.LANES)
                unit = w.group_start[q] + t * blocks + block
                want_values[unit, lane] = values[r, j]
                want_offsets[unit, lane] = indices[r, j] - s
    assert w.step_start[0] == w.group_start[0] == 0
    assert w.step_start[-1] == w.step_input.size and w.group_start[-1] == w.offsets.shape[0]
    real = want_offsets != K.PAD_OFFSET                               # each nonzero once
    assert real.sum() == values.size
    np.testing.assert_array_equal(w.offsets, want_offsets)
    assert same_bits(w.values, want_values[real])      # unit by unit, lane by lane


@settings(max_examples=40, deadline=None)
@given(window_layers())
def test_any_order_within_a_row_is_bit_for_bit_the_lanes_kernel(layer):
    values, indices, bias, x = layer
    rng = np.random.default_rng(indices.size)
    perm = rng.permuted(np.tile(np.arange(indices.shape[1]), (indices.shape[0], 1)), axis=1)
    values, indices = (np.take_along_axis(a, perm, axis=1) for a in (values, indices))
    y_lanes, y_windows = lanes_and_windows(values, indices, bias, x)
    assert same_bits(y_lanes, y_windows)


def test_condensed_linear_runs_the_window_kernel_at_small_batches(rng):
    mask = np.zeros((70, 300), bool)
    for r in range(70):
        mask[r, rng.choice(300, 30, replace=False)] = True
    layer = condense(rng.standard_normal((70, 300)), mask, rng.standard_normal(70))
    x = rng.standard_normal((3, 300)).astype(np.float32)
    assert "_windows" not in vars(layer)                             # built on first use
    y = layer(x)
    assert "_windows" in vars(layer) and "_lanes" not in vars(layer)
    ref = matmul.forward(x, layer._slab_values, layer._slab_index, layer._bias, 70)
    assert same_bits(y, np.ascontiguousarray(ref))
    assert same_bits(layer(x[0]), ref[0])
    out = np.empty(70, np.float32)
    assert layer(x[1], out=out) is out and same_bits(out, ref[1])


def test_out_is_checked(rng):
    mask = np.zeros((20, 40), bool)
    mask[:, :4] = True
    layer = condense(rng.standard_normal((20, 40)), mask)
    x = rng.standard_normal(40).astype(np.float32)
    with pytest.raises(ValueError, match=r"out.shape == \(19,\), must be \(20,\)"):
        layer(x, out=np.empty(19, np.float32))
    with pytest.raises(TypeError, match="out must be a writeable C-contiguous float32"):
        layer(x, out=np.empty(20, np.float64))
    with pytest.raises(ValueError, match="at most matmul.SMALL_BATCH"):
        layer(np.ones((9, 40), np.float32), out=np.empty((9, 20), np.float32))


def test_sparse_wide_layers_keep_the_lanes_kernel(rng):
    # k WINDOW < WINDOW_MIN_NONZEROS in: about one nonzero per row in 16 windows
    n_in, k = 31 * 32, 2
    mask = np.zeros((20, n_in), bool)
    for r in range(20):
        mask[r, rng.choice(n_in, k, replace=False)] = True
    layer = condense(rng.standard_normal((20, n_in)), mask)
    assert not matmul.use_windows(k, n_in) and matmul.use_windows(64, n_in)
    y = layer(rng.standard_normal(n_in).astype(np.float32))
    assert "_windows" not in vars(layer) and "_lanes" in vars(layer) and y.shape == (20,)


def test_window_kernel_switch_turns_it_off(rng, monkeypatch):
    mask = np.zeros((20, 62), bool)
    mask[:, :31] = True
    layer = condense(rng.standard_normal((20, 62)), mask)
    monkeypatch.setattr(matmul, "WINDOW_KERNEL", False)
    layer(np.ones(62, np.float32))
    assert "_windows" not in vars(layer) and "_lanes" in vars(layer)
    monkeypatch.setattr(matmul, "WINDOW_KERNEL", True)
    layer(np.ones(62, np.float32))
    assert "_windows" in vars(layer)
