"""Softmax cross-entropy: gradient check, label smoothing, extreme logits, validation."""
from __future__ import annotations

import numpy as np
import pytest

from srigl_ref.nn.losses import softmax_cross_entropy
from tests.gradcheck import check_gradient


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_gradient(rng, smoothing):
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    _, dlogits = softmax_cross_entropy(logits, labels, label_smoothing=smoothing)
    check_gradient(lambda: softmax_cross_entropy(logits, labels, label_smoothing=smoothing)[0],
                   logits, dlogits, name="logits")


def test_matches_the_definition():
    """Two examples, three classes, smoothing 0.3: t = 0.7 * onehot + 0.1."""
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    labels = np.array([2, 0])
    loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing=0.3)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    assert loss == pytest.approx(-(t * np.log(p)).sum() / 2, rel=1e-14)
    np.testing.assert_allclose(dlogits, (p - t) / 2, rtol=1e-13)


def test_smoothing_zero_is_plain_cross_entropy():
    logits = np.array([[2.0, 0.0, -1.0]])
    loss, _ = softmax_cross_entropy(logits, np.array([0]))
    assert loss == pytest.approx(-np.log(np.exp(2.0) / (np.exp(2.0) + 1 + np.exp(-1.0))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    labels = np.array([1, 2, 0])
    loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing=0.1)
    assert np.isfinite(loss) and np.isfinite(dlogits).all() and dlogits.dtype == dtype
    # example 0: label 1 is 2e4 below the max -> its loss is ~2e4 * 0.9 + smoothing terms
    assert loss > 1e3
    loss_right, d_right = softmax_cross_entropy(logits[:1], np.array([0]))
    assert loss_right == 0.0 and np.abs(d_right).max() == 0.0


def test_gradient_rows_sum_to_zero(rng):
    _, d = softmax_cross_entropy(rng.standard_normal((6, 5)), rng.integers(0, 5, 6),
                                 label_smoothing=0.2)
    np.testing.assert_allclose(d.sum(axis=1), 0.0, atol=1e-15)


def test_validation_messages():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"labels contain values in \[0, 3\], must be in "
                                         r"\[0, 2\]"):
        softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels.shape == \(3,\), must be \(2,\)"):
        softmax_cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match=r"labels must be an integer numpy.ndarray, got "
                                        r"float64"):
        softmax_cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"label_smoothing == 1.5, must be in \[0, 1\]"):
        softmax_cross_entropy(logits, np.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"logits contains 1 non-finite value"):
        softmax_cross_entropy(np.array([[0.0, np.inf]]), np.array([0]))
