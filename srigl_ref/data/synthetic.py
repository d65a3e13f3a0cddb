"""The synthetic dataset: Gaussian clusters around smooth class prototypes."""
from __future__ import annotations

import math

import numpy as np

from .._validate import check_generator, check_int, check_real
from .dataset import Dataset, frozen


def synthetic(*, rng, n_train=4096, n_test=1024, input_shape=(1, 28, 28), n_classes=10,
              noise=2.0) -> Dataset:
    """Deterministic Gaussian-cluster classification data ("synthetic").

    Each class ``c`` has a smooth random prototype image ``P_c`` (standard normal values on
    a grid 4x coarser than the image, each value repeated over a 4x4 block, per channel).
    An example of class ``y`` (uniform over classes) is ``(P_y + noise * N(0, I)) / sqrt(1 +
    noise**2)``, so every pixel has variance 1 (already normalised). Prototypes differ in
    about ``prod(input_shape)`` coordinates, so the classes are linearly separable with a
    wide margin relative to the noise: an MLP reaches high accuracy in an epoch or two.
    Draw order: prototypes, train labels, train noise, test labels, test noise; the same
    generator state gives the same dataset.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_train, n_test : int >= 1
    input_shape : (C, H, W)
    n_classes : int >= 2
    noise : float >= 0

    Returns
    -------
    Dataset
        float32 images of shape (n, C, H, W), int64 labels.
    """
    check_generator("rng", rng)
    n_train, n_test = check_int("n_train", n_train, low=1), check_int("n_test", n_test, low=1)
    n_classes = check_int("n_classes", n_classes, low=2)
    noise = check_real("noise", noise, low=0.0)
    shape = tuple(check_int(f"input_shape[{i}]", s, low=1) for i, s in enumerate(input_shape))
    if len(shape) != 3:
        raise ValueError(f"input_shape == {shape}, must be (channels, height, width)")
    c, h, w = shape
    coarse = rng.standard_normal((n_classes, c, -(-h // 4), -(-w // 4)))
    protos = coarse.repeat(4, axis=2).repeat(4, axis=3)[:, :, :h, :w]   # [K, C, H, W]
    scale = 1.0 / math.sqrt(1.0 + noise ** 2)

    def draw(n):
        labels = rng.integers(0, n_classes, n)                          # [n] int64
        x = (protos[labels] + noise * rng.standard_normal((n, c, h, w))) * scale
        return frozen(x.astype(np.float32)), frozen(labels)

    (x_train, y_train), (x_test, y_test) = draw(n_train), draw(n_test)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, n_classes)
