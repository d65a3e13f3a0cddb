"""condensed_matmul, its backward and the kernels: naive twins, serial == parallel, gradcheck."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from srigl_ref.condensed import (condense, condensed_matmul, condensed_matmul_backward,
                                 matmul)
from srigl_ref.condensed import _kernels as K

from ..gradcheck import check_gradient
from . import naive_condensed as naive


@st.composite
def operands(draw, max_n=6, max_in=30):
    """``(x, values, indices)``: x [in] or [B, in] (C or F order), float32 or float64."""
    n_in = draw(st.integers(1, max_in))
    n = draw(st.integers(0, max_n))
    k = draw(st.integers(0 if n == 0 else 1, n_in))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    indices = np.sort(np.array([rng.choice(n_in, k, replace=False) for _ in range(n)],
                               dtype=np.int32).reshape(n, k), axis=1)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    values = rng.standard_normal((n, k)).astype(dtype)
    batch = draw(st.sampled_from([None, 1, 3, 17]))
    x = rng.standard_normal(n_in if batch is None else (batch, n_in)).astype(
        draw(st.sampled_from([np.float32, np.float64])))
    if batch and draw(st.booleans()):
        x = np.asfortranarray(x)
    return x, values, indices


@given(operands())
def test_condensed_matmul_matches_naive_twin(ops):
    x, values, indices = ops
    y = condensed_matmul(x, values, indices)
    ref = naive.forward(x, values, indices, np.zeros(values.shape[0]))
    assert y.shape == ref.shape and y.dtype == np.result_type(x, values)
    scale = naive.forward(np.abs(x), np.abs(values), indices, np.zeros(values.shape[0]))
    eps = np.finfo(y.dtype).eps
    assert np.all(np.abs(y - ref) <= 4 * (values.shape[1] + 1) * eps * scale)


@given(operands())
def test_backward_matches_naive_twin(ops):
    x, values, indices = ops
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(x.shape[:-1] + (values.shape[0],)).astype(values.dtype)
    dx, dvalues = condensed_matmul_backward(dy, x, values, indices)
    ref_dx, ref_dv = naive.backward(dy, x, values, indices)
    assert dx.shape == x.shape and dvalues.shape == values.shape
    tol = 1e-5 if np.result_type(x, values) == np.float32 else 1e-12
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dvalues, ref_dv, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [None, 1, 4])
def test_backward_gradcheck_float64(rng, batch):
    n_in, n, k = 7, 5, 3
    indices = np.sort(np.array([rng.choice(n_in, k, replace=False) for _ in range(n)]), 1)
    values = rng.uniform(0.5, 1.5, (n, k)) * rng.choice([-1, 1], (n, k))   # non-trivial
    x = rng.standard_normal(n_in if batch is None else (batch, n_in))
    dy = rng.standard_normal(x.shape[:-1] + (n,))

    def loss():
        return float(np.sum(dy * condensed_matmul(x, values, indices)))

    dx, dvalues = condensed_matmul_backward(dy, x, values, indices)
    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, values, dvalues, name="values")


@st.composite
def kernel_operands(draw):
    """Operands of the forward kernels: ``n`` across whole and partial blocks of
    ``K.LANES`` rows, ``k`` across the unrolled remainders, both float and index dtypes."""
    n_in = draw(st.integers(1, 300))
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, min(n_in, 21)))
    batch = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    index_dtype = draw(st.sampled_from([np.uint16, np.uint32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    indices = np.sort(np.array([rng.choice(n_in, k, replace=False) for _ in range(n)]), 1)
    values = rng.standard_normal((n, k)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    xT = rng.standard_normal((n_in, batch)).astype(dtype)
    slab_values, slab_index = matmul.lanes_layout(values, indices, n_in)
    return xT, values, indices, bias, slab_values, slab_index.astype(index_dtype)


@given(kernel_operands())
def test_serial_and_parallel_kernels_agree_bitwise(ops):
    xT, values, indices, bias, slab_values, slab_index = ops
    n, batch = values.shape[0], xT.shape[1]
    bias_pad = matmul.padded_rows(bias)
    x = np.ascontiguousarray(xT.T)                                             # [B, in]
    y1 = np.empty((batch, bias_pad.size), values.dtype)                        # [B, n_pad]
    y2 = np.empty_like(y1)
    K.matvec_lanes(x, slab_values, slab_index, bias_pad, y1)
    K.matvec_lanes_parallel(x, slab_values, slab_index, bias_pad, y2)
    assert y1.tobytes() == y2.tobytes()
    assert (y1[:, n:] == 0).all()                       # padding rows: value 0, bias 0
    tol = 1e-5 if values.dtype == np.float32 else 1e-12
    ref = naive.forward(x, values, indices, bias)
    np.testing.assert_allclose(y1[:, :n], ref, rtol=tol, atol=tol)
    y3 = np.empty((1, bias_pad.size), values.dtype)    # one example alone: same bits
    K.matvec_lanes(x[-1:], slab_values, slab_index, bias_pad, y3)
    assert y3.tobytes() == y1[-1:].tobytes()
    yT1, yT2 = np.empty((n, batch), values.dtype), np.empty((n, batch), values.dtype)
    K.matmat_lanes(xT, slab_values, slab_index, bias_pad, yT1)
    K.matmat_lanes_parallel(xT, slab_values, slab_index, bias_pad, yT2)
    assert yT1.tobytes() == yT2.tobytes()
    np.testing.assert_allclose(yT1.T, naive.forward(xT.T, values, indices, bias),
                               rtol=tol, atol=tol)
    # The same per-row code on the row-major layout (training's kernel): the lanes layout
    # moves values, it changes no arithmetic.
    yT3 = np.empty((n, batch), values.dtype)
    K.matmat_rows(xT, values, indices.astype(slab_index.dtype), np.arange(n), bias, yT3)
    assert yT1.tobytes() == yT3.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch1_kernel_sums_each_row_in_order(dtype):
    """``_lanes_dot`` sums ``j = 0, 1, ..., k-1``: with ``x = 1`` a row ``[1, eps/2, -1]``
    gives ``((0 + 1) + eps/2) - 1 == 0`` (1 + eps/2 rounds to even, i.e. to 1), while the
    reversed row gives ``((0 - 1) + eps/2) + 1 == eps/2`` (1 - eps/2 is exact). A kernel
    summing in another order (reversed, or pairing the ends first) swaps or loses these."""
    half_eps = np.finfo(dtype).eps / 2
    n_in, n = 3, 20                                       # two blocks, the second partial
    indices = np.tile(np.arange(3), (n, 1))
    x, bias = np.ones((1, n_in), dtype), np.zeros(2 * K.LANES, dtype)
    y = np.empty((1, 2 * K.LANES), dtype)
    for row, want in (([1.0, half_eps, -1.0], 0.0), ([-1.0, half_eps, 1.0], half_eps)):
        values = np.tile(np.array(row, dtype), (n, 1))
        K.matvec_lanes(x, *matmul.lanes_layout(values, indices, n_in), bias, y)
        assert (y[0, :n] == want).all()


@pytest.mark.parametrize("batch, family", [(None, "matvec_lanes"), (3, "matvec_lanes"),
                                           (17, "matmat_lanes")])
def test_forward_dispatches_parallel_above_threshold(rng, monkeypatch, batch, family):
    """``forward`` runs the parallel kernel exactly when the work (rows x fan-in x batch)
    reaches ``PARALLEL_MIN_WORK`` and Numba has more than one thread; both give the same
    bytes. The kernels are spied on, the thread count is set: the test does not depend on
    how many threads this machine gives Numba."""
    n, k, n_in = 30, 9, 50
    indices = np.sort(np.array([rng.choice(n_in, k, replace=False) for _ in range(n)]), 1)
    values = rng.standard_normal((n, k)).astype(np.float32)
    slab_values, slab_index = matmul.lanes_layout(values, indices, n_in)
    bias = matmul.padded_rows(rng.standard_normal(n).astype(np.float32))
    x = rng.standard_normal(n_in if batch is None else (batch, n_in)).astype(np.float32)
    work = n * k * (batch or 1)
    called = []
    for name in (family, family + "_parallel"):
        kernel = getattr(K, name)
        monkeypatch.setattr(K, name, lambda *a, kernel=kernel, name=name: (
            called.append(name), kernel(*a))[1])
    results = []
    for threads, min_work, want in ((1, 0, family), (2, work + 1, family),
                                    (2, work, family + "_parallel")):
        monkeypatch.setattr(matmul.numba, "get_num_threads", lambda threads=threads: threads)
        monkeypatch.setattr(matmul, "PARALLEL_MIN_WORK", min_work)
        called.clear()
        results.append(matmul.forward(x, slab_values, slab_index, bias, n))
        assert called == [want], (threads, min_work)
    assert all(r.tobytes() == results[0].tobytes() for r in results)
    np.testing.assert_allclose(results[0], x @ _dense(values, indices, n_in)[0].T
                               + bias[:n], rtol=1e-5, atol=1e-5)


def _dense(values, indices, n_in):
    weight = np.zeros((values.shape[0], n_in), values.dtype)
    mask = np.zeros(weight.shape, bool)
    np.put_along_axis(weight, indices, values, 1)
    np.put_along_axis(mask, indices, True, 1)
    return weight, mask


@given(st.integers(1, 70), st.integers(1, 70))
def test_transpose_kernel_is_exact(n0, n1):
    x = np.arange(n0 * n1, dtype=np.float32).reshape(n0, n1)
    xT = np.empty((n1, n0), np.float32)
    K.transpose(x, xT)
    np.testing.assert_array_equal(xT, x.T)


def test_batched_output_is_feature_major_and_chains_without_copy(rng):
    w1, m1 = _dense(rng.standard_normal((8, 4)).astype(np.float32),
                    np.sort(np.array([rng.choice(12, 4, replace=False) for _ in range(8)]), 1), 12)
    w2, m2 = _dense(rng.standard_normal((5, 3)).astype(np.float32),
                    np.sort(np.array([rng.choice(8, 3, replace=False) for _ in range(5)]), 1), 8)
    l1, l2 = condense(w1, m1), condense(w2, m2)
    h = l1(rng.standard_normal((matmul.SMALL_BATCH + 1, 12)).astype(np.float32))
    assert h.flags.f_contiguous and matmul.feature_major(h).base is h.base
    assert l2(h).tobytes() == l2(np.ascontiguousarray(h)).tobytes()


@pytest.mark.parametrize("order", ["C", "F"])
def test_small_batch_runs_one_example_at_a_time(rng, order):
    """Up to ``SMALL_BATCH`` examples take the batch-1 kernel: each row of the result is
    bit for bit the layer applied to that example alone, whatever the layout of ``x``."""
    indices = np.sort(np.array([rng.choice(40, 7, replace=False) for _ in range(21)]), 1)
    layer = condense(*_dense(rng.standard_normal((21, 7)).astype(np.float32), indices, 40))
    for n_batch in (2, matmul.SMALL_BATCH):
        x = np.asarray(rng.standard_normal((n_batch, 40)).astype(np.float32), order=order)
        y = layer(x)
        assert y.shape == (n_batch, 21)
        for t in range(n_batch):
            assert y[t].tobytes() == layer(x[t].copy()).tobytes()


@given(operands())
def test_nan_propagates_to_exactly_the_rows_that_read_it(ops):
    x, values, indices = ops
    x = x.copy()
    col = x.shape[-1] // 2
    x[..., col] = np.nan
    y = condensed_matmul(x, values, indices)
    reads = (indices == col).any(axis=1)                                  # [n]
    assert np.isnan(y[..., reads]).all() and np.isfinite(y[..., ~reads]).all()


@pytest.mark.parametrize("change, error, match", [
    (dict(indices=np.array([[0, 4]])), ValueError,
     r"indices contains 4 at \(0, 1\), must be in \[0, 4\) \(x.shape\[-1\] == 4\)"),
    (dict(indices=np.array([[0, 1, 2]])), ValueError,
     r"indices.shape == \(1, 3\), must equal values.shape == \(1, 2\)"),
    (dict(indices=np.array([[0.0, 1.0]])), TypeError, r"indices.dtype == float64"),
    (dict(values=np.ones((1, 2), np.float16)), TypeError, r"values.dtype == float16"),
    (dict(values=np.ones(2, np.float32)), ValueError, r"values.shape == \(2,\)"),
    (dict(x=np.ones((2, 3, 4), np.float32)), ValueError, r"x.shape == \(2, 3, 4\)"),
    (dict(x=np.ones(4, np.int64)), TypeError, r"x.dtype == int64"),
])
def test_condensed_matmul_rejects_bad_arguments(change, error, match):
    args = dict(x=np.ones(4, np.float32), values=np.ones((1, 2), np.float32),
                indices=np.array([[0, 3]]))
    with pytest.raises(error, match=match):
        condensed_matmul(**{**args, **change})


@pytest.mark.parametrize("dy, error, match", [
    (np.ones((2, 1), np.float32), ValueError, r"dy.shape == \(2, 1\), must be \(1,\)"),
    (np.ones(1, np.int32), TypeError, r"dy.dtype == int32"),
    (None, TypeError, r"dy must be a numpy.ndarray"),
])
def test_backward_rejects_bad_dy(dy, error, match):
    with pytest.raises(error, match=match):
        condensed_matmul_backward(dy, np.ones(4, np.float32), np.ones((1, 2), np.float32),
                                  np.array([[0, 3]]))
