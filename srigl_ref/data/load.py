"""``load_dataset``: a dataset by name, found (or downloaded), read and normalised."""
from __future__ import annotations

from .._validate import check_choice
from .dataset import Dataset, channel_stats, frozen, normalize
from .fetch import find_dataset
from .formats import read_cifar_splits, read_idx_splits
from .synthetic import synthetic

DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")


def load_dataset(name, *, data_dir=None, download=True, base_url=None, progress=None,
                 rng=None) -> Dataset:
    """Load dataset ``name``, normalised (``find_dataset`` says where it is looked for).

    Parameters
    ----------
    name : {"fashion-mnist", "mnist", "cifar10", "synthetic"}
    data_dir, download, base_url, progress
        As ``find_dataset``.
    rng : numpy.random.Generator or None
        Only for ``"synthetic"`` (required there): the generator that draws it.

    Returns
    -------
    Dataset
        Images normalised per channel with the training set's mean and std (``normalize``).

    Raises
    ------
    ValueError
        Unknown name, dataset not found, or a corrupt / truncated / mismatched file (the
        message names the file).
    """
    check_choice("name", name, DATASETS)
    if name == "synthetic":
        if rng is None:
            raise TypeError("load_dataset('synthetic') needs rng=numpy.random.Generator")
        return synthetic(rng=rng)
    kind, paths = find_dataset(name, data_dir=data_dir, download=download,
                               base_url=base_url, progress=progress)
    splits = read_idx_splits(paths) if kind == "idx" else read_cifar_splits(kind, paths)
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = channel_stats(x_train)
    return Dataset(name, frozen(normalize(x_train, mean, std)), frozen(y_train),
                   frozen(normalize(x_test, mean, std)), frozen(y_test), 10)
