"""Datasets: file formats, lookup and verified download, synthetic data, normalisation and
mini-batches.

``formats`` reads IDX (Fashion-MNIST, MNIST) and CIFAR-10 files; ``fetch`` finds a
dataset's files (or downloads and verifies them, reporting progress to a callback);
``synthetic`` draws the synthetic dataset; ``dataset`` holds the in-memory ``Dataset``,
its normalisation and batches; ``load`` puts them together in ``load_dataset``. Images are
returned as float32 ``[n, C, H, W]`` normalised per channel with the training set's mean and
standard deviation; labels as int64. Nothing here prints.
"""
from .dataset import Dataset, batches, channel_stats, normalize
from .fetch import (APT_PACKAGES, BASE_URLS, CHECKSUMS, SYSTEM_DIRS, DownloadProgress,
                    ProgressCallback, cache_dir, find_dataset)
from .formats import read_cifar10_binary, read_cifar10_python, read_idx
from .load import DATASETS, load_dataset
from .synthetic import synthetic

__all__ = ["APT_PACKAGES", "BASE_URLS", "CHECKSUMS", "DATASETS", "SYSTEM_DIRS", "Dataset",
           "DownloadProgress", "ProgressCallback", "batches", "cache_dir", "channel_stats",
           "find_dataset", "load_dataset", "normalize", "read_cifar10_binary",
           "read_cifar10_python", "read_idx", "synthetic"]
