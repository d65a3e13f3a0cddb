"""A classification dataset in memory: the container, per-channel normalisation, batches."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import check_generator, check_int


@dataclass(frozen=True)
class Dataset:
    """A classification dataset in memory.

    Attributes
    ----------
    name : str
    x_train : ndarray of shape (n_train, C, H, W), float32, C-contiguous, read-only
    y_train : ndarray of shape (n_train,), int64, in [0, n_classes)
    x_test : ndarray of shape (n_test, C, H, W), float32, C-contiguous, read-only
    y_test : ndarray of shape (n_test,), int64
    n_classes : int
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def frozen(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only (the arrays a ``Dataset`` holds)."""
    a.flags.writeable = False
    return a


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale.

    Exact (computed from per-channel histograms of the 256 byte values, in float64).

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W), uint8

    Returns
    -------
    mean, std : ndarray of shape (C,), float64
    """
    images = _check_images(images)
    values = np.arange(256) / 255.0
    mean, std = np.empty(images.shape[1]), np.empty(images.shape[1])
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256)
        mean[c] = counts @ values / counts.sum()
        std[c] = math.sqrt(counts @ (values - mean[c]) ** 2 / counts.sum())
    return mean, std


def normalize(images, mean, std) -> np.ndarray:
    """``(images / 255 - mean[c]) / std[c]`` per channel, as float32.

    Parameters
    ----------
    images : ndarray of shape (n, C, H, W), uint8
    mean, std : array-like of shape (C,), on the [0, 1] scale; std > 0

    Returns
    -------
    ndarray of shape (n, C, H, W), float32, C-contiguous (a new array)
    """
    images = _check_images(images)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    n_chan = images.shape[1]
    if mean.shape != (n_chan,) or std.shape != (n_chan,) or not (std > 0).all():
        raise ValueError(f"mean.shape == {mean.shape}, std.shape == {std.shape} with std "
                         f"{std}, must both be ({n_chan},) with std > 0")
    lut = ((np.arange(256)[None, :] / 255.0 - mean[:, None]) / std[:, None])   # [C, 256]
    lut = lut.astype(np.float32)
    out = np.empty(images.shape, np.float32)
    for c in range(n_chan):
        out[:, c] = lut[c][images[:, c]]
    return out


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        what = (f"{images.dtype} of shape {images.shape}" if isinstance(images, np.ndarray)
                else type(images).__name__)
        raise ValueError(f"images is {what}, must be uint8 of shape (n, C, H, W)")
    return images


def batches(x, y, batch_size, *, rng=None, drop_last=False):
    """Mini-batches of ``(x, y)``, shuffled when ``rng`` is given.

    Parameters
    ----------
    x : ndarray of shape (n, ...), float
    y : ndarray of shape (n,), integer
    batch_size : int >= 1
    rng : numpy.random.Generator or None
        None: the examples in order. Otherwise one ``rng.permutation(n)`` per call (call
        once per epoch).
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Returns
    -------
    iterator of (ndarray of shape (b, ...), float32, C-contiguous; ndarray (b,), int64)
    """
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray) or x.ndim < 1 \
            or y.shape != (len(x),):
        raise ValueError(f"x and y must be arrays with y.shape == (len(x),), got "
                         f"{getattr(x, 'shape', type(x).__name__)} and "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    batch_size = check_int("batch_size", batch_size, low=1)
    order = None if rng is None else check_generator("rng", rng).permutation(len(x))
    return _batches(x, y, batch_size, order, drop_last)


def _batches(x, y, batch_size, order, drop_last):
    n = len(x)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = slice(start, start + batch_size) if order is None else \
            order[start:start + batch_size]
        yield (np.ascontiguousarray(x[idx], dtype=np.float32),
               np.ascontiguousarray(y[idx], dtype=np.int64))
