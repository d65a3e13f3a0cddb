"""Softmax cross-entropy with optional label smoothing (PyTorch ``CrossEntropyLoss``).

With ``K`` classes and smoothing ``eps`` the target distribution of an example with label
``y`` is ``t = (1 - eps) * onehot(y) + eps / K`` and the loss is the batch mean of
``-sum_k t_k * log_softmax(z)_k``. ``log_softmax`` subtracts the row maximum first, so any
finite logits (e.g. +-1e4) give a finite loss and gradient.
"""
from __future__ import annotations

import numpy as np

from .._validate import as_float_array, check_real


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0):
    """Mean softmax cross-entropy over the batch, and its gradient with respect to the logits.

    Parameters
    ----------
    logits : ndarray of shape (B, K), float32 or float64, finite
    labels : ndarray of shape (B,), integer dtype, values in [0, K)
    label_smoothing : float in [0, 1]

    Returns
    -------
    loss : float
        Computed in float64.
    dlogits : ndarray of shape (B, K), dtype of logits
        ``(softmax(z) - t) / B``.

    Raises
    ------
    TypeError
        Non-float logits, non-integer labels.
    ValueError
        Wrong shapes, non-finite logits, labels out of range, smoothing outside [0, 1].
    """
    logits = as_float_array("logits", logits, ndim=(2,))
    n_batch, n_classes = logits.shape
    labels = _check_labels(labels, n_batch, n_classes)
    eps = check_real("label_smoothing", label_smoothing, low=0.0, high=1.0)

    z = logits.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)                   # [B, K], max 0 per row
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # [B, 1], in [0, log K]
    log_p = shifted - log_sum                                     # [B, K] log_softmax
    target = np.full((n_batch, n_classes), eps / n_classes)       # [B, K]
    target[np.arange(n_batch), labels] += 1.0 - eps
    loss = float(-(target * log_p).sum() / n_batch)
    dlogits = (np.exp(log_p) - target) / n_batch
    return loss, dlogits.astype(logits.dtype)


def _check_labels(labels, n_batch: int, n_classes: int) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        what = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"labels must be an integer numpy.ndarray, got {what}")
    if labels.shape != (n_batch,):
        raise ValueError(f"labels.shape == {labels.shape}, must be ({n_batch},) to match logits")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels contain values in [{labels.min()}, {labels.max()}], "
                         f"must be in [0, {n_classes - 1}]")
    return labels
